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
    /// Peers by their current endpoint (for telling peers' packets from others').
    private var byEndpoint: [SocketAddress: Peer] = [:]
    /// Addresses of closed tunnels a packet may ask for again.
    private let dormant = DormantRoutes()

    public init() {}

    @inline(__always) public func lock() { sync.lock() }
    @inline(__always) public func unlock() { sync.unlock() }

    public func withLock<R>(_ body: () throws -> R) rethrows -> R { try sync.withLock(body) }

    /// Adds a peer (replacing the one with its static key). Two peers never silently
    /// share a virtual IP: if another peer (another key) owns one of its addresses and
    /// still has a session, nothing changes and that owner is returned (the caller
    /// refuses the handshake and counts it); an owner without a session is removed.
    /// Call with the lock held.
    @discardableResult
    public func insertLocked(_ peer: Peer) -> Peer? {
        var owners: [Peer] = []
        if let v4 = peer.vip4, let o = byV4[v4], o.staticKey != peer.staticKey { owners.append(o) }
        if let v6 = peer.vip6, let o = byV6[V6Key(hi: v6.0, lo: v6.1)], o.staticKey != peer.staticKey { owners.append(o) }
        if let live = owners.first(where: { $0.current != nil || $0.next != nil }) { return live }
        for o in owners { removeLocked(o) }
        if let old = byKey[peer.staticKey.bytes] { removeLocked(old) }
        byKey[peer.staticKey.bytes] = peer
        dormant.clearLocked(peer)
        if let v4 = peer.vip4 { byV4[v4] = peer }
        if let v6 = peer.vip6 { byV6[V6Key(hi: v6.0, lo: v6.1)] = peer }
        return nil
    }

    public func removeLocked(_ peer: Peer) {
        guard byKey[peer.staticKey.bytes] === peer else { return }
        byKey.removeValue(forKey: peer.staticKey.bytes)
        if let e = peer.endpoint, byEndpoint[e] === peer { byEndpoint.removeValue(forKey: e) }
        if let v4 = peer.vip4, byV4[v4] === peer { byV4.removeValue(forKey: v4) }
        if let v6 = peer.vip6, byV6[V6Key(hi: v6.0, lo: v6.1)] === peer { byV6.removeValue(forKey: V6Key(hi: v6.0, lo: v6.1)) }
        for s in [peer.current, peer.previous, peer.next].compactMap({ $0 }) { byIndex.removeValue(forKey: s.localIndex) }
        peer.current = nil
        peer.previous = nil
        peer.next = nil
    }

    /// Removes `peer` and remembers its virtual IPs under its name from `now`, so a packet
    /// from this host for one of them asks for the tunnel again (``takeWanted()``).
    public func parkLocked(_ peer: Peer, now: Double) {
        removeLocked(peer)
        dormant.parkLocked(peer, now: now)
    }

    /// The names of parked peers a packet was sent to since the last call.
    public func takeWanted() -> [String] { withLock { dormant.takeWantedLocked() } }

    /// Forgets the addresses parked under `fqdn` (the tunnel was ended on request).
    public func unparkLocked(fqdn: String) { dormant.unparkLocked(fqdn: fqdn) }

    /// Forgets parked addresses older than `before` (monotonic seconds).
    public func expireParkedLocked(before: Double) { dormant.expireLocked(before: before) }

    /// Virtual IPs parked (of closed tunnels a packet may reopen).
    public var parkedCountLocked: Int { dormant.count }

    /// A packet from this host no session carries: if it is for a parked address, the
    /// peer's name is wanted. The data plane's drop path only.
    func missLocked(packet: UnsafeRawBufferPointer) {
        switch Self.destination(of: packet) {
        case .v4(let address): dormant.missLocked(destination4: address)
        case .v6(let key): dormant.missLocked(destination6: key)
        case nil: return
        }
    }

    /// Records the certificate a peer proved (serial, expiry).
    public func setCertificateLocked(_ peer: Peer, serial: UInt64?, notAfter: Int64?) {
        peer.serial = serial
        peer.notAfter = notAfter
    }

    /// Whether `address` is the endpoint of a peer with a session (its packets there
    /// were authenticated, so the address is verified for the handshake guard).
    public func isPeerEndpointLocked(_ address: SocketAddress) -> Bool {
        guard let peer = byEndpoint[address] else { return false }
        return peer.current != nil && peer.endpoint == address
    }

    /// Moves `peer` to `endpoint`, keeping the endpoint index in step.
    private func moveLocked(_ peer: Peer, to endpoint: SocketAddress) {
        if let old = peer.endpoint, byEndpoint[old] === peer { byEndpoint.removeValue(forKey: old) }
        peer.endpoint = endpoint
        byEndpoint[endpoint] = peer
    }

    public func peerLocked(staticKey: [UInt8]) -> Peer? { byKey[staticKey] }

    public var peersLocked: [Peer] { Array(byKey.values) }

    /// Installs a new current session for `peer`; the old current becomes previous
    /// (still accepted for receiving until it expires). An unconfirmed session (an
    /// initiator's rekey, see ``DataSession/confirm()``) is installed as `next` instead
    /// while a current one exists: received on at once, sent on once confirmed.
    public func installLocked(_ session: DataSession, for peer: Peer, endpoint: SocketAddress?) {
        if let endpoint { moveLocked(peer, to: endpoint) }
        byIndex[session.localIndex] = (peer, session)
        if !session.isConfirmed, peer.current != nil {
            if let old = peer.next { byIndex.removeValue(forKey: old.localIndex) }
            peer.next = session
            return
        }
        if let old = peer.previous { byIndex.removeValue(forKey: old.localIndex) }
        peer.previous = peer.current
        peer.current = session
        peer.lastHandshake = monotonicSeconds()
    }

    /// Makes a confirmed `next` session current (its first authenticated packet arrived).
    public func promoteLocked(_ session: DataSession, of peer: Peer) {
        guard peer.next === session else { return }
        peer.next = nil
        if let old = peer.previous { byIndex.removeValue(forKey: old.localIndex) }
        peer.previous = peer.current
        peer.current = session
        peer.lastHandshake = monotonicSeconds()
    }

    /// Drops a session (expired, idle, unconfirmed too long).
    public func dropLocked(_ session: DataSession, of peer: Peer) {
        byIndex.removeValue(forKey: session.localIndex)
        if peer.current === session { peer.current = nil }
        if peer.previous === session { peer.previous = nil }
        if peer.next === session { peer.next = nil }
    }

    public func setEndpointLocked(_ peer: Peer, _ endpoint: SocketAddress) {
        guard byKey[peer.staticKey.bytes] === peer else {
            peer.endpoint = endpoint
            return
        }
        moveLocked(peer, to: endpoint)
    }

    /// Sends to `peer` at `endpoint` from now on (roaming, or the node moving a tunnel
    /// between the relay and a direct path); the data threads notice the move.
    public func relocateLocked(_ peer: Peer, to endpoint: SocketAddress) {
        guard peer.endpoint != endpoint else { return }
        setEndpointLocked(peer, endpoint)
        peer.roamGeneration.wrappingAdd(1, ordering: .releasing)
    }

    /// Names the relay `peer`'s tunnel may go through (nil: none).
    public func setRelayLocked(_ peer: Peer, _ relay: Endpoint?) { peer.relayEndpoint = relay }

    /// Roaming: moves `peer` to `source`, where its newest authenticated packet came from,
    /// unless that is the relay within a second of a move off it (the peer's relayed
    /// packets sent before it moved too must not undo the switch). False when held.
    public func roamLocked(_ peer: Peer, to source: SocketAddress, now: Double) -> Bool {
        guard peer.endpoint != source else { return true }
        if let relay = peer.relayEndpoint {
            let toRelay = source.endpoint == relay
            let onRelay = peer.endpoint?.endpoint == relay
            if toRelay, !onRelay, now - peer.directSince < 1 { return false }
            if !toRelay, onRelay { peer.directSince = now }
        }
        relocateLocked(peer, to: source)
        return true
    }

    public func isIndexInUseLocked(_ index: UInt32) -> Bool { byIndex[index] != nil }

    /// The peer owning the destination address of an inner IP packet.
    @inline(__always)
    func routeLocked(packet: UnsafeRawBufferPointer) -> Peer? {
        switch Self.destination(of: packet) {
        case .v4(let address): return byV4[address]
        case .v6(let key): return byV6[key]
        case nil: return nil
        }
    }

    /// An inner IP packet's destination address as the tables key it.
    enum Destination {
        case v4(UInt32)
        case v6(V6Key)
    }

    /// The destination of an IPv4 or IPv6 packet; `nil` for anything else or too short.
    @inline(__always)
    static func destination(of packet: UnsafeRawBufferPointer) -> Destination? {
        guard packet.count >= 20 else { return nil }
        switch packet[0] >> 4 {
        case 4:
            return .v4(UInt32(bigEndian: packet.loadUnaligned(fromByteOffset: 16, as: UInt32.self)))
        case 6:
            guard packet.count >= 40 else { return nil }
            return .v6(V6Key(hi: load64(packet, 24), lo: load64(packet, 32)))
        default:
            return nil
        }
    }

    @inline(__always)
    func sessionLocked(index: UInt32) -> (Peer, DataSession)? { byIndex[index] }

    /// The peer owning the session with our index `index`.
    public func sessionOwnerLocked(index: UInt32) -> Peer? { byIndex[index]?.0 }

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
