import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import Synchronization

/// The gate every handshake initiation passes before a responder (node, AS, NMS, TRS)
/// spends asymmetric crypto or keeps state for it (DESIGN §3; issue 8, "handshake floods").
///
/// Guarantees:
/// - An initiation from a source whose address is not verified is never answered with
///   more bytes than it carried: it gets a 32-byte ``Decision/cookie(_:)`` reply
///   instead, unless the responder is not under load *and* the request is at least as
///   large as the answer (initiators pad message 1 for that: one round trip when idle).
/// - A source is verified by repeating the cookie, which only a party that receives
///   packets at that address can know (HMAC of the address under a secret rotated every
///   ``Limits/cookieSecondsValid`` seconds), or by being a peer's authenticated endpoint.
///   Checking a cookie costs one HMAC and no state.
/// - Verified sources are limited per source (IPv4 address, IPv6 /64) and in total, so
///   no single address and no flood of addresses can take all the handshake work; an
///   unverified request is never charged to its (unproven) address's limit, so a
///   spoofer cannot use up a victim's.
/// - Cookie replies are limited in total too (beyond that initiations are dropped).
///
/// Message 1's payload layout (docs/protocol.md §4): `cookie (16 bytes, zero if none) ||
/// padding`. `Sendable`: the state sits behind a mutex.
public final class HandshakeGuard: Sendable {
    /// The guard's limits; every figure is configurable by the daemon that owns it.
    public struct Limits: Sendable {
        /// Initiations per second (of any kind) above which every source must show a cookie.
        public var loadThresholdPerSecond = 40
        /// Handshakes one source (IPv4 address / IPv6 /64) may start per second, sustained...
        public var perSourcePerSecond = 4.0
        /// ...and in a burst.
        public var perSourceBurst = 16.0
        /// Handshakes per second in total.
        public var totalPerSecond = 500.0
        /// Cookie replies per second in total.
        public var cookieRepliesPerSecond = 20_000.0
        /// Lifetime of one cookie secret (the previous one is accepted too).
        public var cookieSecondsValid = 120.0
        /// Sources tracked at once by the per-source limit.
        public var maxTrackedSources = 65_536

        public init() {}
    }

    /// What to do with an initiation.
    public enum Decision: Equatable, Sendable {
        /// Run the handshake.
        case proceed
        /// Answer with this cookie (a ``CyphonicWire`` cookie reply) and keep nothing.
        case cookie([UInt8])
        /// Drop it silently; the reason is a metrics label.
        case drop(String)
    }

    /// Counters for status and metrics.
    public struct Counters: Sendable, Equatable {
        public var proceeded: UInt64 = 0
        public var cookiesSent: UInt64 = 0
        public var cookiesAccepted: UInt64 = 0
        public var droppedSourceLimit: UInt64 = 0
        public var droppedBusy: UInt64 = 0
        public var droppedCookieLimit: UInt64 = 0
    }

    public static let cookieSize = 16
    /// The size a padded message 1 datagram has, so an idle responder may answer it at once.
    public static let paddedInitiationSize = 1200

    public let limits: Limits

    private struct Bucket {
        var tokens: Double
        var last: Double
    }

    private struct State {
        var secret: [UInt8]
        var previousSecret: [UInt8]
        var secretSince: Double
        var sources: [[UInt8]: Bucket] = [:]
        var total: Bucket
        var cookieBudget: Bucket
        var windowStart: Double
        var windowCount = 0
        var lastWindowCount = 0
        var lastSweep = 0.0
        var counters = Counters()
    }

    private let state: Mutex<State>

    public init(limits: Limits = Limits(), now: Double = monotonicSeconds()) throws {
        self.limits = limits
        state = Mutex(
            State(
                secret: try SecureRandom.bytes(32), previousSecret: try SecureRandom.bytes(32), secretSince: now,
                total: Bucket(tokens: limits.totalPerSecond, last: now),
                cookieBudget: Bucket(tokens: limits.cookieRepliesPerSecond, last: now), windowStart: now))
    }

    /// The cookie message 1 carries, if any (bytes 32..<48 of the Noise message: its
    /// payload follows the 32-byte ephemeral key in clear).
    public static func cookie(inNoiseMessage1 noise: [UInt8]) -> [UInt8]? {
        noise.withUnsafeBytes { cookie(inNoiseMessage1: $0) }
    }

    /// The same, read in place (the node checks raw datagrams before decoding them).
    public static func cookie(inNoiseMessage1 noise: UnsafeRawBufferPointer) -> [UInt8]? {
        guard noise.count >= 32 + cookieSize else { return nil }
        let c = Array(noise[32..<(32 + cookieSize)])
        return c.allSatisfy { $0 == 0 } ? nil : c
    }

    /// Size of an XX message 2 datagram carrying a certificate of `certificateBytes`:
    /// header, sender index, e, encrypted s (32 + tag), the certificate and its tag.
    public static func responseSize(certificateBytes: Int) -> Int { 16 + 4 + 32 + 48 + certificateBytes + 16 }

    /// Message 1's payload: the cookie (or zeros) and padding up to `paddedInitiationSize`
    /// bytes of datagram, where `overhead` is what the datagram adds around the payload.
    public static func initiationPayload(cookie: [UInt8]?, overhead: Int) -> [UInt8] {
        var p = cookie ?? [UInt8](repeating: 0, count: cookieSize)
        let target = paddedInitiationSize - overhead - cookieSize
        if target > 0 { p += [UInt8](repeating: 0, count: target) }
        return p
    }

    /// Decides on an initiation of `requestSize` bytes from `source` whose answer would
    /// be `replySize` bytes. `known`: the source is the authenticated endpoint of a peer.
    public func check(
        source: Endpoint, requestSize: Int, replySize: Int, cookie: [UInt8]?, known: Bool = false,
        now: Double = monotonicSeconds()
    ) -> Decision {
        state.withLock { s in
            rotate(&s, now)
            if now - s.windowStart >= 1 {
                s.lastWindowCount = now - s.windowStart < 2 ? s.windowCount : 0
                s.windowCount = 0
                s.windowStart = now
            }
            s.windowCount += 1
            let underLoad = max(s.windowCount, s.lastWindowCount) > limits.loadThresholdPerSecond
            let valid = cookie.map { isValid($0, source: source, s) } ?? false
            if valid { s.counters.cookiesAccepted += 1 }
            if !valid && !known {
                // Unverified: its address is unproven, so it is never charged to that
                // address's limit (a spoofer could drain a victim's). Answered at once only
                // while idle, for a request at least as large as the answer, within the
                // total budget; otherwise it gets a cookie.
                if underLoad || requestSize < replySize || !take(&s.total, rate: limits.totalPerSecond, burst: limits.totalPerSecond, now) {
                    guard take(&s.cookieBudget, rate: limits.cookieRepliesPerSecond, burst: limits.cookieRepliesPerSecond, now) else {
                        s.counters.droppedCookieLimit += 1
                        return .drop("cookie_limit")
                    }
                    s.counters.cookiesSent += 1
                    return .cookie(makeCookie(source, secret: s.secret))
                }
                s.counters.proceeded += 1
                return .proceed
            }
            let key = Self.sourceKey(source.address)
            if s.sources[key] == nil, s.sources.count >= limits.maxTrackedSources {
                // Forget sources whose buckets are full again (they are as if new), at most
                // once a second; a table still full turns new sources away.
                if now - s.lastSweep >= 1 {
                    s.lastSweep = now
                    s.sources = s.sources.filter { now - $0.value.last < limits.perSourceBurst / limits.perSourcePerSecond }
                }
                if s.sources.count >= limits.maxTrackedSources {
                    s.counters.droppedBusy += 1
                    return .drop("busy")
                }
            }
            var bucket = s.sources[key] ?? Bucket(tokens: limits.perSourceBurst, last: now)
            let allowed = take(&bucket, rate: limits.perSourcePerSecond, burst: limits.perSourceBurst, now)
            s.sources[key] = bucket
            guard allowed else {
                s.counters.droppedSourceLimit += 1
                return .drop("source_limit")
            }
            guard take(&s.total, rate: limits.totalPerSecond, burst: limits.totalPerSecond, now) else {
                s.counters.droppedBusy += 1
                return .drop("busy")
            }
            s.counters.proceeded += 1
            return .proceed
        }
    }

    public var counters: Counters { state.withLock { $0.counters } }

    /// Whether the guard currently asks every source for a cookie.
    public func isUnderLoad(now: Double = monotonicSeconds()) -> Bool {
        state.withLock { s in
            let last = now - s.windowStart < 2 ? s.lastWindowCount : 0
            return max(now - s.windowStart < 1 ? s.windowCount : 0, last) > limits.loadThresholdPerSecond
        }
    }

    /// The per-source key: an IPv4 address, or the /64 of an IPv6 address (one host
    /// owns a whole /64, so rotating inside it gains nothing).
    public static func sourceKey(_ address: IPAddress) -> [UInt8] {
        address.isIPv4 ? address.bytes : Array(address.bytes.prefix(8))
    }

    private func rotate(_ s: inout State, _ now: Double) {
        guard now - s.secretSince >= limits.cookieSecondsValid,
            let fresh = try? SecureRandom.bytes(32)
        else { return }
        s.previousSecret = s.secret
        s.secret = fresh
        s.secretSince = now
    }

    private func isValid(_ cookie: [UInt8], source: Endpoint, _ s: State) -> Bool {
        constantTimeEqual(cookie, makeCookie(source, secret: s.secret))
            || constantTimeEqual(cookie, makeCookie(source, secret: s.previousSecret))
    }

    private func makeCookie(_ source: Endpoint, secret: [UInt8]) -> [UInt8] {
        let data = source.address.bytes + [UInt8(source.port >> 8), UInt8(source.port & 0xff)]
        let tag = (try? HMACSHA256.authenticate(key: secret, data: data)) ?? [UInt8](repeating: 0xff, count: 32)
        return Array(tag.prefix(Self.cookieSize))
    }

    private func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var d: UInt8 = 0
        for i in 0..<a.count { d |= a[i] ^ b[i] }
        return d == 0
    }

    private func take(_ b: inout Bucket, rate: Double, burst: Double, _ now: Double) -> Bool {
        b.tokens = min(burst, b.tokens + max(0, now - b.last) * rate)
        b.last = now
        guard b.tokens >= 1 else { return false }
        b.tokens -= 1
        return true
    }
}
