import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicSignaling
import Foundation

/// Every address and limit of a relay; `trs-relay serve` sets each from a flag.
public struct TRSSettings: Sendable {
    /// Relay sockets, one per address (so every answer leaves from the address it was
    /// asked on: a symmetric NAT drops anything else).
    public var listen: [Endpoint] = [Endpoint("0.0.0.0:4503")!, Endpoint("[::]:4503")!]
    /// Seconds between a node's refreshes (told to it in the registration ack).
    public var refreshSeconds = 10
    /// A relay session without a packet or refresh for this long ends.
    public var sessionIdleSeconds = 120
    /// A node's signaling session without a word for this long ends (its relay sessions
    /// stay until they idle out).
    public var nodeIdleSeconds = 60
    /// Relay sessions in all, and ends one node may bind (a node cannot fill the table).
    public var maxSessions = 100_000
    public var maxSessionsPerNode = 256
    /// Nodes with a signaling session, and handshakes waiting for message 3, at most.
    public var maxNodes = 100_000
    public var maxPendingHandshakes = 10_000
    public var handshakeTimeout: Int64 = 10
    /// Datagrams one end of a session may send per second (burst: a tenth of a second's
    /// worth), so one flooding end is cut to its share instead of starving the others
    /// (400 000 is about 4.5 Gbit/s of full-size capsules, more than one stream needs).
    public var packetsPerSecondPerEnd = 400_000
    /// The guard in front of every handshake initiation.
    public var handshakeGuard = HandshakeGuard.Limits()
    /// Receive/send buffer of each socket in bytes (0 keeps the kernel's default).
    public var socketBufferBytes = 8 << 20
    /// UDP GRO on receive and GSO on send (off: one datagram per system call slot).
    public var offloads = true

    public init() {}
}

/// The relay's key and certificates, from the bundle `as-server service add trs NAME`
/// wrote: NAME.key + NAME.pem (the X25519 key of its Noise handshakes, role trs) and
/// ca.pem (whose NMS signing certificates it accepts route authorizations from).
public struct TRSIdentity: Sendable {
    public let name: String
    public let key: X25519PrivateKey
    public let certificate: Certificate
    public let ca: Certificate

    public init(name: String, key: X25519PrivateKey, certificate: Certificate, ca: Certificate) {
        self.name = name
        self.key = key
        self.certificate = certificate
        self.ca = ca
    }

    /// Loads the bundle in `directory`; `name` may be left out when it holds one key.
    /// Errors name the file and what is wrong with it.
    public static func load(bundle directory: String, name: String? = nil) throws -> TRSIdentity {
        let dir = directory as NSString
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        guard !files.isEmpty else { throw TRSBundleError("\(directory) is not a readable directory with a service bundle") }
        let base: String
        if let name {
            base = name
        } else {
            let keys = files.filter { $0.hasSuffix(".key") && !$0.hasSuffix(".sign.key") }
            guard keys.count == 1 else { throw TRSBundleError("\(directory) holds \(keys.count) service keys (NAME.key); give --name") }
            base = String(keys[0].dropLast(".key".count))
        }
        func parse<T>(_ file: String, _ body: (String) throws -> T) throws -> T {
            let path = dir.appendingPathComponent(file)
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw TRSBundleError("cannot read \(path) (written by `as-server service add trs \(base)`)")
            }
            do { return try body(text) } catch { throw TRSBundleError("\(path): \(error)") }
        }
        let identity = TRSIdentity(
            name: base, key: try parse(base + ".key") { try KeyFiles.x25519(pem: $0) },
            certificate: try parse(base + ".pem") { try Certificate(pem: $0) }, ca: try parse("ca.pem") { try Certificate(pem: $0) })
        let verifier = try CertificateVerifier(trustAnchor: identity.ca)
        do { try verifier.verify(identity.certificate, role: .trs, at: unixNowSeconds()) } catch {
            throw TRSBundleError("\(dir.appendingPathComponent(base + ".pem")): \(error) (is this the bundle of a trs service?)")
        }
        guard identity.certificate.x25519PublicKey == identity.key.publicKey else { throw TRSBundleError("\(base).key does not match \(base).pem") }
        return identity
    }
}

/// A relay bundle that cannot be used; says which file and why.
public struct TRSBundleError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

extension TRSIdentity: BundledIdentity {}
