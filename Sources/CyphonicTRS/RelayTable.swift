import CyphonicCore
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

/// The relay's sessions (DESIGN §4–§5): one per NMS path, with two ends — the path's
/// initiator and responder — each bound to the address its node proved in its handshake
/// with the relay. Capsules and tunnel handshake messages are forwarded between the two
/// ends unchanged (the relay holds no tunnel key). A datagram is matched by its source
/// and its header's receiver index — one map from (sender address, index) to the
/// session whose other end owns the index, first owner wins, so no node can claim
/// another session's index — or, for a TunnelRequest, by the path id it carries.
/// Indices a node states in its relay requests are confirmed; those seen in handshake
/// messages on the way are tentative (at most 8 per end, least recently used out), so
/// spoofed handshakes never push out the confirmed ones. Each end has a data budget
/// and a small handshake budget. Anything else is dropped with a reason. Pure: no I/O,
/// no clock, no lock; the server holds it under one lock and passes the time in.
///
/// `@unchecked Sendable`: its sessions are classes that only the table refers to, and
/// the table lives behind the server's lock.
public struct RelayTable: @unchecked Sendable {
    /// One end of a session: who (static key), where (bound address and the socket that
    /// reaches it), its own session indices, its budgets.
    public struct End {
        public let key: [UInt8]
        public var address: SocketAddress?
        public var socketIndex = 0
        /// Indices the node stated (its relay requests) and indices seen in handshakes.
        public var confirmed: [UInt32] = []
        public var tentative: [UInt32] = []
        var data: Bucket
        var handshakes: Bucket

        public var indices: [UInt32] { confirmed + tentative.filter { !confirmed.contains($0) } }
        static let maxTentative = 8
    }

    /// A token bucket (rate per second, burst).
    struct Bucket {
        var tokens: Double
        var refilled: Double
        let rate: Double
        let burst: Double

        init(rate: Double, burst: Double, now: Double) {
            self.rate = rate
            self.burst = burst
            tokens = burst
            refilled = now
        }

        mutating func take(now: Double) -> Bool {
            if now > refilled {
                tokens = min(burst, tokens + (now - refilled) * rate)
                refilled = now
            }
            guard tokens >= 1 else { return false }
            tokens -= 1
            return true
        }
    }

    /// A relayed path (a reference, so the per-packet path mutates it in place).
    public final class Session {
        public let pathID: UInt64
        /// [initiator, responder].
        public var ends: [End]
        public var lastActive: Double
        /// When the authorization ends (monotonic seconds): the session ends with it. A bind
        /// with a renewed authorization of the path (a later expiry) moves it on.
        public internal(set) var deadline: Double
        public var packets: UInt64 = 0
        public var bytes: UInt64 = 0
        var counted: [Bool] = [false, false]

        init(pathID: UInt64, ends: [End], lastActive: Double, deadline: Double) {
            self.pathID = pathID
            self.ends = ends
            self.lastActive = lastActive
            self.deadline = deadline
        }

        func side(of address: SocketAddress) -> Int? {
            if ends[0].address == address { return 0 }
            if ends[1].address == address { return 1 }
            return nil
        }
    }

    /// What a bind did.
    public enum BindResult: Equatable {
        /// Bound; whether the other end is bound too, and the other end's key when this
        /// bind completed the session (its node is told).
        case bound(peerBound: Bool, notify: [UInt8]?)
        case refused(String)
    }

    /// Where a datagram goes.
    public enum Verdict: Equatable {
        case forward(to: SocketAddress, socketIndex: Int)
        case drop(String)
    }

    struct IndexKey: Hashable {
        let sender: SocketAddress
        let index: UInt32
    }
    struct Owner {
        let pathID: UInt64
        /// The end whose index it is (the receiving end).
        let side: Int
    }

    public private(set) var sessions: [UInt64: Session] = [:]
    private var owners: [IndexKey: Owner] = [:]
    private var endsByKey: [[UInt8]: Int] = [:]
    public let maxSessions: Int
    public let maxEndsPerNode: Int
    public let packetsPerSecond: Double
    public let idleSeconds: Double
    /// Handshake datagrams one end may send per second (burst the same).
    public static let handshakesPerSecond = 20.0

    public init(maxSessions: Int, maxEndsPerNode: Int, packetsPerSecondPerEnd: Int, idleSeconds: Double) {
        self.maxSessions = maxSessions
        self.maxEndsPerNode = maxEndsPerNode
        packetsPerSecond = Double(packetsPerSecondPerEnd)
        self.idleSeconds = idleSeconds
    }

    public var count: Int { sessions.count }
    public var boundEnds: Int { sessions.values.reduce(0) { $0 + $1.ends.filter { $0.address != nil }.count } }

    /// Binds the end of path `authorization.pathID` whose key is `nodeKey` (the key the
    /// node proved in its handshake with the relay) to `address` (where it proved it).
    /// The authorization was checked by the caller (signature, expiry; `validFor` is the
    /// seconds it has left); here: it names `nodeKey`, and an existing session of the
    /// path has the same two keys.
    public mutating func bind(
        _ authorization: PathAuthorization, nodeKey: [UInt8], address: SocketAddress, socketIndex: Int, indices: [UInt32], now: Double,
        validFor: Double = 86_400
    ) -> BindResult {
        let pathID = authorization.pathID
        guard let side = authorization.initiatorKey == nodeKey ? 0 : (authorization.responderKey == nodeKey ? 1 : nil) else {
            return .refused("wrong_node")
        }
        if sessions[pathID] == nil {
            guard sessions.count < maxSessions else { return .refused("table_full") }
            func end(_ key: [UInt8]) -> End {
                End(
                    key: key, data: Bucket(rate: packetsPerSecond, burst: max(64, packetsPerSecond / 10), now: now),
                    handshakes: Bucket(rate: Self.handshakesPerSecond, burst: Self.handshakesPerSecond, now: now))
            }
            sessions[pathID] = Session(
                pathID: pathID, ends: [end(authorization.initiatorKey), end(authorization.responderKey)], lastActive: now,
                deadline: now + validFor)
        }
        let s = sessions[pathID]!
        guard s.ends[0].key == authorization.initiatorKey, s.ends[1].key == authorization.responderKey else {
            return .refused("conflict")
        }
        if !s.counted[side] {
            guard endsByKey[nodeKey, default: 0] < maxEndsPerNode else {
                if s.ends.allSatisfy({ $0.address == nil }) { sessions.removeValue(forKey: pathID) }
                return .refused("node_limit")
            }
            endsByKey[nodeKey, default: 0] += 1
            s.counted[side] = true
        }
        s.deadline = max(s.deadline, now + validFor)
        let wasComplete = s.ends.allSatisfy { $0.address != nil }
        if s.ends[side].address != address {
            // The other end's indices are addressed from here now.
            unlinkIndices(of: s, side: 1 - side)
            s.ends[side].address = address
            linkIndices(of: s, side: 1 - side)
        }
        s.ends[side].socketIndex = socketIndex
        let stated = Array(indices.prefix(RelayRequest.maxIndices)).filter { $0 != 0 }
        if !stated.isEmpty {
            unlinkIndices(of: s, side: side)
            s.ends[side].confirmed = stated
            linkIndices(of: s, side: side)
        }
        s.lastActive = now
        let peerBound = s.ends[1 - side].address != nil
        return .bound(peerBound: peerBound, notify: peerBound && !wasComplete ? s.ends[1 - side].key : nil)
    }

    /// Ends `nodeKey`'s part in path `pathID` (its refresh was refused); the session
    /// goes when neither end is bound.
    public mutating func unbind(_ pathID: UInt64, nodeKey: [UInt8]) {
        guard let s = sessions[pathID], let side = s.ends.firstIndex(where: { $0.key == nodeKey }) else { return }
        unlinkIndices(of: s, side: 1 - side)
        s.ends[side].address = nil
        if s.ends.allSatisfy({ $0.address == nil }) { remove(pathID) }
    }

    /// Adds the index keys of end `side`'s indices (addressed from the other end's address).
    private mutating func linkIndices(of s: Session, side: Int) {
        guard let sender = s.ends[1 - side].address else { return }
        for i in s.ends[side].indices {
            let key = IndexKey(sender: sender, index: i)
            if owners[key] == nil { owners[key] = Owner(pathID: s.pathID, side: side) }
        }
    }

    private mutating func unlinkIndices(of s: Session, side: Int) {
        guard let sender = s.ends[1 - side].address else { return }
        for i in s.ends[side].indices {
            let key = IndexKey(sender: sender, index: i)
            if owners[key]?.pathID == s.pathID { owners.removeValue(forKey: key) }
        }
    }

    /// An index end `side` showed in a handshake message: tentative, least recently used out.
    private mutating func learn(_ index: UInt32, of s: Session, side: Int) {
        guard index != 0, !s.ends[side].confirmed.contains(index) else { return }
        if let at = s.ends[side].tentative.firstIndex(of: index) {
            s.ends[side].tentative.remove(at: at)
            s.ends[side].tentative.append(index)
            return
        }
        if s.ends[side].tentative.count >= End.maxTentative {
            let old = s.ends[side].tentative.removeFirst()
            if let sender = s.ends[1 - side].address {
                let key = IndexKey(sender: sender, index: old)
                if owners[key]?.pathID == s.pathID { owners.removeValue(forKey: key) }
            }
        }
        s.ends[side].tentative.append(index)
        if let sender = s.ends[1 - side].address {
            let key = IndexKey(sender: sender, index: index)
            if owners[key] == nil { owners[key] = Owner(pathID: s.pathID, side: side) }
        }
    }

    /// Where a datagram of `type` from `source` goes: its session is found by path id
    /// (TunnelRequest) or by source and receiver index; a sender index it carries is
    /// learned (tentatively); the sending end's budget is charged. `body` is what follows
    /// the header.
    public mutating func route(
        source: SocketAddress, type: MessageType, receiverIndex: UInt32, body: UnsafeRawBufferPointer, length: Int, now: Double
    ) -> Verdict {
        let s: Session
        let side: Int
        switch type {
        case .tunnelRequest:
            guard body.count >= 12 else { return .drop("malformed") }
            let pathID = body.loadUnaligned(fromByteOffset: 4, as: UInt64.self).bigEndian
            guard let found = sessions[pathID] else { return .drop("unknown_path") }
            guard let x = found.side(of: source) else { return .drop("not_bound") }
            (s, side) = (found, x)
        case .tunnelResponse, .handshakeCompletion, .capsule, .cookieReply:
            guard let owner = owners[IndexKey(sender: source, index: receiverIndex)], let found = sessions[owner.pathID],
                found.ends[1 - owner.side].address == source
            else { return .drop("unknown_index") }
            (s, side) = (found, 1 - owner.side)
        default:
            return .drop("unexpected_type")
        }
        // The sending end's budgets: data, and a small one for handshake messages (so
        // spoofed handshakes neither drain the data budget nor churn the indices).
        if type == .capsule {
            guard s.ends[side].data.take(now: now) else { return .drop("rate_limited") }
        } else {
            guard s.ends[side].handshakes.take(now: now) else { return .drop("rate_limited") }
            if type == .tunnelRequest || type == .tunnelResponse, body.count >= 4 {
                learn(body.loadUnaligned(fromByteOffset: 0, as: UInt32.self).bigEndian, of: s, side: side)
            }
        }
        s.lastActive = now
        s.packets += 1
        s.bytes += UInt64(length)
        guard let to = s.ends[1 - side].address else { return .drop("peer_not_bound") }
        return .forward(to: to, socketIndex: s.ends[1 - side].socketIndex)
    }

    /// Ends sessions idle for ``idleSeconds`` or past their authorization; returns how many.
    @discardableResult
    public mutating func expire(now: Double) -> Int {
        let gone = sessions.values.filter { now - $0.lastActive > idleSeconds || now > $0.deadline }.map(\.pathID)
        for id in gone { remove(id) }
        return gone.count
    }

    /// Removes a session and its ends' bindings.
    public mutating func remove(_ pathID: UInt64) {
        guard let s = sessions[pathID] else { return }
        unlinkIndices(of: s, side: 0)
        unlinkIndices(of: s, side: 1)
        sessions.removeValue(forKey: pathID)
        for (side, end) in s.ends.enumerated() where s.counted[side] {
            let left = endsByKey[end.key, default: 1] - 1
            if left <= 0 { endsByKey.removeValue(forKey: end.key) } else { endsByKey[end.key] = left }
        }
    }
}
