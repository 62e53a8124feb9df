import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire
import Logging
import Testing

@testable import CyphonicAS

/// Issue 8: the helpers and knobs added for defects 1, 3, 4 and 10 on the AS side.
@Suite struct HardeningTests {
    @Test func loginNamesAreEscapedAndCutForTheLog() {
        #expect(LogText.escaped("init01") == "init01")
        #expect(LogText.escaped("a b\n\"x\"\\") == "a\\x20b\\x0a\\x22x\\x22\\x5c")
        #expect(LogText.escaped("\u{1b}[31mred") == "\\x1b[31mred")
        #expect(LogText.escaped("é") == "\\xc3\\xa9")
        let long = String(repeating: "n", count: 253)
        #expect(LogText.escaped(long) == String(repeating: "n", count: 64) + "…+189")
        // A forged second line cannot appear: no raw control byte survives.
        let forged = LogText.escaped("x from 1.2.3.4: ok\nas: login ok: admin")
        #expect(!forged.utf8.contains { $0 < 0x20 || $0 == 0x7f })
    }

    @Test func refusalLogLinesAreRateLimitedAndTheRestCounted() {
        let limiter = LogRateLimiter(perSecond: 3)
        let first = (0..<10).map { _ in limiter.admit(now: 100) }
        #expect(first.filter(\.allowed).count == 3)
        #expect(first.allSatisfy { $0.suppressed == 0 })
        #expect(limiter.takeSuppressed(now: 100) == nil)  // still the same second
        let next = limiter.admit(now: 101)
        #expect(next.allowed && next.suppressed == 7)
        _ = (0..<5).map { _ in limiter.admit(now: 101) }
        #expect(limiter.takeSuppressed(now: 102) == 3)
        #expect(limiter.takeSuppressed(now: 103) == nil)
        // The summary form: a line let through after held-back ones reports their count first.
        var summarized: [Int] = []
        for _ in 0..<5 { _ = limiter.admit(now: 200) }
        #expect(limiter.admit(now: 201) { summarized.append($0) })
        #expect(summarized == [2])
        #expect(limiter.admit(now: 201) { summarized.append($0) } && summarized == [2])
    }

    @Test func sourceKeysAggregateIPv6BySlash64() {
        #expect(RateLimiter.sourceKey(IPAddress("2001:db8:1:2::1")!) == RateLimiter.sourceKey(IPAddress("2001:db8:1:2:ffff::9")!))
        #expect(RateLimiter.sourceKey(IPAddress("2001:db8:1:2::1")!) != RateLimiter.sourceKey(IPAddress("2001:db8:1:3::1")!))
        #expect(RateLimiter.sourceKey(IPAddress("198.51.100.1")!) == RateLimiter.sourceKey(IPAddress("::ffff:198.51.100.1")!))
        #expect(RateLimiter.sourceKey(IPAddress("198.51.100.1")!) != RateLimiter.sourceKey(IPAddress("198.51.100.2")!))
    }

    /// The configured PBKDF2 budget: refused logins run no PBKDF2, certificate logins
    /// need none and pass while the budget is spent; zero is a configuration error.
    @Test func passwordCheckBudgetIsConfigurableAndSparesCertificateLogins() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let authority = try ASAuthority(
            directory: t.directory, limiter: RateLimiter(maxFailures: 5, windowSeconds: 60),
            tokenIterations: 1000, maxPasswordChecksPerSecond: 3)
        let now = unixNow()
        let ticket = try authority.addNode(name: "ok", group: nil, now: now)
        let key = try X25519PrivateKey()
        let cert = try authority.login(
            Login(name: "ok", credential: .token(ticket.token)), clientKey: key.publicKey,
            source: IPAddress("198.51.100.1")!, now: now
        ).get().value.certificate
        let results = (0..<6).map { i in
            authority.login(
                Login(name: "x\(i)", credential: .token("x\(i).y")), clientKey: key.publicKey,
                source: IPAddress("203.0.113.\(i + 1)")!, now: now
            ).failure
        }
        #expect(results == [.unknownNode, .unknownNode, .rateLimited, .rateLimited, .rateLimited, .rateLimited])
        #expect(authority.passwordChecksPerformed == 3)
        #expect(throws: Never.self) {
            _ = try authority.login(
                Login(name: "ok", credential: .certificate(der: cert)), clientKey: key.publicKey,
                source: IPAddress("203.0.113.1")!, now: now
            ).get()
        }
        #expect(authority.passwordChecksPerformed == 3)
        #expect(throws: ConfigError.invalid("max-password-checks", "must be at least 1 per second")) {
            _ = try ASAuthority(directory: t.directory, tokenIterations: 1000, maxPasswordChecksPerSecond: 0)
        }
    }

    /// The write of a certificate login re-checks the node in its transaction: after a
    /// revocation it writes nothing, and a renewal that lost a race to another is dropped.
    @Test func certificateLoginWriteRechecksStateAndNewest() throws {
        let t = try TempAS(renewBeforeDays: 29)
        defer { t.cleanup() }
        let now = unixNow()
        let ticket = try t.authority.addNode(name: "r", group: nil, now: now)
        let key = try X25519PrivateKey()
        _ = try t.authority.login(
            Login(name: "r", credential: .token(ticket.token)), clientKey: key.publicKey,
            source: IPAddress("198.51.100.1")!, now: now
        ).get()
        let node = try #require(try t.directory.store.node(named: "r"))
        let fresh = IssuedCertificate(serial: 77, subject: node.fqdn, role: "node", notBefore: now, notAfter: now + 30 * 86_400, der: [1])
        // The newest still expires after the threshold: the renewal is dropped, the newest returned.
        let kept = try t.directory.store.recordCertificateLogin(
            nodeID: node.id, publicKey: key.publicKey.bytes, renewed: fresh,
            renewUnlessNewestExpiresAfter: now, now: now)
        #expect(kept == .recorded(certificate: try #require(try t.directory.store.currentCertificate(nodeID: node.id)), issued: false))
        // Another key, or after the revocation: nothing written.
        #expect(
            try t.directory.store.recordCertificateLogin(
                nodeID: node.id, publicKey: [UInt8](repeating: 9, count: 32),
                renewed: fresh, renewUnlessNewestExpiresAfter: now + 40 * 86_400,
                now: now) == .notActive)
        try t.authority.revokeNode(name: "r", now: now)
        #expect(
            try t.directory.store.recordCertificateLogin(
                nodeID: node.id, publicKey: key.publicKey.bytes, renewed: fresh,
                renewUnlessNewestExpiresAfter: now + 40 * 86_400,
                now: now) == .notActive)
        #expect(try t.directory.store.certificates(nodeID: node.id).allSatisfy { $0.revokedAt != nil && $0.serial != 77 })
    }

    /// The quarantine is visible: `removeNode` says until when, the store lists it (for
    /// `node list` and `status`), and the audit entry names it.
    @Test func quarantineIsVisibleToOperators() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let now = unixNow()
        let a = try t.authority.addNode(name: "a", group: nil, now: now)
        let cert = try t.authority.login(
            Login(name: "a", credential: .token(a.token)), clientKey: try X25519PrivateKey().publicKey,
            source: IPAddress("198.51.100.1")!, now: now
        ).get().value.certificate
        let until = try #require(try Certificate(der: cert).notAfter)
        let removed = try t.authority.removeNode(name: "a", now: now + 10)
        #expect(removed.quarantinedUntil == until && removed.vip4 == a.node.vip4)
        #expect(
            try t.directory.store.quarantinedAddresses(now: now + 10)
                == [QuarantinedAddress(index: 1, vip4: a.node.vip4, vip6: a.node.vip6, until: until, node: "a")])
        #expect(try t.directory.store.quarantinedAddresses(now: until).isEmpty)
        #expect(try t.directory.store.auditCount(action: "node.remove") == 1)
        // A pending node (no certificate) frees its addresses at once.
        _ = try t.authority.addNode(name: "p", group: nil, now: now)
        #expect(try t.authority.removeNode(name: "p", now: now).quarantinedUntil == nil)
    }

    /// The CRL is re-published (same serials, new number, a fresh week) once less than
    /// half of its validity remains, by the authority and by the server's housekeeping.
    @Test func revocationListIsRefreshedBeforeItsNextUpdate() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let ticket = try t.authority.addNode(name: "v", group: nil)
        let cert = try t.authority.login(
            Login(name: "v", credential: .token(ticket.token)), clientKey: try X25519PrivateKey().publicKey,
            source: IPAddress("198.51.100.1")!
        ).get().value.certificate
        let serial = try #require(try Certificate(der: cert).serial)
        let start = unixNow()
        try t.authority.revokeNode(name: "v", now: start)
        let current = try #require(try t.authority.revocationList())
        let week: Int64 = 7 * 86_400
        #expect(current.thisUpdate == start && current.nextUpdate == start + week)
        #expect(try t.authority.refreshRevocationListIfDue(now: start + week / 2) == nil)
        #expect(try t.authority.revocationList()?.number == current.number)
        let refreshed = try #require(try t.authority.refreshRevocationListIfDue(now: start + week / 2 + 1))
        let crl = try #require(try t.authority.revocationList())
        try crl.verify(issuedBy: t.directory.ca.certificate)
        #expect(crl.number == refreshed && refreshed == current.number + 1)
        #expect(crl.thisUpdate == start + week / 2 + 1 && crl.nextUpdate == start + week / 2 + 1 + week && crl.contains(serial))
        // The server's housekeeping path does the same.
        let server = ASServer(authority: t.authority, listen: [], metrics: ASMetrics(), logger: Logger(label: "test"))
        server.refreshCRL(now: start + week)
        #expect(try t.authority.revocationList()?.number == refreshed)
        server.refreshCRL(now: start + week / 2 + 1 + week / 2 + 1)
        #expect(try t.authority.revocationList()?.number == refreshed + 1)
    }
}
