import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Logging
import Synchronization

/// The node's signaling module (DESIGN §2, §4): registration with the NMS from the
/// tunnel socket (so the NMS sees the mapping peers will use), keepalives,
/// re-registration after a missed ack, a restarted NMS or a local address change, NAT
/// probes, tunnel set-up on demand (direction requests, route directions as initiator
/// or responder, hole punching) and Finalization at shutdown.
///
/// Driven by the pipeline's control thread (``handle(_:from:)`` for NMS and punch
/// datagrams, ``tick()`` every 250 ms) and by the resolver (``requestTunnel(to:deadline:_:)``
/// from its threads); all state is behind one mutex, and no crypto or I/O runs under it
/// except sealing short messages. An unreachable NMS never touches static or existing
/// tunnels: `status` says what the module is waiting for. `Sendable`.
public final class NodeSignaling: Sendable {
    /// Where registration stands (for status).
    public enum Phase: String, Sendable, Codable {
        case disabled, connecting, registered, retrying
    }

    // `@unchecked Sendable`: the session and handshake objects inside are used only under
    // `state`'s lock (sealing, opening) or by the control thread alone (completing a
    // handshake), never by two threads at once.
    struct Registered: @unchecked Sendable {
        var session: SignalingSession
        var observed: Endpoint
        var keepAliveSeconds: Double
        var lastKeepAliveSent: Double
        var lastAck: Double
        var awaitingAck: Bool
        /// Keepalives sent again while the ack is due (a lost datagram is not a lost NMS).
        var resent = 0
        var registeredAt: Double
        var signer: Ed25519PublicKey?
        /// The NMS signing certificate (DER), which relay requests carry.
        var signingCertificate: [UInt8] = []
    }

    struct Connecting: @unchecked Sendable {
        var handshake: ServiceClientHandshake
        var sentAt: Double
        var completed: SignalingSession?
    }

    struct State {
        var phase: Phase = .connecting
        var reason = "starting"
        var nmsIndex = 0
        var attempts = 0
        var nextAttempt = 0.0
        var connecting: Connecting?
        var registration: Registered?
        var localEndpoints: [Endpoint] = []
        var lastLocalCheck = 0.0
        var mapping4: NATProbeResult.Mapping?
        var mapping6: NATProbeResult.Mapping?
        var probeToken: [UInt8] = []
        var probeTargets: [Endpoint] = []
        var probesLeft = 0
        var lookups: [String: Lookup] = [:]
        var paths: [String: PathInfo] = [:]
        var negative: [String: Double] = [:]
        /// Our sessions with the relays that carry (or may carry) our tunnels.
        var relays: [Endpoint: RelayLink] = [:]
        var counters = Counters()
    }

    /// Figures for status and metrics.
    public struct Counters: Sendable, Codable, Equatable {
        public var registrations: UInt64 = 0
        public var keepAlivesMissed: UInt64 = 0
        public var directionsRequested: UInt64 = 0
        public var directionsAnswered: UInt64 = 0
        public var directionsRefused: UInt64 = 0
        public var directionsAsResponder: UInt64 = 0
        public var authorizationsRefused: UInt64 = 0
        public var punchesSent: UInt64 = 0
        public var punchesReceived: UInt64 = 0
        public var badDatagrams: UInt64 = 0
        public var relayRequests: UInt64 = 0
        public var relayRefusals: UInt64 = 0
        public var switchesToDirect: UInt64 = 0
        public var fallbacksToRelay: UInt64 = 0
        /// New paths asked for because a relay stopped answering.
        public var relayReroutes: UInt64 = 0
        /// Path authorization renewals asked for, received (valid), refused by the NMS.
        public var renewalsRequested: UInt64 = 0
        public var authorizationsRenewed: UInt64 = 0
        public var renewalsRefused: UInt64 = 0
    }

    let nms: [Endpoint]
    let key: X25519PrivateKey
    let localKey: [UInt8]
    private let certificateValue: Mutex<[UInt8]>
    var certificateDER: [UInt8] { certificateValue.withLock { $0 } }
    let nodeID: UInt64
    let listenPort: UInt16
    let overlay: [IPPrefix]
    unowned let manager: TunnelManager
    let logger: Logger
    let state = Mutex(State())

    /// `nms`: the NMS endpoints (from the provision or the config), tried in order.
    init(
        nms: [Endpoint], key: X25519PrivateKey, certificate: Certificate, listenPort: UInt16, overlay: [IPPrefix], manager: TunnelManager,
        logger: Logger
    ) {
        // Only NMS endpoints of a family this host has an address of (an IPv6-only host
        // would wait on every IPv4 endpoint first); all of them when that leaves none.
        let families = Set(localAddresses(excluding: overlay).map(\.isIPv4))
        let reachable = nms.filter { families.contains($0.address.isIPv4) }
        self.nms = reachable.isEmpty ? nms : reachable
        self.key = key
        localKey = key.publicKey.bytes
        certificateValue = Mutex(certificate.derBytes)
        nodeID = certificate.serial ?? 0
        self.listenPort = listenPort
        self.overlay = overlay
        self.manager = manager
        self.logger = logger
        // Nodes spread over the NMS replicas: each starts at one of the endpoints of the
        // first endpoint's family, by its virtual IPv4 address (the AS hands them out in
        // order, so consecutive nodes alternate); with one NMS, at its first endpoint.
        if let family = self.nms.first?.address.isIPv4 {
            let firsts = self.nms.indices.filter { self.nms[$0].address.isIPv4 == family }
            let vip = certificate.ipAddresses.first { $0.isIPv4 }.map { $0.bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) } } ?? 0
            let start = firsts[Int(vip % UInt64(firsts.count))]
            state.withLock { $0.nmsIndex = start }
        }
        if self.nms.isEmpty {
            state.withLock {
                $0.phase = .disabled
                $0.reason = "no NMS endpoint (none in the enrolment's provision, none in config `nms`)"
            }
        }
    }

    var nmsEndpoint: Endpoint { state.withLock { nms[$0.nmsIndex % nms.count] } }

    func send(_ bytes: [UInt8], to endpoint: Endpoint) { manager.send(bytes, to: SocketAddress(endpoint)) }

    // MARK: registration

    /// Starts a registration handshake with the current NMS (after `reason`).
    func register(because reason: String, now: Double) {
        guard !nms.isEmpty else { return }
        let locals = localAddresses(excluding: overlay).map { Endpoint(address: $0, port: listenPort) }
        do {
            let handshake = try ServiceClientHandshake(localStatic: key, verifier: manager.verifier, role: .nms)
            let (target, first) = state.withLock { s -> (Endpoint, Bool) in
                s.attempts += 1
                // Every third failed attempt in a row tries the next NMS endpoint.
                if s.attempts > 1, s.attempts % 3 == 1 { s.nmsIndex += 1 }
                s.connecting = Connecting(handshake: handshake, sentAt: now, completed: nil)
                s.localEndpoints = Array(locals.prefix(WireLimits.maxEndpoints))
                s.lastLocalCheck = now
                s.nextAttempt = now + min(4, 0.5 * Double(s.attempts))
                if s.phase != .registered || s.registration == nil { s.phase = s.attempts > 1 ? .retrying : .connecting }
                s.reason = reason
                return (nms[s.nmsIndex % nms.count], s.attempts == 1)
            }
            send(try handshake.initiation(), to: target)
            if first { logger.info("signaling: registering with the NMS at \(target)") }
        } catch {
            state.withLock { $0.reason = "cannot start a handshake: \(error)" }
        }
    }

    /// The NMS answered message 1: complete with our registration (certificate and
    /// local addresses) in message 3.
    func handshakeResponse(_ bytes: [UInt8], receiverIndex: UInt32, now: Double) {
        let (handshake, locals) = state.withLock { s -> (ServiceClientHandshake?, [Endpoint]) in
            guard let c = s.connecting, c.handshake.localIndex == receiverIndex, c.completed == nil else { return (nil, []) }
            return (c.handshake, s.localEndpoints)
        }
        guard let handshake else { return countBad() }
        do {
            let payload = try SignalingMessage(
                transactionID: UInt32(truncatingIfNeeded: handshake.transactionID),
                body: .registration(CyphonicWire.Registration(certificate: certificateDER, localEndpoints: locals))
            ).encode()
            let (completion, session) = try handshake.complete(response: bytes, payload: payload)
            // Only into the handshake it completes (a renewal may have started another).
            let current = state.withLock { s -> Bool in
                guard s.connecting?.handshake.localIndex == receiverIndex else { return false }
                s.connecting?.completed = session
                return true
            }
            guard current else { return }
            send(completion, to: nmsEndpoint)
        } catch {
            state.withLock {
                $0.reason = "the NMS at \(nms[$0.nmsIndex % nms.count]) is not acceptable: \(error)"
                $0.connecting = nil
            }
            logger.warning("signaling: NMS handshake refused: \(error)")
        }
    }

    /// The NMS wants proof of our address: repeat message 1 with its cookie.
    func cookieReply(_ cookie: [UInt8], receiverIndex: UInt32, now: Double) {
        guard let old = state.withLock({ $0.connecting?.handshake }), old.localIndex == receiverIndex else { return countBad() }
        do {
            let handshake = try ServiceClientHandshake(localStatic: key, verifier: manager.verifier, role: .nms)
            state.withLock { $0.connecting = Connecting(handshake: handshake, sentAt: now, completed: nil) }
            send(try handshake.initiation(cookie: cookie), to: nmsEndpoint)
        } catch {
            logger.warning("signaling: cannot answer the NMS cookie: \(error)")
        }
    }

    /// The registration ack: we are registered; probe our NAT from the tunnel socket.
    func registered(_ ack: RegistrationAck, session: SignalingSession, now: Double) {
        var signer: Ed25519PublicKey?
        do { signer = try nmsSigningKey(certificate: ack.signingCertificate, verifier: manager.verifier) } catch {
            logger.warning("signaling: the NMS signing certificate is not acceptable (\(error)); its route directions will be refused")
        }
        let nmsNow = nmsEndpoint
        // Probes: to the probe port, and to the signaling port on the other family,
        // at every NMS address (an unspecified probe address means "the one you used").
        var targets: [Endpoint] = []
        for e in nms {
            for p in ack.probeEndpoints where p.address.isIPv4 == e.address.isIPv4 {
                let unspecified = p.address.bytes.allSatisfy { $0 == 0 }
                targets.append(Endpoint(address: unspecified ? e.address : p.address, port: p.port))
            }
            if e.address.isIPv4 != nmsNow.address.isIPv4 { targets.append(e) }
        }
        let again = state.withLock { s -> Bool in
            let again = s.counters.registrations > 0
            s.counters.registrations += 1
            s.registration = Registered(
                session: session, observed: ack.observed, keepAliveSeconds: Double(max(1, ack.keepAliveSeconds)),
                lastKeepAliveSent: now, lastAck: now, awaitingAck: false, registeredAt: now, signer: signer,
                signingCertificate: ack.signingCertificate)
            s.connecting = nil
            s.phase = .registered
            s.reason = "registered"
            s.attempts = 0
            s.probeToken = ack.probeToken
            s.probeTargets = Array(Set(targets))
            s.probesLeft = 3
            return again
        }
        logger.info(
            "signaling: \(again ? "re-registered" : "registered") with the NMS at \(nmsNow); it sees us at \(ack.observed), keepalive \(ack.keepAliveSeconds) s"
        )
        sendProbes()
    }

    /// NAT probes from the tunnel socket (a few times: they are unacknowledged UDP).
    func sendProbes() {
        let (token, targets, send) = state.withLock { s -> ([UInt8], [Endpoint], Bool) in
            guard s.probesLeft > 0 else { return ([], [], false) }
            s.probesLeft -= 1
            return (s.probeToken, s.probeTargets, true)
        }
        guard send, let probe = try? Datagram(.natProbe(token: token)).encode() else { return }
        for t in targets { self.send(probe, to: t) }
    }

    func countBad() { state.withLock { $0.counters.badDatagrams += 1 } }

    /// Seals `body` in the NMS session and sends it; false when not registered.
    @discardableResult
    func sendToNMS(_ body: SignalingBody, transactionID: UInt32) -> Bool {
        guard
            let bytes = state.withLock({ s -> [UInt8]? in
                guard let r = s.registration else { return nil }
                return try? r.session.seal(SignalingMessage(transactionID: transactionID, body: body))
            })
        else { return false }
        send(bytes, to: nmsEndpoint)
        return true
    }

    /// Uses a renewed certificate from the next registration on, which starts now (the
    /// NMS records the certificate a node registered with).
    public func replaceCertificate(_ certificate: Certificate) {
        certificateValue.withLock { $0 = certificate.derBytes }
        state.withLock { $0.nextAttempt = 0 }
        register(because: "certificate renewed", now: monotonicSeconds())
    }

    /// Finalization to the NMS (shutdown): it forgets us at once.
    public func finalize() {
        if sendToNMS(.finalization(.shutdown), transactionID: 0) { logger.info("signaling: signed off at the NMS") }
    }
}
