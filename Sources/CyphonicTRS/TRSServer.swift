import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Foundation
import Logging
import Synchronization

/// The Tunnel Relay Service (DESIGN §4–§5): relays the end-to-end encrypted datagrams
/// of tunnels that cannot go direct — a symmetric NAT on one side and a NAT on the other,
/// a hole punch that failed, or no IP family in common — without ever holding a tunnel
/// key.
///
/// A node opens a Noise XX session with the relay from its tunnel socket (its
/// certificate in message 3, as with the NMS), then asks for each path with a
/// ``RelayRequest`` carrying the path's NMS authorization, which the relay checks
/// offline (signed by an NMS signing certificate of our CA, not expired, naming the
/// node's proven key); that end of the path is bound to the address the request came
/// from. Capsules and tunnel handshake messages between the two bound ends are
/// forwarded unchanged (``RelayTable``), across IPv4 and IPv6 when the ends differ.
///
/// Threads: one per socket (one per listen address, so answers leave from the address
/// asked); each receives with `recvmmsg` and UDP GRO, routes a whole batch under one
/// hold of the table lock, and sends in arrival order with UDP GSO — so a session's
/// datagrams leave in the order they came (the original CYPHONIC relay reorders).
/// Signaling (handshakes, requests) runs on the same thread behind the
/// ``HandshakeGuard``. Anything that does not decode, authenticate or belong to a
/// session is counted by reason and dropped without touching other sessions.
/// `Sendable`.
public final class TRSServer: Sendable {
    public let identity: TRSIdentity
    /// The name route authorizations name this relay by: its certificate's.
    var relayName: String { identity.certificate.commonName ?? identity.name }
    public let settings: TRSSettings
    public let metrics: TRSMetrics
    /// Node handshakes: the guard and the pending table (the NMS runs the same).
    let responder: ServiceResponder
    public var handshakeGuard: HandshakeGuard { responder.handshakeGuard }
    let logger: Logger
    let verifierState: Mutex<CertificateVerifier>
    /// The verifier with the revocation list in force.
    var verifier: CertificateVerifier { verifierState.withLock { $0 } }
    let table: Mutex<RelayTable>
    let nodes = Mutex(NodeSessions())
    /// NMS signing certificates: the key (nil: refused) and until when the verdict holds.
    let signers = Mutex<[[UInt8]: (key: Ed25519PublicKey?, until: Int64)]>([:])
    /// Authorizations whose signature checked (by SHA-256), with their expiry.
    let verified = Mutex<[[UInt8]: Int64]>([:])
    let sockets = Locked<[UDPSocket]>([])
    private let threads = Locked<[RelayThread]>([])

    /// Nodes with a signaling session, by our session index and by static key.
    struct NodeSessions {
        struct Node {
            var session: CompactSignalingSession
            let key: [UInt8]
            let fqdn: String
            let serial: UInt64
            /// Where the node completed its handshake (proved it receives there).
            let endpoint: Endpoint
            let socketIndex: Int
            var lastSeen: Int64
            var budget: SignalingBudget
        }
        var byIndex: [UInt32: Node] = [:]
        var byKey: [[UInt8]: UInt32] = [:]

        mutating func remove(_ index: UInt32) {
            guard let n = byIndex.removeValue(forKey: index) else { return }
            if byKey[n.key] == index { byKey.removeValue(forKey: n.key) }
        }
    }

    public init(identity: TRSIdentity, settings: TRSSettings, metrics: TRSMetrics = TRSMetrics(), logger: Logger) throws {
        self.identity = identity
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        verifierState = Mutex(try CertificateVerifier(trustAnchor: identity.ca))
        responder = ServiceResponder(
            key: identity.key, certificate: identity.certificate, handshakeGuard: try HandshakeGuard(limits: settings.handshakeGuard),
            maxPending: settings.maxPendingHandshakes, timeout: settings.handshakeTimeout)
        table = Mutex(
            RelayTable(
                maxSessions: settings.maxSessions, maxEndsPerNode: settings.maxSessionsPerNode,
                packetsPerSecondPerEnd: settings.packetsPerSecondPerEnd, idleSeconds: Double(settings.sessionIdleSeconds)))
    }

    /// Binds every listen address and starts a thread for each.
    public func start() throws {
        var opened: [UDPSocket] = []
        do {
            for endpoint in settings.listen {
                let socket = try UDPSocket(bind: endpoint)
                if settings.socketBufferBytes > 0 {
                    // Send buffer up to the kernel's cap; the receive buffer forced as root
                    // (bursts of GRO messages overflow the ~208 KiB default at once).
                    try? socket.setBufferSizes(receive: settings.socketBufferBytes, send: settings.socketBufferBytes)
                    try? socket.setReceiveBufferSize(settings.socketBufferBytes)
                }
                try socket.setNonBlocking(true)
                opened.append(socket)
            }
        } catch {
            opened.forEach { $0.close() }
            throw error
        }
        sockets.withLock { $0 = opened }
        let started = opened.indices.map { RelayThread(server: self, index: $0, sockets: opened) }
        threads.withLock { $0 = started }
        for (i, s) in opened.enumerated() {
            logger.info("trs: listening on udp \((try? s.localEndpoint())?.description ?? settings.listen[i].description)")
        }
    }

    /// The bound endpoints, in listen order.
    public var boundEndpoints: [Endpoint] { sockets.withLock { $0.compactMap { try? $0.localEndpoint() } } }

    /// Stops the threads and closes the sockets.
    public func stop() {
        let running = threads.withLock { t -> [RelayThread] in
            defer { t = [] }
            return t
        }
        running.forEach { $0.stop() }
        sockets.withLock { s in
            s.forEach { $0.close() }
            s = []
        }
        logger.info("trs: stopped")
    }

    /// Puts a newer revocation list in force: revoked nodes lose their signaling session
    /// and every relay session they take part in; their handshakes are refused from now on.
    public func applyRevocations(_ crl: RevocationList) throws {
        let updated = try CertificateVerifier(trustAnchor: identity.ca, revocations: crl)
        let newer = verifierState.withLock { v -> Bool in
            guard v.revocations == nil || v.revocations!.number < crl.number else { return false }
            v = updated
            return true
        }
        guard newer else { return }
        let revoked = nodes.withLock { n -> [(String, [UInt8])] in
            let gone = n.byIndex.filter { crl.contains($0.value.serial) }
            for (index, _) in gone { n.remove(index) }
            return gone.map { ($0.value.fqdn, $0.value.key) }
        }
        let keys = Set(revoked.map(\.1))
        table.withLock { t in
            for (id, s) in t.sessions where s.ends.contains(where: { keys.contains($0.key) }) { t.remove(id) }
        }
        logger.info(
            "trs: revocation list #\(crl.number) in force\(revoked.isEmpty ? "" : "; relaying ended for \(revoked.map(\.0).joined(separator: ", "))")"
        )
    }

    /// Expires handshakes, silent nodes and idle sessions (once a second, from any thread).
    func housekeeping(now: Int64) {
        responder.expire(now: now)
        let gone = nodes.withLock { n -> Int in
            let silent = n.byIndex.filter { now - $0.value.lastSeen > Int64(settings.nodeIdleSeconds) }.map(\.key)
            silent.forEach { n.remove($0) }
            return silent.count
        }
        let (expired, count) = table.withLock { t in (t.expire(now: monotonicSeconds()), t.count) }
        metrics.sessionsGauge.set(Int64(count))
        metrics.nodesGauge.set(Int64(nodes.withLock { $0.byIndex.count }))
        if expired > 0 || gone > 0 { logger.debug("trs: \(expired) idle session(s) and \(gone) silent node(s) expired") }
    }
}

/// Sealed messages one node may send: 50 a second, bursts of 300 (a refresh of every
/// path of a busy node), so relay requests cannot pin the relay's threads.
struct SignalingBudget {
    var tokens = 300.0
    var at: Int64

    init(now: Int64) { at = now }

    mutating func take(now: Int64) -> Bool {
        if now > at {
            tokens = min(300, tokens + Double(now - at) * 50)
            at = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
