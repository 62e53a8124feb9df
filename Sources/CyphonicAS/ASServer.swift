import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import CyphonicSignaling
import CyphonicWire
import Dispatch
import Logging
import Synchronization

/// Limits of the AS's in-memory tables.
public struct ASServerLimits: Sendable {
    /// Handshakes waiting for message 3, at most.
    public var maxPendingHandshakes = 10_000
    /// Established sessions, at most.
    public var maxSessions = 10_000
    /// Seconds a handshake may wait for message 3.
    public var handshakeTimeout: Int64 = 10
    /// Seconds an idle session is kept (for revocation-list requests after login).
    public var sessionTimeout: Int64 = 60
    /// Logins being processed at once (on the global worker pool), at most.
    public var maxConcurrentLogins = 64
    /// "login refused" log lines per second, at most (the rest are counted, then summarised).
    public var refusalLogLinesPerSecond = 10
    /// Seconds between checks whether the CRL must be re-published (half its validity left).
    public var crlCheckInterval: Int64 = 60
    /// The handshake guard in front of every initiation (cookies for unverified
    /// sources under load or for unpadded requests; per-source and total limits).
    public var handshakeGuard = HandshakeGuard.Limits()

    public init() {}
}

/// The AS's UDP front end: Login → Provision inside a Noise XX session (the AS proves
/// its certificate in message 2; the node's login rides encrypted in message 3), and
/// revocation-list requests in established sessions. Each listening socket has its own
/// receive thread; shared tables sit behind a mutex; slow work (PBKDF2, signing) runs
/// outside it. A message 3 is accepted once: a replay finds no pending handshake and is
/// dropped. `Sendable`.
public final class ASServer: Sendable {
    public let authority: ASAuthority
    public let metrics: ASMetrics
    /// Decides on each initiation before any asymmetric crypto (shared with the node).
    public let handshakeGuard: HandshakeGuard
    /// Size of our message 2, computed once (not re-encoding the certificate per initiation).
    private let responseSize: Int
    public let limits: ASServerLimits
    private let logger: Logger
    private let listen: [Endpoint]
    private let loops = Locked<[ReceiveLoop]>([])
    private let tables = Locked(Tables())
    private let lastHousekeeping = Atomic<Int64>(0)
    private let loginSlots: DispatchSemaphore
    private let refusalLog: LogRateLimiter
    private let lastCRLCheck = Atomic<Int64>(0)

    struct Pending {
        let handshake: ServiceServerHandshake
        let created: Int64
        /// The address message 1 came from: message 3 must come from it too.
        let from: Endpoint
    }

    /// An established session, bound to the address that completed it (answers never
    /// go to another address, so a forged source gains nothing).
    struct Kept {
        let session: SignalingSession
        let peer: Endpoint
        let sourceKey: [UInt8]
        let created: Int64
        var requests = 0
    }

    struct Tables {
        var pending: [UInt32: Pending] = [:]
        var sessions: [UInt32: Kept] = [:]
    }

    /// Sessions per source (IPv4 address, IPv6 /64), at most: the oldest makes way.
    static let sessionsPerSource = 8
    /// Requests one session may make (revocation-list parts and the like), at most.
    static let requestsPerSession = 256
    /// Seconds a session lives at most, however busy.
    static let sessionLifetime: Int64 = 600

    /// Keeps `session` (already used for its first reply) for later requests.
    private func keep(_ session: SignalingSession, from: Endpoint, now: Int64) -> Bool {
        let key = HandshakeGuard.sourceKey(from.address)
        return tables.withLock { t -> Bool in
            let mine = t.sessions.filter { $0.value.sourceKey == key }
            if mine.count >= Self.sessionsPerSource, let oldest = mine.min(by: { $0.value.created < $1.value.created }) {
                t.sessions.removeValue(forKey: oldest.key)
            }
            guard t.sessions.count < limits.maxSessions else { return false }
            t.sessions[session.localIndex] = Kept(session: session, peer: from, sourceKey: key, created: now)
            return true
        }
    }

    public init(
        authority: ASAuthority, listen: [Endpoint], metrics: ASMetrics, limits: ASServerLimits = ASServerLimits(),
        logger: Logger
    ) {
        self.authority = authority
        self.listen = listen
        self.metrics = metrics
        self.limits = limits
        self.logger = logger
        loginSlots = DispatchSemaphore(value: limits.maxConcurrentLogins)
        refusalLog = LogRateLimiter(perSecond: limits.refusalLogLinesPerSecond)
        // A guard that cannot draw a random secret is a broken machine: refuse to serve.
        handshakeGuard = try! HandshakeGuard(limits: limits.handshakeGuard)
        responseSize = HandshakeGuard.responseSize(certificateBytes: authority.directory.serviceCertificate.derBytes.count)
    }

    /// Binds every listen endpoint and starts their receive threads.
    public func start() throws {
        var started: [ReceiveLoop] = []
        do {
            for endpoint in listen {
                let socket = try UDPSocket(bind: endpoint)
                let loop = try ReceiveLoop(
                    socket: socket, name: "as-udp \(endpoint)",
                    handle: { [self] bytes, from, socket in
                        self.handle(bytes, from: from, socket: socket)
                    }, tick: { [self] in self.housekeeping() })
                started.append(loop)
                let bound = try socket.localEndpoint()
                logger.info("as: listening on udp \(bound)")
            }
        } catch {
            started.forEach { $0.stop() }
            throw error
        }
        loops.withLock { $0 = started }
        updatePoolGauges()
    }

    /// The bound endpoints (with the kernel's ports for port 0).
    public var boundEndpoints: [Endpoint] { loops.withLock { $0.compactMap { try? $0.socket.localEndpoint() } } }

    /// Stops the receive threads and closes the sockets.
    public func stop() {
        let all = loops.withLock { l -> [ReceiveLoop] in
            defer { l = [] }
            return l
        }
        for loop in all {
            loop.stop()
            loop.socket.close()
        }
        logger.info("as: stopped")
    }

    // MARK: datagram handling (on a receive thread)

    func handle(_ bytes: UnsafeRawBufferPointer, from: Endpoint, socket: UDPSocket) {
        metrics.datagramsReceived.increment()
        let datagram: Datagram
        do { datagram = try Datagram.decode(bytes) } catch {
            metrics.drop("malformed")
            logger.debug("as: malformed datagram from \(from): \(error)")
            return
        }
        let now = unixNow()
        switch datagram.body {
        case .handshakeInitiation:
            initiation(datagram, size: bytes.count, from: from, socket: socket, now: now)
        case .handshakeCompletion:
            // Only a completion for a handshake in progress takes a login slot (garbage
            // with unknown indexes is dropped here and crowds out nobody).
            guard tables.withLock({ $0.pending[datagram.header.receiverIndex] != nil }) else {
                metrics.drop("unknown_session")
                return
            }
            // Logins cost PBKDF2 and a signature: run them on the worker pool so every
            // core serves logins, with at most `maxConcurrentLogins` in flight.
            guard loginSlots.wait(timeout: .now()) == .success else {
                metrics.drop("table_full")
                return
            }
            DispatchQueue.global().async { [self] in
                defer { loginSlots.signal() }
                completion(datagram, from: from, socket: socket, now: now)
            }
        case .signaling:
            signaling(Array(bytes), header: datagram.header, from: from, socket: socket, now: now)
        default:
            metrics.drop("unexpected_type")
        }
    }

    private func initiation(_ d: Datagram, size: Int, from: Endpoint, socket: UDPSocket, now: Int64) {
        guard case .handshakeInitiation(let senderIndex, let noise) = d.body else { return }
        switch handshakeGuard.check(
            source: from, requestSize: size,
            replySize: responseSize,
            cookie: HandshakeGuard.cookie(inNoiseMessage1: noise))
        {
        case .cookie(let c):
            // Never more bytes back than came in; no state, no crypto but one HMAC.
            metrics.drop("cookie_sent")
            if let reply = try? Datagram(.cookieReply(cookie: c), receiverIndex: senderIndex).encode() {
                try? socket.send(reply, to: from)
            }
            return
        case .drop(let reason):
            metrics.drop(reason == "source_limit" ? "handshake_source_limit" : "handshake_busy")
            return
        case .proceed:
            break
        }
        let full = tables.withLock { $0.pending.count >= limits.maxPendingHandshakes }
        guard !full else {
            metrics.drop("table_full")
            return
        }
        do {
            let hs = try ServiceServerHandshake(
                localStatic: authority.directory.serviceKey,
                certificate: authority.directory.serviceCertificate)
            let reply = try hs.respond(to: d)
            tables.withLock { $0.pending[hs.localIndex] = Pending(handshake: hs, created: now, from: from) }
            try socket.send(reply, to: from)
        } catch {
            metrics.drop("handshake_failed")
            logger.debug("as: handshake from \(from) failed: \(error)")
        }
    }

    private func completion(_ d: Datagram, from: Endpoint, socket: UDPSocket, now: Int64) {
        // Taking the entry out makes message 3 single-use: a replay finds nothing. Only
        // from the address message 1 came from (the answer goes there, nowhere else).
        guard
            let pending = tables.withLock({ t -> Pending? in
                guard let p = t.pending[d.header.receiverIndex], p.from == from else { return nil }
                return t.pending.removeValue(forKey: d.header.receiverIndex)
            })
        else {
            metrics.drop("unknown_session")
            return
        }
        let clientKey: X25519PublicKey
        let payload: [UInt8]
        let session: SignalingSession
        do {
            (clientKey, payload, session) = try pending.handshake.finish(d, now: now)
        } catch {
            // A message 3 that does not authenticate leaves the handshake as it was (the
            // Noise state rolls back): put it back, so a forged datagram with a seen index
            // cannot cancel a genuine login.
            if now - pending.created <= limits.handshakeTimeout {
                tables.withLock { t in if t.pending[d.header.receiverIndex] == nil { t.pending[d.header.receiverIndex] = pending } }
            }
            metrics.drop("handshake_failed")
            logger.debug("as: handshake completion from \(from) failed: \(error)")
            return
        }
        metrics.handshakes.increment()
        let reply: [UInt8]
        do {
            let message = try SignalingMessage.decode(payload)
            if case .revocationListRequest = message.body {
                // The CRL is public (CA-signed): anyone who completes a handshake may fetch it.
                let body = try revocationListReply(to: message.body)
                // Sealed before the session is shared: no other thread can seal with it meanwhile.
                let sealed = try session.seal(SignalingMessage(transactionID: message.transactionID, body: body))
                if case .revocationListPart = body, !keep(session, from: from, now: now) { metrics.drop("table_full") }
                try socket.send(sealed, to: from)
                return
            }
            guard case .login(let login) = message.body else {
                metrics.drop("bad_request")
                reply = try session.seal(
                    SignalingMessage(
                        transactionID: message.transactionID,
                        body: .error(code: .badRequest, message: "expected a login")),
                    status: .badRequest)
                try socket.send(reply, to: from)
                return
            }
            switch authority.login(login, clientKey: clientKey, source: from.address, now: now) {
            case .success(let provision):
                metrics.loginSucceeded()
                if provision.issued {
                    metrics.certificatesIssued.increment()
                    updatePoolGauges()
                }
                logger.info("as: login ok: \(provision.value.fqdn) (\(provision.value.virtualIPv4), \(provision.value.virtualIPv6)) from \(from)")
                reply = try session.seal(SignalingMessage(transactionID: message.transactionID, body: .provision(provision.value)))
            case .failure(let failure):
                metrics.loginFailed(failure)
                // The name is the client's: escaped and cut, and refusals are rate-limited in the log.
                let admitted = refusalLog.admit(now: now)
                if admitted.allowed {
                    if admitted.suppressed > 0 { logger.notice("as: \(admitted.suppressed) login refusals not logged (rate limit)") }
                    logger.notice("as: login refused: name=\"\(LogText.escaped(login.name))\" from \(from): \(failure.reason)")
                }
                let text = failure.clientMessage
                reply = try session.seal(
                    SignalingMessage(
                        transactionID: message.transactionID,
                        body: .error(code: failure.status, message: text)),
                    status: failure.status)
            }
        } catch {
            metrics.drop("bad_request")
            logger.debug("as: bad login payload from \(from): \(error)")
            return
        }
        if !keep(session, from: from, now: now) { metrics.drop("table_full") }
        do { try socket.send(reply, to: from) } catch { logger.warning("as: send to \(from) failed: \(error)") }
    }

    private func signaling(_ bytes: [UInt8], header: Header, from: Endpoint, socket: UDPSocket, now: Int64) {
        // Only from the address that completed the session, and a bounded number of times.
        let found = tables.withLock { t -> (SignalingSession?, Bool) in
            guard var kept = t.sessions[header.receiverIndex] else { return (nil, false) }
            guard kept.peer == from, kept.requests < Self.requestsPerSession else { return (nil, true) }
            kept.requests += 1
            t.sessions[header.receiverIndex] = kept
            return (kept.session, true)
        }
        guard let session = found.0 else {
            metrics.drop(found.1 ? "bad_request" : "unknown_session")
            return
        }
        // Sessions are used by one receive thread at a time in practice; the table lock
        // serialises access so two sockets cannot race on one session.
        let result: Result<SignalingMessage, SessionError> = tables.withLock { _ in
            Result { () throws(SessionError) in try session.open(bytes, now: now) }
        }
        let message: SignalingMessage
        switch result {
        case .success(let m): message = m
        case .failure(let e):
            metrics.drop(e.dropReason)
            return
        }
        do {
            let body: SignalingBody
            switch message.body {
            case .revocationListRequest, .revocationListPartRequest:
                body = try revocationListReply(to: message.body)
            case .finalization:
                _ = tables.withLock { $0.sessions.removeValue(forKey: header.receiverIndex) }
                return
            default:
                metrics.drop("bad_request")
                body = .error(code: .badRequest, message: "unsupported request")
            }
            let reply = try tables.withLock { _ in try session.seal(SignalingMessage(transactionID: message.transactionID, body: body)) }
            try socket.send(reply, to: from)
        } catch {
            logger.warning("as: reply to \(from) failed: \(error)")
        }
    }

    /// Revocation-list bytes per reply: a list larger than this travels in parts, so no
    /// answer relies on IP fragmentation (docs/protocol.md §4).
    public static let revocationListPartSize = 1024

    /// The answer to a revocation-list request: the whole list when it fits one part,
    /// else its first part; or the part asked for (of the newest list: a client that
    /// asked for an older number sees the new number and starts over).
    func revocationListReply(to body: SignalingBody) throws -> SignalingBody {
        guard let crl = try authority.store.latestCRL() else { return .error(code: .unavailable, message: "no revocation list") }
        var offset = 0
        if case .revocationListPartRequest(let number, let from) = body, number == crl.number { offset = Int(from) }
        if offset == 0, crl.der.count <= Self.revocationListPartSize { return .revocationList(der: crl.der) }
        guard offset < crl.der.count else { return .error(code: .badRequest, message: "offset past the end of the list") }
        let end = min(crl.der.count, offset + Self.revocationListPartSize)
        return .revocationListPart(
            number: crl.number, offset: UInt32(offset), total: UInt32(crl.der.count),
            bytes: Array(crl.der[offset..<end]))
    }

    /// Expires old handshakes and sessions; refreshes gauges. At most once a second.
    func housekeeping() {
        let now = unixNow()
        guard lastHousekeeping.exchange(now, ordering: .relaxed) != now else { return }
        let count = tables.withLock { t -> Int in
            t.pending = t.pending.filter { now - $0.value.created <= limits.handshakeTimeout }
            t.sessions = t.sessions.filter {
                now - $0.value.session.lastReceived <= limits.sessionTimeout && now - $0.value.created <= Self.sessionLifetime
            }
            return t.pending.count + t.sessions.count
        }
        metrics.sessions.set(Int64(count))
        if now % 10 == 0 { updatePoolGauges() }
        if let n = refusalLog.takeSuppressed(now: now) { logger.notice("as: \(n) login refusals not logged (rate limit)") }
        if now - lastCRLCheck.load(ordering: .relaxed) >= limits.crlCheckInterval {
            lastCRLCheck.store(now, ordering: .relaxed)
            refreshCRL(now: now)
        }
    }

    /// Re-publishes the CRL when less than half of its validity remains (see
    /// ``ASAuthority/refreshRevocationListIfDue(now:)``); logs the outcome.
    func refreshCRL(now: Int64) {
        do {
            if let number = try authority.refreshRevocationListIfDue(now: now) {
                logger.info("as: revocation list re-published as #\(number) (the previous one was past half its validity)")
            }
        } catch {
            logger.error("as: revocation list refresh failed: \(error)")
        }
    }

    func updatePoolGauges() {
        metrics.poolCapacity.set(authority.directory.settings.pool.capacity)
        if let n = try? authority.store.nodeCount() { metrics.poolUsed.set(Int64(n)) }
    }
}
