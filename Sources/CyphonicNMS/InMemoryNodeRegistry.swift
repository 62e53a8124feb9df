import CyphonicCore
import Synchronization

/// The registry of one NMS process (DESIGN §1: in memory, rebuilt from re-registration
/// after a restart): records in one dense array, and three small indexes into it (by
/// FQDN, by session index, by probe token), all behind one mutex. Dense storage keeps a
/// registration under 1 KiB (a dictionary of whole records would hold up to 2.6 times
/// their size in empty buckets). Holds at most `capacity` nodes.
public final class InMemoryNodeRegistry: NodeRegistry {
    private struct State {
        var records: [NodeRecord] = []
        var byName: [String: Int32] = [:]
        var byIndex: [UInt32: Int32] = [:]
        var byToken: [SIMD16<UInt8>: Int32] = [:]
        /// Where the next partial sweep starts.
        var cursor = 0

        mutating func index(_ r: NodeRecord, at slot: Int32) {
            byName[r.fqdn] = slot
            byIndex[r.session.localIndex] = slot
            byToken[r.probeTokenStorage] = slot
        }

        /// Removes the keys of `r`, each only if it still points at `slot`.
        mutating func unindex(_ r: NodeRecord, at slot: Int32) {
            if byName[r.fqdn] == slot { byName.removeValue(forKey: r.fqdn) }
            if byIndex[r.session.localIndex] == slot { byIndex.removeValue(forKey: r.session.localIndex) }
            if byToken[r.probeTokenStorage] == slot { byToken.removeValue(forKey: r.probeTokenStorage) }
        }

        /// Removes the record in `slot` (the last one moves into its place).
        mutating func remove(at slot: Int32) -> NodeRecord {
            let r = records[Int(slot)]
            unindex(r, at: slot)
            let last = Int32(records.count - 1)
            if slot != last {
                records[Int(slot)] = records[Int(last)]
                index(records[Int(slot)], at: slot)
            }
            records.removeLast()
            return r
        }
    }
    private let state = Mutex(State())
    public let capacity: Int

    public init(capacity: Int = 1_000_000) { self.capacity = capacity }

    public func register(_ record: NodeRecord) -> (replaced: NodeRecord?, full: Bool) {
        state.withLock { s in
            if let slot = s.byName[record.fqdn] {
                let old = s.records[Int(slot)]
                s.unindex(old, at: slot)
                s.records[Int(slot)] = record
                s.index(record, at: slot)
                return (old, false)
            }
            guard s.records.count < capacity else { return (nil, true) }
            s.records.append(record)
            s.index(record, at: Int32(s.records.count - 1))
            return (nil, false)
        }
    }

    public func node(named fqdn: String) -> NodeRecord? { state.withLock { s in s.byName[fqdn].map { s.records[Int($0)] } } }

    public func withNode<R>(sessionIndex index: UInt32, _ body: (inout NodeRecord) -> R) -> R? {
        state.withLock { s in
            guard let slot = s.byIndex[index] else { return nil }
            return body(&s.records[Int(slot)])
        }
    }

    public func withNode<R>(named fqdn: String, _ body: (inout NodeRecord) -> R) -> R? {
        state.withLock { s in
            guard let slot = s.byName[fqdn] else { return nil }
            return body(&s.records[Int(slot)])
        }
    }

    public func node(probeToken: [UInt8]) -> String? {
        guard probeToken.count == 16 else { return nil }
        return state.withLock { s in s.byToken[FixedBytes.simd16(probeToken)].map { s.records[Int($0)].fqdn } }
    }

    @discardableResult
    public func remove(named fqdn: String, sessionIndex: UInt32?) -> NodeRecord? {
        state.withLock { s in
            guard let slot = s.byName[fqdn], sessionIndex == nil || s.records[Int(slot)].session.localIndex == sessionIndex else { return nil }
            return s.remove(at: slot)
        }
    }

    public func expire(lastSeenBefore cutoff: Int64, revoked: (NodeRecord) -> Bool) -> [NodeRecord] {
        state.withLock { s in
            var gone: [NodeRecord] = []
            var slot = Int32(s.records.count - 1)
            while slot >= 0 {
                let r = s.records[Int(slot)]
                if r.lastSeen < cutoff || revoked(r) { gone.append(s.remove(at: slot)) }
                slot -= 1
            }
            return gone
        }
    }

    public func expireSome(lastSeenBefore cutoff: Int64, limit: Int, revoked: (NodeRecord) -> Bool) -> [NodeRecord] {
        state.withLock { s in
            var gone: [NodeRecord] = []
            var examined = 0
            while examined < limit, !s.records.isEmpty {
                if s.cursor >= s.records.count { s.cursor = 0 }
                let r = s.records[s.cursor]
                examined += 1
                if r.lastSeen < cutoff || revoked(r) {
                    // The last record moves into this slot: look at the slot again.
                    gone.append(s.remove(at: Int32(s.cursor)))
                } else {
                    s.cursor += 1
                }
            }
            return gone
        }
    }

    public var count: Int { state.withLock { $0.records.count } }

    public func all() -> [NodeRecord] { state.withLock { $0.records } }
}
