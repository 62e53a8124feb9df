import CyphonicCore
import CyphonicPKI
import Foundation

// The control socket's commands and the resolver's start.
extension NodeDaemon {
    /// Answers a control-socket line: `status` (or nothing) → the status as JSON;
    /// `forget NAME` → ends the tunnel with NAME (its next lookup sets it up again).
    func control(_ line: String) -> [UInt8] {
        let words = line.split(separator: " ").map(String.init)
        switch words.first ?? "status" {
        case "status":
            var data = (try? JSONEncoder().encode(snapshot())) ?? Data()
            data.append(0x0a)
            return [UInt8](data)
        case "forget" where words.count == 2:
            let done = manager?.forget(words[1]) ?? false
            return Array((done ? "forgot \(words[1])\n" : "no tunnel with \(words[1])\n").utf8)
        default:
            return Array("unknown command: \(line) (try: status, forget NAME)\n".utf8)
        }
    }

    /// Starts the resolver when configured; a port it cannot bind is logged and shown in
    /// status, and the daemon runs on without it.
    func startResolver(certificate: Certificate) {
        guard config.resolver.enabled else { return }
        let fqdn = certificate.commonName ?? ""
        let domain = config.resolver.domain ?? fqdn.split(separator: ".", maxSplits: 1).dropFirst().first.map(String.init) ?? fqdn
        let resolver = NodeResolver(
            config: config.resolver, domain: domain, ownName: fqdn, ownAddresses: certificate.ipAddresses, signaling: signaling,
            logger: logger)
        do { try resolver.start() } catch { logger.error("node: \(error) (config `resolver.listen`); running without the resolver") }
        self.resolver = resolver
    }
}
