import CyphonicCore
import CyphonicPosix

/// Key for IPv6 lookups without allocation.
struct V6Key: Hashable {
    let hi: UInt64
    let lo: UInt64
}

/// Every peer, findable by virtual IP (outbound routing), by session index (inbound
/// capsules) and by static key (handshakes). All access is under one mutex; the hot
/// path takes it once per burst of packets, not per packet. `Sendable`.
public final class PeerTable: @unchecked Sendable {
    // `@unchecked Sendable`: the dictionaries and the peers' guarded fields are only
    // touched between `lock()` and `unlock()`.
    let sync = MutexCondition()
    private var byV4: [UInt32: Peer] = [:]
    private var byV6: [V6Key: Peer] = [:]
    private var byIndex: [UInt32: (Peer, DataSession)] = [:]
    private var byKey: [[UInt8]: Peer] = [:]

    public init() {}

    @inline(__always) public func lock() { sync.lock() }
    @inline(__always) public func unlock() { sync.unlock() }

    public func withLock<R>(_ body: () throws -> R) rethrows -> R { try sync.withLock(body) }

    /// Adds or replaces a peer (by static key). Call with the lock held.
    public func insertLocked(_ peer: Peer) {
        if let old = byKey[peer.staticKey.bytes] { removeLocked(old) }
        byKey[peer.staticKey.bytes] = peer
        if let v4 = peer.vip4 { byV4[v4] = peer }
        if let v6 = peer.vip6 { byV6[V6Key(hi: v6.0, lo: v6.1)] = peer }
    }

    public func removeLocked(_ peer: Peer) {
        byKey.removeValue(forKey: peer.staticKey.bytes)
        if let v4 = peer.vip4, byV4[v4] === peer { byV4.removeValue(forKey: v4) }
        if let v6 = peer.vip6, byV6[V6Key(hi: v6.0, lo: v6.1)] === peer { byV6.removeValue(forKey: V6Key(hi: v6.0, lo: v6.1)) }
        for s in [peer.current, peer.previous].compactMap({ $0 }) { byIndex.removeValue(forKey: s.localIndex) }
    }

    public func peerLocked(staticKey: [UInt8]) -> Peer? { byKey[staticKey] }

    public var peersLocked: [Peer] { Array(byKey.values) }

    /// Installs a new current session for `peer`; the old current becomes previous
    /// (still accepted for receiving until it expires).
    public func installLocked(_ session: DataSession, for peer: Peer, endpoint: SocketAddress?) {
        if let old = peer.previous { byIndex.removeValue(forKey: old.localIndex) }
        peer.previous = peer.current
        peer.current = session
        peer.lastHandshake = monotonicSeconds()
        if let endpoint { peer.endpoint = endpoint }
        byIndex[session.localIndex] = (peer, session)
    }

    /// Drops a session (expired or idle).
    public func dropLocked(_ session: DataSession, of peer: Peer) {
        byIndex.removeValue(forKey: session.localIndex)
        if peer.current === session { peer.current = nil }
        if peer.previous === session { peer.previous = nil }
    }

    public func setEndpointLocked(_ peer: Peer, _ endpoint: SocketAddress) { peer.endpoint = endpoint }

    public func isIndexInUseLocked(_ index: UInt32) -> Bool { byIndex[index] != nil }

    /// The peer owning the destination address of an inner IP packet.
    @inline(__always)
    func routeLocked(packet: UnsafeRawBufferPointer) -> Peer? {
        guard packet.count >= 20 else { return nil }
        switch packet[0] >> 4 {
        case 4:
            let dst = UInt32(packet[16]) << 24 | UInt32(packet[17]) << 16 | UInt32(packet[18]) << 8 | UInt32(packet[19])
            return byV4[dst]
        case 6:
            guard packet.count >= 40 else { return nil }
            return byV6[V6Key(hi: Self.load64(packet, 24), lo: Self.load64(packet, 32))]
        default:
            return nil
        }
    }

    @inline(__always)
    func sessionLocked(index: UInt32) -> (Peer, DataSession)? { byIndex[index] }

    @inline(__always)
    static func load64(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// Whether the inner packet's source address is one of `peer`'s virtual IPs.
    @inline(__always)
    static func sourceBelongs(_ packet: UnsafeRawBufferPointer, to peer: Peer) -> Bool {
        guard packet.count >= 20 else { return false }
        switch packet[0] >> 4 {
        case 4:
            let src = UInt32(packet[12]) << 24 | UInt32(packet[13]) << 16 | UInt32(packet[14]) << 8 | UInt32(packet[15])
            return src == peer.vip4
        case 6:
            guard packet.count >= 40, let v6 = peer.vip6 else { return false }
            return load64(packet, 8) == v6.0 && load64(packet, 16) == v6.1
        default:
            return false
        }
    }
}
