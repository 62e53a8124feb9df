import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicWire
import Foundation

/// A state directory that is missing or unreadable.
public enum StateError: Error, CustomStringConvertible {
    case notEnrolled(String)
    case corrupt(String, String)

    public var description: String {
        switch self {
        case .notEnrolled(let p): return "\(p) holds no enrolment (node.json): run `cyphonic-node enroll` first"
        case .corrupt(let p, let why): return "\(p) is unreadable: \(why)"
        }
    }
}

/// What a node keeps on disk (`--state-dir`): `node.key` (its X25519 static key, mode
/// 0600, generated locally and never sent anywhere), `node.pem` (its certificate),
/// `ca.pem` (the pinned CA), and `node.json` (id, FQDN, virtual IPs, service endpoints).
public struct NodeStateDirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// What AS provisioned, in readable form.
    public struct Assignment: Codable, Sendable, Equatable {
        public var name: String
        public var nodeID: UInt64
        public var fqdn: String
        public var virtualIPv4: String
        public var virtualIPv6: String
        public var asEndpoint: String
        public var nmsEndpoints: [String]
        public var trsEndpoints: [String]
    }

    /// Whether it holds an enrolment (the state file `node.json`).
    public var isEnrolled: Bool { FileManager.default.fileExists(atPath: file("node.json")) }

    /// Whether it holds a key.
    public var hasKey: Bool { FileManager.default.fileExists(atPath: file("node.key")) }

    /// Removes a key that no enrolment uses (after a failed first enrolment).
    public func removeUnusedKey() {
        guard !isEnrolled else { return }
        try? FileManager.default.removeItem(atPath: file("node.key"))
    }

    /// The daemon config `enroll` writes beside the state (never the state file's name).
    public var configFile: String { file("node.conf.json") }

    /// Writes a config that `cyphonic-node run --config` accepts as is: this state
    /// directory, every other key at its default (docs/operations.md). Kept if present.
    @discardableResult
    public func writeDaemonConfig(virtualIPv4: IPAddress? = nil, virtualIPv6: IPAddress? = nil) throws -> Bool {
        guard !FileManager.default.fileExists(atPath: configFile) else { return false }
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        // Addresses outside the default overlay prefixes (an AS with other pools): the
        // /16 and /64 around them, so the TUN routes the node's own network.
        let defaults = NodeConfig()
        var lines = ["  \"stateDir\": \"\(absolute)\""]
        if let v4 = virtualIPv4, IPPrefix(defaults.overlay4)?.contains(v4) == false, let p = IPPrefix(address: v4, length: 16) {
            lines.append("  \"overlay4\": \"\(p)\"")
        }
        if let v6 = virtualIPv6, IPPrefix(defaults.overlay6)?.contains(v6) == false, let p = IPPrefix(address: v6, length: 64) {
            lines.append("  \"overlay6\": \"\(p)\"")
        }
        let text = "{\n" + lines.joined(separator: ",\n") + "\n}\n"
        guard FileManager.default.createFile(atPath: configFile, contents: Data(text.utf8), attributes: [.posixPermissions: 0o644]) else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: configFile])
        }
        return true
    }

    /// The node's key: loaded, or generated and stored (0600) if there is none yet.
    public func loadOrCreateKey() throws -> X25519PrivateKey {
        if FileManager.default.fileExists(atPath: file("node.key")) {
            return try KeyFiles.x25519(pem: try readTextFile(file("node.key"), what: "the node key"))
        }
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700])
        let key = try X25519PrivateKey()
        guard
            FileManager.default.createFile(
                atPath: file("node.key"), contents: Data(try KeyFiles.pem(key).utf8),
                attributes: [.posixPermissions: 0o600])
        else { throw CocoaError(.fileWriteNoPermission) }
        return key
    }

    /// Stores what a login returned.
    public func save(_ p: Provision, name: String, asEndpoint: Endpoint) throws {
        try save(p, name: name, asEndpoint: asEndpoint.description)
    }

    /// Stores what a login returned; `asEndpoint` as the operator gave it (a DNS name
    /// stays a name, resolved at each use).
    public func save(_ p: Provision, name: String, asEndpoint: String) throws {
        let cert = try Certificate(der: p.certificate)
        let ca = try Certificate(der: p.caCertificate)
        try cert.pemString.write(toFile: file("node.pem"), atomically: true, encoding: .utf8)
        try ca.pemString.write(toFile: file("ca.pem"), atomically: true, encoding: .utf8)
        let a = Assignment(
            name: name, nodeID: p.nodeID, fqdn: p.fqdn.value, virtualIPv4: p.virtualIPv4.description,
            virtualIPv6: p.virtualIPv6.description, asEndpoint: asEndpoint,
            nmsEndpoints: p.nmsEndpoints.map(\.description), trsEndpoints: p.trsEndpoints.map(\.description))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(a).write(to: URL(fileURLWithPath: file("node.json")), options: .atomic)
    }

    public func assignment() throws -> Assignment {
        guard let data = FileManager.default.contents(atPath: file("node.json")) else {
            throw StateError.notEnrolled(path)
        }
        do { return try JSONDecoder().decode(Assignment.self, from: data) } catch {
            throw StateError.corrupt(file("node.json"), "\(error)")
        }
    }

    public func certificate() throws -> Certificate {
        try Certificate(pem: try readTextFile(file("node.pem"), what: "the node certificate"))
    }

    public func caCertificate() throws -> Certificate {
        try Certificate(pem: try readTextFile(file("ca.pem"), what: "the CA certificate"))
    }
}
