import CyphonicCore
import CyphonicWire
import Testing

@testable import CyphonicSignaling

/// The handshake guard decides before any asymmetric crypto: cookies for unverified
/// sources (never more bytes back than came in), limits per source and in total.
@Suite struct HandshakeGuardTests {
    let a = Endpoint("198.19.5.10:30000")!
    let t0 = 1000.0

    func guardWith(_ change: (inout HandshakeGuard.Limits) -> Void = { _ in }) throws -> HandshakeGuard {
        var limits = HandshakeGuard.Limits()
        change(&limits)
        return try HandshakeGuard(limits: limits, now: t0)
    }

    @Test func smallUnverifiedInitiationGetsASmallerCookieReplyAndTheCookieVerifies() throws {
        let g = try guardWith()
        guard case .cookie(let c) = g.check(source: a, requestSize: 60, replySize: 650, cookie: nil, now: t0) else {
            Issue.record("expected a cookie")
            return
        }
        #expect(c.count == HandshakeGuard.cookieSize)
        let reply = try Datagram(.cookieReply(cookie: c), receiverIndex: 7).encode()
        #expect(reply.count <= 60)
        #expect(g.check(source: a, requestSize: 60, replySize: 650, cookie: c, now: t0 + 1) == .proceed)
        // The cookie is bound to address and port.
        #expect(g.check(source: Endpoint("198.19.5.10:30001")!, requestSize: 60, replySize: 650, cookie: c, now: t0 + 1) != .proceed)
        #expect(g.check(source: Endpoint("198.19.5.11:30000")!, requestSize: 60, replySize: 650, cookie: c, now: t0 + 1) != .proceed)
        #expect(g.counters.cookiesSent >= 1 && g.counters.cookiesAccepted == 1)
    }

    @Test func paddedInitiationIsAnsweredAtOnceOnlyWhileIdle() throws {
        let g = try guardWith { $0.loadThresholdPerSecond = 5 }
        #expect(g.check(source: a, requestSize: 1200, replySize: 650, cookie: nil, now: t0) == .proceed)
        // Past the load threshold every unverified source needs a cookie, padded or not.
        for i in 0..<10 { _ = g.check(source: Endpoint("198.19.6.\(i):1")!, requestSize: 1200, replySize: 650, cookie: nil, now: t0 + 0.1) }
        #expect(g.isUnderLoad(now: t0 + 0.2))
        if case .cookie = g.check(source: a, requestSize: 1200, replySize: 650, cookie: nil, now: t0 + 0.2) {
        } else {
            Issue.record("expected a cookie under load")
        }
        // Known endpoints (a peer's authenticated address) pass without one.
        #expect(g.check(source: a, requestSize: 60, replySize: 650, cookie: nil, known: true, now: t0 + 0.3) == .proceed)
        // Load passes: two quiet seconds later a padded initiation is answered at once again.
        #expect(g.check(source: a, requestSize: 1200, replySize: 650, cookie: nil, now: t0 + 3) == .proceed)
    }

    @Test func verifiedSourcesAreLimitedPerSourceWithIPv6AggregatedBySlash64() throws {
        let g = try guardWith {
            $0.perSourcePerSecond = 1
            $0.perSourceBurst = 3
        }
        var results: [HandshakeGuard.Decision] = []
        for i in 0..<5 {
            // Rotating addresses inside one /64 counts as one source.
            let e = Endpoint("[2001:db8:1:2::\(i + 1)]:30000")!
            results.append(g.check(source: e, requestSize: 60, replySize: 50, cookie: nil, known: true, now: t0))
        }
        #expect(results.prefix(3).allSatisfy { $0 == .proceed })
        #expect(results.suffix(2).allSatisfy { $0 == .drop("source_limit") })
        // Another /64 is another source; time refills the bucket.
        #expect(g.check(source: Endpoint("[2001:db8:1:3::1]:30000")!, requestSize: 60, replySize: 50, cookie: nil, known: true, now: t0) == .proceed)
        #expect(
            g.check(source: Endpoint("[2001:db8:1:2::9]:30000")!, requestSize: 60, replySize: 50, cookie: nil, known: true, now: t0 + 1.1) == .proceed
        )
        #expect(HandshakeGuard.sourceKey(IPAddress("2001:db8:1:2::1")!) == HandshakeGuard.sourceKey(IPAddress("2001:db8:1:2:ffff::1")!))
        #expect(HandshakeGuard.sourceKey(IPAddress("198.19.1.1")!) != HandshakeGuard.sourceKey(IPAddress("198.19.1.2")!))
    }

    /// A spoofer using a victim's address cannot use up the victim's per-source limit:
    /// unverified requests are never charged to it.
    @Test func unverifiedRequestsDoNotDrainTheSourceLimit() throws {
        let g = try guardWith {
            $0.perSourcePerSecond = 0.1
            $0.perSourceBurst = 2
        }
        for _ in 0..<20 {
            #expect(g.check(source: a, requestSize: 1200, replySize: 650, cookie: nil, now: t0) == .proceed)
        }
        guard case .cookie(let c) = g.check(source: a, requestSize: 60, replySize: 650, cookie: nil, now: t0) else {
            Issue.record("expected a cookie")
            return
        }
        #expect(g.check(source: a, requestSize: 60, replySize: 650, cookie: c, now: t0) == .proceed)
        #expect(g.check(source: a, requestSize: 60, replySize: 650, cookie: c, now: t0) == .proceed)
        #expect(g.check(source: a, requestSize: 60, replySize: 650, cookie: c, now: t0) == .drop("source_limit"))
    }

    @Test func totalHandshakesAndCookieRepliesAreBounded() throws {
        let g = try guardWith {
            $0.totalPerSecond = 10
            $0.cookieRepliesPerSecond = 20
            $0.loadThresholdPerSecond = 1_000_000
        }
        var proceeded = 0
        for i in 0..<50 {
            if g.check(source: Endpoint("198.19.7.\(i):1")!, requestSize: 60, replySize: 50, cookie: nil, known: true, now: t0) == .proceed {
                proceeded += 1
            }
        }
        #expect(proceeded == 10 && g.counters.droppedBusy == 40)
        var cookies = 0
        for i in 0..<50 {
            if case .cookie = g.check(source: Endpoint("198.19.8.\(i):1")!, requestSize: 60, replySize: 650, cookie: nil, now: t0) {
                cookies += 1
            }
        }
        #expect(cookies == 20 && g.counters.droppedCookieLimit == 30)
    }

    @Test func cookiesExpireAfterTwoSecretRotations() throws {
        let g = try guardWith { $0.cookieSecondsValid = 10 }
        guard case .cookie(let c) = g.check(source: a, requestSize: 60, replySize: 650, cookie: nil, now: t0) else {
            Issue.record("expected a cookie")
            return
        }
        #expect(g.check(source: a, requestSize: 60, replySize: 650, cookie: c, now: t0 + 11) == .proceed)  // previous secret
        if case .cookie = g.check(source: a, requestSize: 60, replySize: 650, cookie: c, now: t0 + 22) {
        } else {
            Issue.record("a cookie two rotations old must not verify")
        }
    }

    @Test func initiationPayloadPadsTheDatagramAndCarriesTheCookie() {
        let cookie = Array(UInt8(1)...UInt8(16))
        let payload = HandshakeGuard.initiationPayload(cookie: cookie, overhead: 60)
        #expect(payload.count + 60 == HandshakeGuard.paddedInitiationSize)
        #expect(HandshakeGuard.cookie(inNoiseMessage1: [UInt8](repeating: 9, count: 32) + payload) == cookie)
        #expect(
            HandshakeGuard.cookie(inNoiseMessage1: [UInt8](repeating: 9, count: 32) + HandshakeGuard.initiationPayload(cookie: nil, overhead: 60))
                == nil)
        #expect(HandshakeGuard.cookie(inNoiseMessage1: [UInt8](repeating: 9, count: 32)) == nil)
    }
}
