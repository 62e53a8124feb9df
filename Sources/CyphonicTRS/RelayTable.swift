import CyphonicCore
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

/// The relay's sessions (DESIGN §4–§5): one per NMS path, with two ends — the path's
/// initiator and responder — each bound to the address its node's authenticated relay
/// request came from. Capsules and tunnel handshake messages are forwarded between the
/// two ends unchanged (the relay holds no tunnel key); a datagram is matched by its
/// source (an end's bound address) and its header's receiver index (one of the other
/// end's session indices, learned from the tunnel handshake's sender indices as they
/// pass and from the nodes' relay requests), or, for a TunnelRequest, by the path id it
/// carries. Anything else is dropped with a reason. Pure: no I/O, no clock, no lock; the
/// server holds it under one lock and passes the time in.
///
/// `@unchecked Sendable`: its sessions are classes that only the table refers to, and
/// the table lives behind the server's lock.
public struct RelayTable: @unchecked Sendable {
    /// One end of a session: who (static key), where (bound address and the socket that
    /// reaches it), its own session indices, its send budget.
    public struct End {
        public let key: [UInt8]
        public var address: SocketAddress?
        public var socketIndex = 0
        public var indices: [UInt32] = []
        var tokens: Double
        var refilled: Double

        static let maxIndices = 8

        mutating func learn(_ index: UInt32) {
            guard index != 0, !indices.contains(index) else { return }
            if indices.count >= Self.maxIndices { indices.removeFirst() }
            indices.append(index)
        }
    }

    /// A relayed path (a reference, so the per-packet path mutates it in place).
    public final class Session {
        public let pathID: UInt64
        /// [initiator, responder].
        public var ends: [End]
        public var lastActive: Double
        public var packets: UInt64 = 0
        public var bytes: UInt64 = 0
        var counted: [Bool] = [false, false]

        init(pathID: UInt64, ends: [End], lastActive: Double) {
            self.pathID = pathID
            self.ends = ends
            self.lastActive = lastActive
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

    public private(set) var sessions: [UInt64: Session] = [:]
    private var byAddress: [SocketAddress: [UInt64]] = [:]
    private var endsByKey: [[UInt8]: Int] = [:]
    public let maxSessions: Int
    public let maxEndsPerNode: Int
    public let packetsPerSecond: Double
    public let idleSeconds: Double

    public init(maxSessions: Int, maxEndsPerNode: Int, packetsPerSecondPerEnd: Int, idleSeconds: Double) {
        self.maxSessions = maxSessions
        self.maxEndsPerNode = maxEndsPerNode
        packetsPerSecond = Double(packetsPerSecondPerEnd)
        self.idleSeconds = idleSeconds
    }

    public var count: Int { sessions.count }
    public var boundEnds: Int { sessions.values.reduce(0) { $0 + $1.ends.filter { $0.address != nil }.count } }

    /// Binds the end of path `authorization.pathID` whose key is `nodeKey` (the key the
    /// node proved in its handshake with the relay) to `address`. The authorization was
    /// checked by the caller (signature, expiry); here: it names `nodeKey`, and an
    /// existing session of the path has the same two keys.
    public mutating func bind(
        _ authorization: PathAuthorization, nodeKey: [UInt8], address: SocketAddress, socketIndex: Int, indices: [UInt32], now: Double
    ) -> BindResult {
        let pathID = authorization.pathID
        guard let side = authorization.initiatorKey == nodeKey ? 0 : (authorization.responderKey == nodeKey ? 1 : nil) else {
            return .refused("wrong_node")
        }
        if sessions[pathID] == nil {
            guard sessions.count < maxSessions else { return .refused("table_full") }
            let burst = max(64, packetsPerSecond / 10)
            sessions[pathID] = Session(
                pathID: pathID,
                ends: [
                    End(key: authorization.initiatorKey, tokens: burst, refilled: now),
                    End(key: authorization.responderKey, tokens: burst, refilled: now),
                ], lastActive: now)
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
        let wasComplete = s.ends.allSatisfy { $0.address != nil }
        if let old = s.ends[side].address, old != address { unlink(pathID, from: old) }
        if s.ends[side].address != address { byAddress[address, default: []].append(pathID) }
        s.ends[side].address = address
        s.ends[side].socketIndex = socketIndex
        for i in indices.prefix(RelayRequest.maxIndices) { s.ends[side].learn(i) }
        s.lastActive = now
        let peerBound = s.ends[1 - side].address != nil
        return .bound(peerBound: peerBound, notify: peerBound && !wasComplete ? s.ends[1 - side].key : nil)
    }

    private mutating func unlink(_ pathID: UInt64, from address: SocketAddress) {
        guard var list = byAddress[address] else { return }
        list.removeAll { $0 == pathID }
        if list.isEmpty { byAddress.removeValue(forKey: address) } else { byAddress[address] = list }
    }

    /// Where a datagram of `type` from `source` goes: its session is found by path id
    /// (TunnelRequest) or by source and receiver index; the sender index it carries is
    /// learned; the sending end's budget is charged. `body` is what follows the header.
    public mutating func route(
        source: SocketAddress, type: MessageType, receiverIndex: UInt32, body: UnsafeRawBufferPointer, length: Int, now: Double
    ) -> Verdict {
        var found: (UInt64, Int)?
        switch type {
        case .tunnelRequest:
            guard body.count >= 12 else { return .drop("malformed") }
            let pathID = body.loadUnaligned(fromByteOffset: 4, as: UInt64.self).bigEndian
            guard let s = sessions[pathID] else { return .drop("unknown_path") }
            guard let side = s.side(of: source) else { return .drop("not_bound") }
            found = (pathID, side)
        case .tunnelResponse, .handshakeCompletion, .capsule, .cookieReply:
            guard let candidates = byAddress[source] else { return .drop("unknown_source") }
            for pathID in candidates {
                guard let s = sessions[pathID], let side = s.side(of: source) else { continue }
                if s.ends[1 - side].indices.contains(receiverIndex) {
                    found = (pathID, side)
                    break
                }
            }
            guard found != nil else { return .drop("unknown_index") }
        default:
            return .drop("unexpected_type")
        }
        let (pathID, side) = found!
        let s = sessions[pathID]!
        // The sending end's budget (a token bucket): a flood is cut to its rate.
        let elapsed = now - s.ends[side].refilled
        if elapsed > 0 {
            s.ends[side].tokens = min(max(64, packetsPerSecond / 10), s.ends[side].tokens + elapsed * packetsPerSecond)
            s.ends[side].refilled = now
        }
        guard s.ends[side].tokens >= 1 else { return .drop("rate_limited") }
        s.ends[side].tokens -= 1
        if type == .tunnelRequest || type == .tunnelResponse, body.count >= 4 {
            s.ends[side].learn(body.loadUnaligned(fromByteOffset: 0, as: UInt32.self).bigEndian)
        }
        s.lastActive = now
        s.packets += 1
        s.bytes += UInt64(length)
        guard let to = s.ends[1 - side].address else { return .drop("peer_not_bound") }
        return .forward(to: to, socketIndex: s.ends[1 - side].socketIndex)
    }

    /// Ends sessions idle for ``idleSeconds``; returns how many.
    @discardableResult
    public mutating func expire(now: Double) -> Int {
        let idle = sessions.values.filter { now - $0.lastActive > idleSeconds }.map(\.pathID)
        for id in idle { remove(id) }
        return idle.count
    }

    /// Removes a session and its ends' bindings.
    public mutating func remove(_ pathID: UInt64) {
        guard let s = sessions.removeValue(forKey: pathID) else { return }
        for (side, end) in s.ends.enumerated() {
            if let a = end.address { unlink(pathID, from: a) }
            if s.counted[side] {
                let left = endsByKey[end.key, default: 1] - 1
                if left <= 0 { endsByKey.removeValue(forKey: end.key) } else { endsByKey[end.key] = left }
            }
        }
    }
}
