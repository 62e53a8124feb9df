import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire
import Synchronization

/// The service side of node ↔ service handshakes (Noise XX), as the NMS and the relay run
/// it: every initiation passes the ``HandshakeGuard`` first (a cookie reply to an unverified
/// source under load, per-source and total limits); an admitted one gets a fresh session
/// index that nothing else uses and message 2 (the service certificate), and waits — at
/// most `maxPending` of them, `timeout` seconds each — for message 3, which is taken out
/// exactly once; a forged message 3 leaves the handshake in place for the genuine one.
/// Drops are reported by metrics label (`cookie_sent`, `handshake_source_limit`,
/// `handshake_busy`, `table_full`, `handshake_failed`, `malformed`, `unknown_session`).
/// `Sendable`: the pending table is behind a lock; a handshake is used by one thread at a time.
public final class ServiceResponder: Sendable {
    /// A handshake waiting for message 3: since when, from where, on which socket.
    public struct Pending: Sendable {
        let handshake: Handshake
        public let created: Int64
        public let from: Endpoint
        public let socketIndex: Int
    }

    /// A handshake state machine handed between threads under the table's lock.
    struct Handshake: @unchecked Sendable {
        let value: ServiceServerHandshake
    }

    /// What to do with an initiation.
    public enum Answer: Equatable, Sendable {
        /// Send this datagram back (message 2, or a cookie reply when `cookie`).
        case reply([UInt8], cookie: Bool)
        /// Dropped; the metrics label.
        case drop(String)
    }

    /// A completed handshake: the node's proven key, its message-3 payload, the session.
    public struct Completed {
        public let pending: Pending
        public let clientKey: X25519PublicKey
        public let payload: [UInt8]
        public let session: SignalingSession
    }

    let key: X25519PrivateKey
    let certificate: Certificate
    public let handshakeGuard: HandshakeGuard
    let maxPending: Int
    let timeout: Int64
    /// The size of message 2 (what an unverified source would get back).
    public let responseSize: Int
    private let pending = Mutex<[UInt32: Pending]>([:])

    public init(key: X25519PrivateKey, certificate: Certificate, handshakeGuard: HandshakeGuard, maxPending: Int, timeout: Int64) {
        self.key = key
        self.certificate = certificate
        self.handshakeGuard = handshakeGuard
        self.maxPending = maxPending
        self.timeout = timeout
        responseSize = HandshakeGuard.responseSize(certificateBytes: certificate.derBytes.count)
    }

    /// Answers a HandshakeInitiation datagram; `inUse` says which session indices the
    /// service already gives to sessions (pending ones are checked here).
    public func answer(
        _ bytes: UnsafeRawBufferPointer, from: Endpoint, socketIndex: Int, now: Int64, inUse: (UInt32) -> Bool
    ) -> Answer {
        guard let d = try? Datagram.decode(bytes), case .handshakeInitiation(let senderIndex, let noise) = d.body else {
            return .drop("malformed")
        }
        switch handshakeGuard.check(
            source: from, requestSize: bytes.count, replySize: responseSize, cookie: HandshakeGuard.cookie(inNoiseMessage1: noise))
        {
        case .cookie(let c):
            guard let reply = try? Datagram(.cookieReply(cookie: c), receiverIndex: senderIndex).encode() else { return .drop("malformed") }
            return .reply(reply, cookie: true)
        case .drop(let reason):
            return .drop(reason == "source_limit" ? "handshake_source_limit" : "handshake_busy")
        case .proceed:
            break
        }
        guard pending.withLock({ $0.count < maxPending }) else { return .drop("table_full") }
        do {
            // A fresh session index: not one a session or a pending handshake has (random
            // 31 bits: a few collisions expected among 100 000 nodes).
            var hs = try ServiceServerHandshake(localStatic: key, certificate: certificate)
            var attempts = 1
            while attempts < 8, isPending(hs.localIndex) || inUse(hs.localIndex) {
                hs = try ServiceServerHandshake(localStatic: key, certificate: certificate)
                attempts += 1
            }
            let reply = try hs.respond(to: d)
            pending.withLock {
                $0[hs.localIndex] = Pending(handshake: Handshake(value: hs), created: now, from: from, socketIndex: socketIndex)
            }
            return .reply(reply, cookie: false)
        } catch {
            return .drop("handshake_failed")
        }
    }

    /// Whether a handshake with our index `index` waits (from `from`, when given).
    public func isPending(_ index: UInt32, from: Endpoint? = nil) -> Bool {
        pending.withLock { t in t[index].map { from == nil || $0.from == from } ?? false }
    }

    /// Message 3: takes the pending handshake out (so a replay finds nothing) and finishes
    /// it; a message that does not authenticate puts the handshake back. The error is the
    /// metrics label.
    public func finish(_ bytes: [UInt8], header: Header, from: Endpoint, now: Int64) -> Result<Completed, ResponderDrop> {
        guard
            let p = pending.withLock({ t -> Pending? in
                guard t[header.receiverIndex]?.from == from else { return nil }
                return t.removeValue(forKey: header.receiverIndex)
            })
        else { return .failure(ResponderDrop("unknown_session")) }
        guard let datagram = try? Datagram.decode(bytes) else { return .failure(ResponderDrop("malformed")) }
        do {
            let (clientKey, payload, session) = try p.handshake.value.finish(datagram, now: now)
            return .success(Completed(pending: p, clientKey: clientKey, payload: payload, session: session))
        } catch {
            if now - p.created <= timeout {
                pending.withLock { t in if t[header.receiverIndex] == nil { t[header.receiverIndex] = p } }
            }
            return .failure(ResponderDrop("handshake_failed"))
        }
    }

    /// Forgets handshakes older than the timeout.
    public func expire(now: Int64) { pending.withLock { p in p = p.filter { now - $0.value.created <= timeout } } }
}

/// Why a message 3 was dropped: the metrics label.
public struct ResponderDrop: Error, Equatable, Sendable {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
}
