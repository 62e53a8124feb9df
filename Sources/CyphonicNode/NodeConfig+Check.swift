import CyphonicCore
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import CyphonicSignaling
import Foundation

extension NodeConfig {
    /// What `run --check` (and `run` itself, before it touches anything) checks beyond the
    /// keys' forms: the files exist, are readable and hold what they should; the overlay
    /// prefixes contain this node's own virtual addresses (else the TUN routes the wrong
    /// range); configured peers are names under the overlay domain. Returns notes for
    /// things that will happen at start (an enrolment); throws the key and the problem.
    public func checkForRun() throws -> [String] {
        var notes: [String] = []
        let enrolled = certificate.map { FileManager.default.fileExists(atPath: $0) } ?? false
        if let dir = stateDir {
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory)
            if !exists || !isDirectory.boolValue {
                guard enroll != nil, !exists else {
                    throw ConfigFileError.invalid(
                        "stateDir",
                        exists
                            ? "\(dir) is a file, not a directory"
                            : "\(dir) does not exist (enrol first: cyphonic-node enroll --state-dir \(dir) ..., or set `enroll`)")
                }
            }
        }
        if let e = enroll, !enrolled {
            _ = try Self.read(e.ca, key: "enroll.ca", as: "the CA certificate") { try Certificate(pem: $0) }
            _ = try Self.read(e.tokenFile, key: "enroll.tokenFile", as: "the enrolment token") { $0 }
            notes.append("not enrolled yet: the daemon enrols at \(e.asEndpoint) when it starts")
            return notes
        }
        let nodeKey = try Self.read(key!, key: "key", as: "the node key") { try KeyFiles.x25519(pem: $0) }
        let cert = try Self.read(certificate!, key: "certificate", as: "the node certificate") { try Certificate(pem: $0) }
        guard cert.x25519PublicKey == nodeKey.publicKey else {
            throw ConfigFileError.invalid("key", "\(key!) is not the key of the certificate \(certificate!) (they come from different enrolments)")
        }
        let ca = try Self.read(self.ca!, key: "ca", as: "the CA certificate") { try Certificate(pem: $0) }
        if let crl { _ = try Self.read(crl, key: "crl", as: "the revocation list") { try RevocationList(pem: $0) } }
        // Not fatal (the daemon runs, and a login may renew it), but peers will refuse it.
        do { try CertificateVerifier(trustAnchor: ca).verify(cert, role: .node, at: unixNowSeconds()) } catch {
            notes.append("the certificate \(certificate!) is not usable with the CA in \(self.ca!) (\(error)): peers will refuse it")
        }
        for (key, prefix, family) in [("overlay4", overlay4, true), ("overlay6", overlay6, false)] {
            guard let p = IPPrefix(prefix), let own = cert.ipAddresses.first(where: { $0.isIPv4 == family }) else { continue }
            guard p.contains(own) else {
                throw ConfigFileError.invalid(
                    key, "\(prefix) does not contain this node's virtual address \(own) (from its certificate): the TUN would route the wrong range")
            }
        }
        if let name = cert.commonName.flatMap({ try? FQDN($0) }) {
            let domain = resolver.domain.flatMap { try? FQDN($0) } ?? (try? FQDN(name.value.split(separator: ".").dropFirst().joined(separator: ".")))
            for (i, p) in peers.enumerated() {
                guard let peer = try? FQDN(p.fqdn), let domain, peer.isUnder(domain), peer != domain else {
                    throw ConfigFileError.invalid("peers[\(i)].fqdn", "\(p.fqdn) is not a node name under the overlay domain \(domain?.value ?? "?")")
                }
            }
        }
        return notes
    }

    /// Reads and parses one file the config names; errors name the key and the file.
    static func read<T>(_ path: String, key: String, as what: String, _ parse: (String) throws -> T) throws -> T {
        let text: String
        do { text = try readTextFile(path, what: what) } catch { throw ConfigFileError.invalid(key, "\(error)") }
        do { return try parse(text) } catch { throw ConfigFileError.invalid(key, "\(path) does not hold \(what): \(error)") }
    }
}
