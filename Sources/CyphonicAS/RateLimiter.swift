import Synchronization

/// Counts failures per key (source address, node name) in a sliding window and blocks
/// a key that reached `maxFailures` until its oldest failure leaves the window.
/// Bounded memory: at most `maxKeys` keys, the least recently failed evicted first.
/// `Sendable`: state is behind a mutex.
public final class RateLimiter: Sendable {
    public let maxFailures: Int
    public let window: Int64
    public let maxKeys: Int
    private let state = Mutex<[String: [Int64]]>([:])

    public init(maxFailures: Int = 5, windowSeconds: Int64 = 60, maxKeys: Int = 100_000) {
        self.maxFailures = maxFailures
        self.window = windowSeconds
        self.maxKeys = maxKeys
    }

    /// Whether `key` is blocked at `now`.
    public func isBlocked(_ key: String, now: Int64) -> Bool {
        state.withLock { table in
            guard let times = table[key] else { return false }
            return times.filter { now - $0 < window }.count >= maxFailures
        }
    }

    public func recordFailure(_ key: String, now: Int64) {
        state.withLock { table in
            var times = table[key, default: []].filter { now - $0 < window }
            times.append(now)
            if times.count > maxFailures { times.removeFirst(times.count - maxFailures) }
            table[key] = times
            if table.count > maxKeys {
                // Evict keys whose failures are all outside the window, then the stalest.
                table = table.filter { $0.value.contains { now - $0 < window } }
                while table.count > maxKeys, let stalest = table.min(by: { ($0.value.last ?? 0) < ($1.value.last ?? 0) }) {
                    table.removeValue(forKey: stalest.key)
                }
            }
        }
    }

    public var trackedKeys: Int { state.withLock { $0.count } }
}
