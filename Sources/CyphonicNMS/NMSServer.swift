import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import CyphonicSignaling
import CyphonicWire
import Dispatch
import Glibc
import Logging
import Synchronization

/// The Node Management Service (DESIGN §1, §4, §5): nodes register from their tunnel
/// socket inside a Noise XX session (the NMS proves its certificate in message 2; the
/// node's certificate and local addresses ride encrypted in message 3), keep alive,
/// probe a second port so the NMS learns their NAT mapping behaviour, and ask for
/// tunnels by name; the NMS selects the route (``selectRoute(initiator:responder:)``),
/// signs an authorization, directs the responder, and on its confirmation directs the
/// initiator.
///
/// Threads: one receive thread per socket decodes and answers messages (keepalives,
/// probes, direction requests, confirmations); handshake completions (certificate
/// checks) run on the worker pool, at most 4 × `workers` at once; route authorizations
/// are signed in batches on the signer thread (``BatchSigner``).
/// Registrations live in a ``NodeRegistry``. A datagram that does not decode,
/// authenticate or belong to a session is counted by reason and dropped; it never
/// disturbs another node's state. `Sendable`.
public final class NMSServer: Sendable {
    public let identity: NMSIdentity
    public let settings: NMSSettings
    public let metrics: NMSMetrics
    public let registry: any NodeRegistry
    /// Node handshakes: the guard, the pending table (shared with the relay's code).
    let responder: ServiceResponder
    public var handshakeGuard: HandshakeGuard { responder.handshakeGuard }
    let logger: Logger
    let verifierState: Mutex<CertificateVerifier>
    /// One entry per socket (signaling first, then probes): the socket's receive threads.
    let loops = Locked<[(loops: [ReceiveLoop], probe: Bool)]>([])
    let directions = Mutex(DirectionTable())
    let workSlots: DispatchSemaphore
    let lastHousekeeping = Atomic<Int64>(0)
    let lastDirectionSweep = Atomic<Int64>(0)
    let signingCertificateDER: [UInt8]
    let refusalLog: LogRateLimiter
    let signer: BatchSigner
    /// Which relay host carries each new relayable path.
    public let relaySelector: RelaySelector
    /// The directory shared with other replicas (nil: this NMS serves alone).
    public let shared: SharedDirectory?
    /// Directions another replica sent us to deliver: path → that replica, the node it
    /// was for, until when.
    let forwarded = Mutex([UInt64: (origin: String, target: String, until: Int64)]())
    /// The last renewal signed per path id (its expiry and bytes): a repeated request
    /// (both nodes asking, a resend, a replay) gets it again instead of a new signature.
    let renewed = Mutex([UInt64: (expires: UInt64, bytes: [UInt8])]())

    /// Directions in progress: those sent to their responder, and those being signed
    /// (reserved), counted per initiator so that no node can take the whole table.
    struct DirectionTable {
        struct Request: Hashable {
            let initiator: String
            let transaction: UInt32
        }
        enum Reservation { case reserved, duplicate, full }

        var entries: [UInt64: PendingDirection] = [:]
        var reserved = 0
        var perInitiator: [String: Int] = [:]
        /// Requests in progress: a node repeats an unanswered request under the same
        /// transaction id, which must not start a second direction.
        var requests: Set<Request> = []
        var count: Int { entries.count + reserved }

        /// Takes a place for a request; not when it is in progress already, or when the
        /// table or the initiator's share is full.
        mutating func reserve(_ initiator: String, transaction: UInt32, max: Int, perNode: Int) -> Reservation {
            let request = Request(initiator: initiator, transaction: transaction)
            if requests.contains(request) { return .duplicate }
            guard count < max, perInitiator[initiator, default: 0] < perNode else { return .full }
            reserved += 1
            perInitiator[initiator, default: 0] += 1
            requests.insert(request)
            return .reserved
        }

        /// Gives back a request's place (answered, refused, timed out, not signed).
        mutating func release(_ initiator: String, transaction: UInt32) {
            requests.remove(Request(initiator: initiator, transaction: transaction))
            let left = perInitiator[initiator, default: 1] - 1
            if left <= 0 { perInitiator.removeValue(forKey: initiator) } else { perInitiator[initiator] = left }
        }
    }

    /// A direction sent to the responder, waiting for its confirmation.
    struct PendingDirection: Sendable {
        let initiator: String
        let initiatorTransaction: UInt32
        let responder: String
        let route: Route
        let authorization: [UInt8]
        /// The relay host the path may use (relay routes, punches that may fall back).
        let relay: RelayHost?
        /// The responder as the direction found it, and the replica it is registered
        /// with when that is another one (its direction and confirmation go through it).
        let responderEntry: DirectoryEntry
        let responderReplica: String?
        let expires: UInt64
        let created: Int64
        var resent: Bool
        /// The direction for the responder, kept to resend it once.
        let responderMessage: SignalingMessage
    }

    public init(
        identity: NMSIdentity, settings: NMSSettings, registry: (any NodeRegistry)? = nil, revocations: RevocationList? = nil,
        metrics: NMSMetrics = NMSMetrics(), logger: Logger
    ) throws {
        self.identity = identity
        self.settings = settings
        self.metrics = metrics
        self.registry = registry ?? InMemoryNodeRegistry(capacity: settings.maxNodes)
        self.logger = logger
        verifierState = Mutex(try CertificateVerifier(trustAnchor: identity.ca, revocations: revocations))
        responder = ServiceResponder(
            key: identity.key, certificate: identity.certificate, handshakeGuard: try HandshakeGuard(limits: settings.handshakeGuard),
            maxPending: settings.maxPendingHandshakes, timeout: settings.handshakeTimeout)
        let workers = settings.workers > 0 ? settings.workers : Self.cores
        workSlots = DispatchSemaphore(value: 4 * workers)
        signingCertificateDER = identity.signingCertificate.derBytes
        refusalLog = LogRateLimiter(perSecond: 10)
        signer = BatchSigner(key: identity.signingKey, metrics: metrics)
        relaySelector = RelaySelector(hosts: settings.relayHosts)
        shared = try settings.database.map { try SharedDirectory(target: $0, replica: settings.replica, logger: logger) }
    }

    /// The verifier with the revocation list in force.
    var verifier: CertificateVerifier { verifierState.withLock { $0 } }

    /// Binds every socket and starts the receive threads.
    public func start() throws {
        signer.start()
        if let shared {
            let registry = self.registry
            shared.start(
                onMessage: { [weak self] in self?.replicaMessage($0) },
                registrations: { registry.all().map(DirectoryEntry.init) })
            logger.info("nms: replica \(shared.replica), sharing registrations in \(shared.target)")
        }
        var started: [(loops: [ReceiveLoop], probe: Bool)] = []
        let threads = settings.receiveThreads > 0 ? settings.receiveThreads : max(1, Self.cores - 1)
        do {
            for (probe, list) in [(false, settings.listen), (true, settings.probeListen)] {
                for endpoint in list {
                    let socket = try UDPSocket(bind: endpoint)
                    if settings.receiveBufferBytes > 0 { try socket.setReceiveBufferSize(settings.receiveBufferBytes) }
                    let index = started.count
                    // Several threads receive from one signaling socket (the kernel hands each
                    // datagram to one of them); probes are rare, one thread does.
                    var socketLoops: [ReceiveLoop] = []
                    for _ in 0..<(probe ? 1 : threads) {
                        socketLoops.append(
                            try ReceiveLoop(
                                socket: socket, name: probe ? "nms-probe" : "nms-udp",
                                handle: { [self] bytes, from, socket in
                                    self.handle(bytes, from: from, socket: socket, index: index, probePort: probe)
                                }, tick: { [self] in self.housekeeping() }))
                    }
                    started.append((socketLoops, probe))
                    let bound = try socket.localEndpoint()
                    logger.info("nms: listening on udp \(bound)\(probe ? " (NAT probes)" : ", \(threads) receive threads")")
                }
            }
        } catch {
            for entry in started {
                entry.loops.forEach { $0.stop() }
                entry.loops.first?.socket.close()
            }
            throw error
        }
        loops.withLock { $0 = started }
    }

    static var cores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// The bound endpoints: signaling first, then probe sockets.
    public var boundEndpoints: [Endpoint] { loops.withLock { $0.compactMap { try? $0.loops.first?.socket.localEndpoint() } } }

    /// Stops the receive threads and closes the sockets.
    public func stop() {
        let all = loops.withLock { l -> [(loops: [ReceiveLoop], probe: Bool)] in
            defer { l = [] }
            return l
        }
        for entry in all {
            entry.loops.forEach { $0.stop() }
            entry.loops.first?.socket.close()
        }
        signer.stop()
        shared?.stop()
        logger.info("nms: stopped")
    }

    /// Puts a newer revocation list in force: registrations of listed nodes end now.
    public func applyRevocations(_ crl: RevocationList) throws {
        let updated = try CertificateVerifier(trustAnchor: identity.ca, revocations: crl)
        let newer = verifierState.withLock { v -> Bool in
            guard (v.revocations?.number ?? 0) < crl.number || v.revocations == nil else { return false }
            v = updated
            return true
        }
        guard newer else { return }
        let gone = registry.expire(lastSeenBefore: Int64.min) { crl.contains($0.serial) }
        for r in gone { shared?.withdraw(r.fqdn) }
        metrics.expired.increment(by: Int64(gone.count))
        metrics.registeredNodes.set(Int64(registry.count))
        logger.info(
            "nms: revocation list #\(crl.number) in force\(gone.isEmpty ? "" : "; registrations ended for \(gone.map(\.fqdn).joined(separator: ", "))")"
        )
    }

    func socket(_ index: Int) -> UDPSocket? { loops.withLock { index < $0.count ? $0[index].loops.first?.socket : nil } }

    // MARK: datagrams (on a receive thread)

    func handle(_ bytes: UnsafeRawBufferPointer, from: Endpoint, socket: UDPSocket, index: Int, probePort: Bool) {
        metrics.datagramsReceived.increment()
        let header: Header
        do { header = try Header.decode(bytes) } catch {
            metrics.drop("malformed")
            return
        }
        let now = unixNowSeconds()
        switch header.type {
        case .natProbe:
            probe(bytes, from: from, probePort: probePort, now: now)
        case _ where probePort:
            metrics.drop("unexpected_type")
        case .handshakeInitiation:
            initiation(bytes, from: from, socket: socket, index: index, now: now)
        case .handshakeCompletion:
            guard responder.isPending(header.receiverIndex, from: from) else {
                metrics.drop("unknown_session")
                return
            }
            let copy = Array(bytes)
            offload { self.completion(copy, header: header, from: from, socket: socket, index: index, now: now) }
        case .signaling:
            signaling(Array(bytes), header: header, from: from, index: index, now: now)
        default:
            metrics.drop("unexpected_type")
        }
    }

    /// Runs `work` on the worker pool, or drops it when every slot is taken.
    func offload(_ work: @escaping @Sendable () -> Void) {
        guard workSlots.wait(timeout: .now()) == .success else {
            metrics.drop("table_full")
            return
        }
        DispatchQueue.global().async { [workSlots] in
            defer { workSlots.signal() }
            work()
        }
    }

    private func initiation(_ bytes: UnsafeRawBufferPointer, from: Endpoint, socket: UDPSocket, index: Int, now: Int64) {
        switch responder.answer(bytes, from: from, socketIndex: index, now: now, inUse: { registry.withNode(sessionIndex: $0, { _ in true }) != nil })
        {
        case .reply(let reply, let cookie):
            if cookie { metrics.drop("cookie_sent") }
            try? socket.send(reply, to: from)
        case .drop(let reason):
            metrics.drop(reason)
        }
    }

    /// Seals `message` in the session of `fqdn` and sends it to where its signaling
    /// comes from; false when the node is gone or the send failed.
    @discardableResult
    func send(_ message: SignalingMessage, to fqdn: String, status: StatusCode = .ok) -> Bool {
        guard
            let (session, counter, endpoint, index) = registry.withNode(
                named: fqdn,
                { r -> (CompactSignalingSession, UInt64, Endpoint, Int)? in
                    guard let c = try? r.session.nextCounter() else { return nil }
                    return (r.session, c, r.signalingEndpoint, r.socketIndex)
                }) ?? nil
        else { return false }
        do {
            let bytes = try session.seal(message, counter: counter, status: status)
            try socket(index)?.send(bytes, to: endpoint)
            return true
        } catch {
            logger.debug("nms: send to \(fqdn) at \(endpoint) failed: \(error)")
            return false
        }
    }

    // MARK: housekeeping

    /// Expires handshakes, silent nodes and unanswered directions; at most once a second
    /// (directions every 100 ms).
    func housekeeping() {
        let now = unixNowSeconds()
        sweepDirections()
        guard lastHousekeeping.exchange(now, ordering: .relaxed) != now else { return }
        responder.expire(now: now)
        let cutoff = now - Int64(settings.keepAliveSeconds * settings.expireAfterIntervals)
        // A tenth of the registry a second (at least 10 000): every record within 10 s.
        let gone = registry.expireSome(lastSeenBefore: cutoff, limit: max(10_000, registry.count / 10)) { $0.notAfter < now }
        if !gone.isEmpty {
            for r in gone { shared?.withdraw(r.fqdn) }
            metrics.expired.increment(by: Int64(gone.count))
            let names = gone.prefix(10).map(\.fqdn).joined(separator: ", ")
            logger.info("nms: \(gone.count) registration(s) expired (silent or certificate expired): \(names)\(gone.count > 10 ? ", …" : "")")
        }
        metrics.registeredNodes.set(Int64(registry.count))
        if shared != nil { forwarded.withLock { f in f = f.filter { $0.value.until > now } } }
        if let n = refusalLog.takeSuppressed(now: now) { refusalsNotLogged(n) }
    }

    /// The summary line for refusals the rate limit held back.
    func refusalsNotLogged(_ n: Int) { logger.notice("nms: \(n) refusals not logged (rate limit)") }
}
