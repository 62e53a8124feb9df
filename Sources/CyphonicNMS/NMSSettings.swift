import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPostgres
import CyphonicSignaling
import Foundation

/// Every address and limit of an NMS; `nms-server serve` sets each from a flag.
public struct NMSSettings: Sendable {
    /// Signaling sockets (registration, keepalive, directions; NAT probes too).
    public var listen: [Endpoint] = [Endpoint("0.0.0.0:4502")!, Endpoint("[::]:4502")!]
    /// The second port NAT probes go to (the mapping seen there tells EIM from EDM).
    public var probeListen: [Endpoint] = [Endpoint("0.0.0.0:4512")!, Endpoint("[::]:4512")!]
    /// Seconds between a node's keepalives (told to it in the registration ack).
    public var keepAliveSeconds = 5
    /// Keepalive intervals without a word after which a node's registration expires.
    public var expireAfterIntervals = 3
    /// Milliseconds the responder has to confirm a direction (resent once at half time).
    public var directionTimeoutMilliseconds = 2000
    /// Seconds a route authorization stays valid.
    public var authorizationSeconds = 300
    /// Seconds an authorization of a route that may use the relay (relay, hole punching)
    /// stays valid: the relay checks it whenever a node binds, also after the relay
    /// restarted; nodes renew it before it ends (NMSServer+Renewal.swift), so a relayed
    /// tunnel lives on while policy allows it.
    public var relayAuthorizationSeconds = 86_400
    /// Registered nodes, at most.
    public var maxNodes = 1_000_000
    /// Handshakes waiting for message 3, at most.
    public var maxPendingHandshakes = 10_000
    /// Directions waiting for their responder (or their signature), at most...
    public var maxPendingDirections = 100_000
    /// ...and at most this many for one initiator, so no node can fill the table.
    public var maxPendingDirectionsPerNode = 64
    /// Seconds a handshake may wait for message 3.
    public var handshakeTimeout: Int64 = 10
    /// Who may reach whom.
    public var policy = AccessPolicy()
    /// The relay hosts of relay directions (none: relay routes are refused); each path
    /// gets one (``RelaySelector``), each end that host's endpoint of its family.
    public var relayHosts: [RelayHost] = []

    /// The PostgreSQL database NMS replicas share (``SharedDirectory``); nil: this NMS
    /// serves alone, with its registrations in memory only.
    public var database: PostgresTarget?
    /// This replica's name among those sharing `database` (unique; its NOTIFY channel).
    public var replica = ""

    /// Every relay endpoint.
    public var relays: [Endpoint] { relayHosts.flatMap(\.endpoints) }
    /// The guard in front of every handshake initiation.
    public var handshakeGuard = HandshakeGuard.Limits()
    /// Threads receiving on each signaling socket (0: one per CPU but one, which the
    /// batch signer takes).
    public var receiveThreads = 0
    /// Threads for registrations at once, times four (0: one per CPU).
    public var workers = 0
    /// Receive buffer of each UDP socket in bytes (bursts of registrations after an NMS
    /// restart arrive at once); 0 keeps the kernel's default.
    public var receiveBufferBytes = 4 << 20

    public init() {}
}

/// The NMS's keys and certificates, from the bundle `as-server service add nms NAME`
/// wrote: NAME.key + NAME.pem (the X25519 key of its Noise handshakes), NAME.sign.key +
/// NAME.sign.pem (the Ed25519 key it signs route authorizations with) and ca.pem.
public struct NMSIdentity: Sendable {
    public let name: String
    public let key: X25519PrivateKey
    public let certificate: Certificate
    public let signingKey: Ed25519PrivateKey
    public let signingCertificate: Certificate
    public let ca: Certificate

    public init(
        name: String, key: X25519PrivateKey, certificate: Certificate, signingKey: Ed25519PrivateKey, signingCertificate: Certificate,
        ca: Certificate
    ) {
        self.name = name
        self.key = key
        self.certificate = certificate
        self.signingKey = signingKey
        self.signingCertificate = signingCertificate
        self.ca = ca
    }

    /// Loads the bundle in `directory`; `name` may be left out when it holds one NMS.
    /// Errors name the file and what is wrong with it.
    public static func load(bundle directory: String, name: String? = nil) throws -> NMSIdentity {
        let dir = directory as NSString
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        guard !files.isEmpty else { throw BundleError("\(directory) is not a readable directory with a service bundle") }
        let base: String
        if let name {
            base = name
        } else {
            let signing = files.filter { $0.hasSuffix(".sign.pem") }
            guard signing.count == 1 else {
                throw BundleError(
                    signing.isEmpty
                        ? "\(directory) holds no NMS bundle (no NAME.sign.pem: the bundle of another service? `as-server service add nms NAME --out DIR` writes one)"
                        : "\(directory) holds \(signing.count) NMS bundles (NAME.sign.pem); give --name")
            }
            base = String(signing[0].dropLast(".sign.pem".count))
        }
        func read(_ file: String) throws -> String {
            let path = dir.appendingPathComponent(file)
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw BundleError("cannot read \(path) (written by `as-server service add nms \(base)`)")
            }
            return text
        }
        func parse<T>(_ file: String, _ body: (String) throws -> T) throws -> T {
            do { return try body(try read(file)) } catch let e as BundleError { throw e } catch {
                throw BundleError("\(dir.appendingPathComponent(file)): \(error)")
            }
        }
        let identity = NMSIdentity(
            name: base, key: try parse(base + ".key") { try KeyFiles.x25519(pem: $0) },
            certificate: try parse(base + ".pem") { try Certificate(pem: $0) },
            signingKey: try parse(base + ".sign.key") { try KeyFiles.ed25519(pem: $0) },
            signingCertificate: try parse(base + ".sign.pem") { try Certificate(pem: $0) },
            ca: try parse("ca.pem") { try Certificate(pem: $0) })
        try identity.check()
        return identity
    }

    /// The keys match their certificates, which chain to the CA with role nms.
    public func check(now: Int64 = unixNowSeconds()) throws {
        let verifier = try CertificateVerifier(trustAnchor: ca)
        do { try verifier.verify(certificate, role: .nms, at: now) } catch { throw BundleError("\(name).pem: \(error)") }
        do { try verifier.verify(signingCertificate, role: .nms, at: now) } catch { throw BundleError("\(name).sign.pem: \(error)") }
        guard certificate.x25519PublicKey == key.publicKey else { throw BundleError("\(name).key does not match \(name).pem") }
        guard signingCertificate.ed25519PublicKey == signingKey.publicKey else {
            throw BundleError("\(name).sign.key does not match \(name).sign.pem")
        }
    }
}

/// A service bundle that cannot be used; says which file and why.
public struct BundleError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

extension NMSIdentity: BundledIdentity {}
