import CyphonicCore

/// The virtual IPs of peers whose tunnel closed while the peer may still be wanted (it
/// fell silent, or said goodbye), under the peer's name: a packet from this host for
/// one of them is still dropped (`no_route`), but it also puts the name on the `wanted`
/// list the control thread turns into a new lookup, so a connection by address outlives
/// an outage of the path instead of staying cut until someone looks the name up again.
///
/// Guarantees: guarded by the ``PeerTable``'s lock; bounded (at most ``capacity`` names,
/// each with at most two addresses, and as many wanted names: the oldest half goes when
/// it is full); a peer that comes back (its name, or any of its addresses, proved again
/// in a handshake) takes its entries out, so a parked address never routes and never
/// names a peer that holds other addresses now; the data plane's path only looks up the
/// destination, and inserts a name the first time a packet wants it.
final class DormantRoutes {
    static let capacity = 4096

    private struct Parked {
        let v4: UInt32?
        let v6: V6Key?
        let since: Double
    }
    private var byName: [String: Parked] = [:]
    private var byV4: [UInt32: String] = [:]
    private var byV6: [V6Key: String] = [:]
    /// The earliest `since` parked (expiry has nothing to do before then).
    private var oldest = Double.infinity
    private var wanted: Set<String> = []

    /// Addresses parked.
    var count: Int { byV4.count + byV6.count }

    /// Remembers `peer`'s addresses under its name, from `now`.
    func parkLocked(_ peer: Peer, now: Double) {
        clearLocked(peer)
        if byName.count >= Self.capacity { evictOlderHalf() }
        let v6 = peer.vip6.map { V6Key(hi: $0.0, lo: $0.1) }
        byName[peer.fqdn] = Parked(v4: peer.vip4, v6: v6, since: now)
        if let v4 = peer.vip4 { byV4[v4] = peer.fqdn }
        if let v6 { byV6[v6] = peer.fqdn }
        oldest = min(oldest, now)
    }

    /// `peer` is live again (or another peer proved one of its addresses): whatever is
    /// parked under its name or its addresses goes.
    func clearLocked(_ peer: Peer) {
        unparkLocked(fqdn: peer.fqdn)
        if let v4 = peer.vip4, let name = byV4[v4] { unparkLocked(fqdn: name) }
        if let v6 = peer.vip6, let name = byV6[V6Key(hi: v6.0, lo: v6.1)] { unparkLocked(fqdn: name) }
    }

    /// Forgets what is parked under `fqdn` (also on request: `forget`).
    func unparkLocked(fqdn: String) {
        guard let p = byName.removeValue(forKey: fqdn) else { return }
        if let v4 = p.v4, byV4[v4] == fqdn { byV4.removeValue(forKey: v4) }
        if let v6 = p.v6, byV6[v6] == fqdn { byV6.removeValue(forKey: v6) }
        wanted.remove(fqdn)
    }

    /// A packet no peer routes: if its destination is parked, its name is wanted.
    @inline(__always)
    func missLocked(destination4: UInt32) {
        if let name = byV4[destination4] { want(name) }
    }

    @inline(__always)
    func missLocked(destination6: V6Key) {
        if let name = byV6[destination6] { want(name) }
    }

    private func want(_ fqdn: String) {
        guard !wanted.contains(fqdn), wanted.count < Self.capacity else { return }
        wanted.insert(fqdn)
    }

    /// The names wanted since the last call (cleared).
    func takeWantedLocked() -> [String] {
        guard !wanted.isEmpty else { return [] }
        defer { wanted.removeAll(keepingCapacity: true) }
        return Array(wanted)
    }

    /// Forgets the names parked before `before` (monotonic seconds); nothing to do, and
    /// nothing done, while none is that old.
    func expireLocked(before: Double) {
        guard oldest < before else { return }
        for (name, p) in byName where p.since < before { unparkLocked(fqdn: name) }
        oldest = byName.values.lazy.map(\.since).min() ?? .infinity
    }

    /// Forgets the older half of the names (ties broken arbitrarily).
    private func evictOlderHalf() {
        let byAge = byName.sorted { $0.value.since < $1.value.since }
        for (name, _) in byAge.prefix(byName.count - Self.capacity / 2) { unparkLocked(fqdn: name) }
        oldest = byName.values.lazy.map(\.since).min() ?? .infinity
    }
}
