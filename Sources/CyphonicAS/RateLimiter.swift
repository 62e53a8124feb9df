import CyphonicCore
import Synchronization

/// Counts failures per key (source network, node name) in a sliding window and blocks
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

    /// The key a source address is limited under: an IPv4 address by itself, an IPv6
    /// address by its /64 (one host usually owns a whole /64 and can rotate inside it).
    /// An IPv4-mapped IPv6 address counts as its IPv4 address.
    public static func sourceKey(_ address: IPAddress) -> String {
        switch address {
        case .v4:
            return "ip:\(address)"
        case .v6(let b):
            if b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xff, b[11] == 0xff {
                return "ip:\(IPAddress.v4(b[12], b[13], b[14], b[15]))"
            }
            let prefix = IPAddress(bytes: Array(b[0..<8]) + [UInt8](repeating: 0, count: 8)) ?? address
            return "ip:\(prefix)/64"
        }
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

/// A global token bucket bounding how many operations (PBKDF2 token checks) run per
/// second, whatever their source: it holds at most `perSecond` tokens and gains
/// `perSecond` tokens a second. ``take(now:)`` never blocks. `Sendable`.
public final class TokenBucket: Sendable {
    public let perSecond: Int
    private let state: Mutex<(tokens: Int, last: Int64)>

    /// - Parameter perSecond: operations allowed per second (and the burst); at least 1.
    public init(perSecond: Int) {
        self.perSecond = max(1, perSecond)
        state = Mutex((self.perSecond, Int64.min))
    }

    /// Takes one token if one is left at `now` (unix seconds); false when exhausted.
    public func take(now: Int64) -> Bool {
        state.withLock { s in
            if s.last == Int64.min {
                s.last = now
            } else if now > s.last {
                let gained = (now - s.last).multipliedReportingOverflow(by: Int64(perSecond))
                s.tokens = gained.overflow ? perSecond : Int(min(Int64(perSecond), Int64(s.tokens) + gained.partialValue))
                s.last = now
            }
            guard s.tokens > 0 else { return false }
            s.tokens -= 1
            return true
        }
    }
}
