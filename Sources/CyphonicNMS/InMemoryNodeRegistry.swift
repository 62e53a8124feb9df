import Synchronization

/// The registry of one NMS process (DESIGN §1: in memory, rebuilt from re-registration
/// after a restart): three indexes (by FQDN, by session index, by probe token) behind
/// one mutex. Holds at most `capacity` nodes.
public final class InMemoryNodeRegistry: NodeRegistry {
    private struct State {
        var byName: [String: NodeRecord] = [:]
        var byIndex: [UInt32: String] = [:]
        var byToken: [[UInt8]: String] = [:]
    }
    private let state = Mutex(State())
    public let capacity: Int

    public init(capacity: Int = 1_000_000) { self.capacity = capacity }

    public func register(_ record: NodeRecord) -> (replaced: NodeRecord?, full: Bool) {
        state.withLock { s in
            let old = s.byName[record.fqdn]
            if old == nil, s.byName.count >= capacity { return (nil, true) }
            if let old {
                s.byIndex.removeValue(forKey: old.session.localIndex)
                s.byToken.removeValue(forKey: old.probeToken)
            }
            s.byName[record.fqdn] = record
            s.byIndex[record.session.localIndex] = record.fqdn
            s.byToken[record.probeToken] = record.fqdn
            return (old, false)
        }
    }

    public func node(named fqdn: String) -> NodeRecord? { state.withLock { $0.byName[fqdn] } }

    public func withNode<R>(sessionIndex index: UInt32, _ body: (inout NodeRecord) -> R) -> R? {
        state.withLock { s in
            guard let name = s.byIndex[index], s.byName[name] != nil else { return nil }
            return body(&s.byName[name]!)
        }
    }

    public func withNode<R>(named fqdn: String, _ body: (inout NodeRecord) -> R) -> R? {
        state.withLock { s in
            guard s.byName[fqdn] != nil else { return nil }
            return body(&s.byName[fqdn]!)
        }
    }

    public func node(probeToken: [UInt8]) -> String? { state.withLock { $0.byToken[probeToken] } }

    @discardableResult
    public func remove(named fqdn: String, sessionIndex: UInt32?) -> NodeRecord? {
        state.withLock { s in
            guard let r = s.byName[fqdn], sessionIndex == nil || r.session.localIndex == sessionIndex else { return nil }
            s.byName.removeValue(forKey: fqdn)
            s.byIndex.removeValue(forKey: r.session.localIndex)
            s.byToken.removeValue(forKey: r.probeToken)
            return r
        }
    }

    public func expire(lastSeenBefore cutoff: Int64, revoked: (NodeRecord) -> Bool) -> [NodeRecord] {
        state.withLock { s in
            let gone = s.byName.values.filter { $0.lastSeen < cutoff || revoked($0) }
            for r in gone {
                s.byName.removeValue(forKey: r.fqdn)
                s.byIndex.removeValue(forKey: r.session.localIndex)
                s.byToken.removeValue(forKey: r.probeToken)
            }
            return gone
        }
    }

    public var count: Int { state.withLock { $0.byName.count } }

    public func all() -> [NodeRecord] { state.withLock { Array($0.byName.values) } }
}
