import CyphonicCore
import CyphonicDataPlane
import CyphonicPosix
import CyphonicService
import Foundation

// Checking a config: the keys' forms and ranges (`validate()`), and how a bad key is
// named to a person (key paths as written, value types in words).
extension NodeConfig {
    public func validate() throws {
        guard key != nil else { throw ConfigFileError.invalid("key", "is required (or stateDir)") }
        guard certificate != nil else { throw ConfigFileError.invalid("certificate", "is required (or stateDir)") }
        guard ca != nil else { throw ConfigFileError.invalid("ca", "is required (or stateDir)") }
        guard Endpoint(listen) != nil else {
            throw ConfigFileError.invalid("listen", "\(listen) is not ADDRESS:PORT or [V6]:PORT (an IP address to bind: names are not resolved here)")
        }
        guard !tun.name.isEmpty, tun.name.utf8.count < 16 else { throw ConfigFileError.invalid("tun.name", "1-15 bytes") }
        guard (576...9000).contains(tun.mtu) else { throw ConfigFileError.invalid("tun.mtu", "must be 576...9000") }
        guard (0...10_000).contains(tun.txQueueLength) else { throw ConfigFileError.invalid("tun.txQueueLength", "must be 0 (automatic) ... 10000") }
        guard IPPrefix(overlay4)?.address.isIPv4 == true else { throw ConfigFileError.invalid("overlay4", "not an IPv4 prefix") }
        guard IPPrefix(overlay6).map({ !$0.address.isIPv4 }) == true else { throw ConfigFileError.invalid("overlay6", "not an IPv6 prefix") }
        guard pipeline == "multi" || pipeline == "single" else { throw ConfigFileError.invalid("pipeline", "\(pipeline) must be multi or single") }
        guard Self.logLevels.contains(logLevel) else {
            throw ConfigFileError.invalid("logLevel", "\(logLevel) is not a level: \(Self.logLevels.joined(separator: ", "))")
        }
        guard (0...64).contains(workers) else { throw ConfigFileError.invalid("workers", "0...64") }
        guard TunReading(rawValue: tunReading) != nil else {
            throw ConfigFileError.invalid("tunReading", "\(tunReading) must be thread or workers")
        }
        guard (8...Pipeline.maxPoolSize).contains(poolSize) else {
            throw ConfigFileError.invalid("poolSize", "8...\(Pipeline.maxPoolSize)")
        }
        guard (0...(64 << 20)).contains(udpReceiveBuffer) else { throw ConfigFileError.invalid("udpReceiveBuffer", "0...67108864 bytes") }
        guard metrics.isEmpty || Endpoint(metrics) != nil else {
            throw ConfigFileError.invalid(
                "metrics", "\(metrics) is not ADDRESS:PORT or [V6]:PORT (an IP address to bind: names are not resolved here)")
        }
        guard (0.5...30).contains(punchTimeoutSeconds) else { throw ConfigFileError.invalid("punchTimeoutSeconds", "must be 0.5...30") }
        guard (1...3600).contains(directRetrySeconds) else { throw ConfigFileError.invalid("directRetrySeconds", "must be 1...3600") }
        guard (0...604_800).contains(reopenSeconds) else {
            throw ConfigFileError.invalid("reopenSeconds", "must be 0...604800 (a week; 0 turns reopening off)")
        }
        guard keepaliveSeconds > 0, idleTimeoutSeconds > keepaliveSeconds else {
            throw ConfigFileError.invalid("idleTimeoutSeconds", "must exceed keepaliveSeconds > 0")
        }
        guard rekeyAfterSeconds >= 1, rekeyAfterSeconds <= 170 else {
            throw ConfigFileError.invalid("rekeyAfterSeconds", "must be 1...170 (sessions are refused after 180 s)")
        }
        if let a = asEndpoint, !a.isEmpty, !HostPort.isValid(a) {
            throw ConfigFileError.invalid("asEndpoint", "\(a) is not HOST:PORT (an IP address or a DNS name, then a port)")
        }
        guard (1...604_800).contains(loginRefreshSeconds) else {
            throw ConfigFileError.invalid("loginRefreshSeconds", "must be 1...604800 (a week)")
        }
        guard (1...86_400).contains(crlRefreshSeconds) else { throw ConfigFileError.invalid("crlRefreshSeconds", "must be 1...86400") }
        guard (0...1_000_000).contains(handshakeLoadThreshold) else {
            throw ConfigFileError.invalid("handshakeLoadThreshold", "must be 0...1000000 (0: always ask for a cookie)")
        }
        guard handshakesPerSourcePerSecond > 0, handshakesPerSourcePerSecond <= 10_000 else {
            throw ConfigFileError.invalid("handshakesPerSourcePerSecond", "must be > 0 and <= 10000")
        }
        guard handshakesPerSecond >= 1, handshakesPerSecond <= 1_000_000 else {
            throw ConfigFileError.invalid("handshakesPerSecond", "must be 1...1000000")
        }
        for (i, e) in (nms ?? []).enumerated() where !HostPort.isValid(e) {
            throw ConfigFileError.invalid("nms[\(i)]", "\(e) is not HOST:PORT (an IP address or a DNS name, then a port)")
        }
        if let e = enroll {
            guard HostPort.isValid(e.asEndpoint) else { throw ConfigFileError.invalid("enroll.asEndpoint", "\(e.asEndpoint) is not HOST:PORT") }
            guard stateDir != nil else { throw ConfigFileError.invalid("enroll", "needs stateDir (where the enrolment is stored)") }
        }
        for (i, l) in resolver.listen.enumerated() where Endpoint(l) == nil {
            throw ConfigFileError.invalid(
                "resolver.listen[\(i)]", "\(l) is not ADDRESS:PORT or [V6]:PORT (an IP address to bind: names are not resolved here)")
        }
        for (i, u) in resolver.upstream.enumerated() where Endpoint(u) == nil {
            throw ConfigFileError.invalid(
                "resolver.upstream[\(i)]", "\(u) is not ADDRESS:PORT or [V6]:PORT (an IP address: the resolver does not resolve its upstreams)")
        }
        if let d = resolver.domain, (try? FQDN(d)) == nil { throw ConfigFileError.invalid("resolver.domain", "\(d) is not a domain name") }
        guard resolver.timeoutSeconds > 0, resolver.timeoutSeconds <= 30 else {
            throw ConfigFileError.invalid("resolver.timeoutSeconds", "must be > 0 and <= 30")
        }
        guard (0...86_400).contains(resolver.ttlSeconds) else { throw ConfigFileError.invalid("resolver.ttlSeconds", "must be 0...86400") }
        guard (1...10_000).contains(resolver.maxTCPConnections) else {
            throw ConfigFileError.invalid("resolver.maxTCPConnections", "must be 1...10000")
        }
        for (i, p) in peers.enumerated() {
            guard (try? FQDN(p.fqdn)) != nil else { throw ConfigFileError.invalid("peers[\(i)].fqdn", "\(p.fqdn) is not a valid FQDN") }
            guard HostPort.isValid(p.endpoint) else {
                throw ConfigFileError.invalid("peers[\(i)].endpoint", "\(p.endpoint) is not HOST:PORT (an IP address or a DNS name, then a port)")
            }
        }
    }
}
