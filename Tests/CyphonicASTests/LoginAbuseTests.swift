import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire
import Testing

@testable import CyphonicAS

/// Issue 8, defect 3 (the AS must not be lockable) and the `revoked` disclosure of
/// defect 10: what an attacker who knows a node's name can and cannot do to its logins.
@Suite struct LoginAbuseTests {
    let victimSource = IPAddress("198.19.1.2")!

    func tokenLogin(
        _ t: TempAS, _ name: String, _ token: String, _ key: X25519PrivateKey, from: IPAddress, at now: Int64
    )
        -> Result<LoginSuccess, LoginFailure>
    {
        t.authority.login(Login(name: name, credential: .token(token)), clientKey: key.publicKey, source: from, now: now)
    }

    func certificateLogin(
        _ t: TempAS, _ name: String, _ der: [UInt8], _ key: X25519PrivateKey, from: IPAddress, at now: Int64
    )
        -> Result<LoginSuccess, LoginFailure>
    {
        t.authority.login(Login(name: name, credential: .certificate(der: der)), clientKey: key.publicKey, source: from, now: now)
    }

    /// (a) Bad tokens and bad certificates for the victim's name, even from the victim's
    /// own address, neither block its valid certificate login nor its renewal.
    @Test func aValidCertificateLoginIsNeverBlockedByOthersFailures() throws {
        let t = try TempAS(renewBeforeDays: 29)
        defer { t.cleanup() }
        let base = unixNow()
        let ticket = try t.authority.addNode(name: "victim", group: nil, now: base - 2 * 86_400)
        let key = try X25519PrivateKey()
        let attacker = try X25519PrivateKey()
        // Enrolled two days ago: its 30-day certificate is inside the 29-day renewal window now.
        let cert = try tokenLogin(t, "victim", ticket.token, key, from: victimSource, at: base - 2 * 86_400).get().value.certificate
        for i in 0..<10 {
            _ = tokenLogin(t, "victim", "victim.bad\(i)", attacker, from: victimSource, at: base)
            _ = tokenLogin(t, "victim", "victim.bad\(i)", attacker, from: IPAddress("203.0.113.\(i + 1)")!, at: base)
            _ = certificateLogin(t, "victim", cert, attacker, from: victimSource, at: base)  // not the enrolled key
            _ = certificateLogin(t, "victim", [0x30, 0x03, 0x02, 0x01, UInt8(i)], key, from: victimSource, at: base)
        }
        // The attacker's token guessing is limited...
        #expect(tokenLogin(t, "victim", "victim.bad", attacker, from: IPAddress("203.0.113.99")!, at: base).failure == .rateLimited)
        // ...but the victim logs in with its certificate from the same address, and renews.
        let renewed = try certificateLogin(t, "victim", cert, key, from: victimSource, at: base + 1).get()
        #expect(renewed.issued && renewed.value.certificate != cert)
        let again = try certificateLogin(t, "victim", renewed.value.certificate, key, from: victimSource, at: base + 2).get()
        #expect(!again.issued && again.value.certificate == renewed.value.certificate)
    }

    /// (b) Token failures are limited per name (from any number of sources), without
    /// locking out the certificate path of an enrolled node with that name.
    @Test func tokenFailuresAreLimitedPerNameWithoutLockingTheCertificatePath() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let now = unixNow()
        let pending = try t.authority.addNode(name: "pend", group: nil, now: now)
        let live = try t.authority.addNode(name: "live", group: nil, now: now)
        let key = try X25519PrivateKey()
        let liveKey = try X25519PrivateKey()
        let liveCert = try tokenLogin(t, "live", live.token, liveKey, from: victimSource, at: now).get().value.certificate
        for name in ["pend", "live"] {
            // Five wrong tokens, each from a different source: no source limit is reached.
            for i in 0..<5 {
                #expect(
                    tokenLogin(t, name, "\(name).bad\(i)", key, from: IPAddress("203.0.113.\(i + 1)")!, at: now).failure
                        == .badCredential("token"))
            }
        }
        // The sixth token login for the name is refused before PBKDF2, even with the right token...
        #expect(tokenLogin(t, "pend", pending.token, key, from: IPAddress("203.0.113.50")!, at: now + 1).failure == .rateLimited)
        // ...while the enrolled node with a name under the token limit logs in with its certificate.
        #expect(tokenLogin(t, "live", "live.bad", key, from: IPAddress("203.0.113.51")!, at: now + 1).failure == .rateLimited)
        #expect(throws: Never.self) {
            _ = try certificateLogin(t, "live", liveCert, liveKey, from: IPAddress("198.51.100.7")!, at: now + 1).get()
        }
        // After the window the right token works.
        #expect(throws: Never.self) {
            _ = try tokenLogin(t, "pend", pending.token, key, from: IPAddress("203.0.113.50")!, at: now + 61).get()
        }
    }

    /// (c) Rotating addresses inside one IPv6 /64 does not escape the per-source limit;
    /// another /64, and another IPv4 address, are separate sources.
    @Test func sourceLimitsAggregateIPv6BySlash64AndIPv4ByAddress() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let now = unixNow()
        let key = try X25519PrivateKey()
        // Every attempt names another (unknown) node, so only the source limit can apply.
        for i in 0..<5 {
            let from = IPAddress("2001:db8:1:2::\(i + 1)")!
            #expect(tokenLogin(t, "n\(i)", "n\(i).x", key, from: from, at: now).failure == .unknownNode)
        }
        #expect(tokenLogin(t, "n5", "n5.x", key, from: IPAddress("2001:db8:1:2:ffff:1:2:3")!, at: now).failure == .rateLimited)
        #expect(tokenLogin(t, "n6", "n6.x", key, from: IPAddress("2001:db8:1:3::1")!, at: now).failure == .unknownNode)
        for i in 0..<5 {
            #expect(tokenLogin(t, "m\(i)", "m\(i).x", key, from: IPAddress("198.51.100.1")!, at: now).failure == .unknownNode)
        }
        #expect(tokenLogin(t, "m5", "m5.x", key, from: IPAddress("198.51.100.1")!, at: now).failure == .rateLimited)
        #expect(tokenLogin(t, "m6", "m6.x", key, from: IPAddress("::ffff:198.51.100.1")!, at: now).failure == .rateLimited)
        #expect(tokenLogin(t, "m7", "m7.x", key, from: IPAddress("198.51.100.2")!, at: now).failure == .unknownNode)
    }

    /// (d) With the default budget of 20 PBKDF2 checks a second, the 21st token login in
    /// one second from fresh sources and names is refused; the next second has budget again.
    @Test func passwordWorkPerSecondIsBoundedGlobally() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let now = unixNow()
        let key = try X25519PrivateKey()
        let results = (0..<25).map { i in
            tokenLogin(t, "g\(i)", "g\(i).x", key, from: IPAddress("203.0.\(113 + i / 200).\(i % 200 + 1)")!, at: now).failure
        }
        #expect(results.prefix(20).allSatisfy { $0 == .unknownNode })
        #expect(results.suffix(5).allSatisfy { $0 == .rateLimited })
        #expect(tokenLogin(t, "h", "h.x", key, from: IPAddress("198.51.100.77")!, at: now + 1).failure == .unknownNode)
    }

    /// Defect 10: a client that has not proven the node's enrolled key gets the generic
    /// refusal, never `revoked` (docs/protocol.md §6); the owner of the key does get `revoked`.
    @Test func revokedIsNotRevealedBeforeTheKeyIsProven() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let ticket = try t.authority.addNode(name: "gone", group: nil)
        let key = try X25519PrivateKey()
        let prober = try X25519PrivateKey()
        let cert = try tokenLogin(t, "gone", ticket.token, key, from: victimSource, at: unixNow()).get().value.certificate
        try t.authority.revokeNode(name: "gone")
        let withCert = certificateLogin(t, "gone", cert, prober, from: IPAddress("203.0.113.1")!, at: unixNow())
        let withJunk = certificateLogin(t, "gone", [0x30, 0x00], prober, from: IPAddress("203.0.113.2")!, at: unixNow())
        let withToken = tokenLogin(t, "gone", "gone.guess", prober, from: IPAddress("203.0.113.3")!, at: unixNow())
        for failure in [withCert.failure, withJunk.failure, withToken.failure] {
            #expect(failure != nil && failure != .revoked && failure?.status == .unauthorized, "\(String(describing: failure))")
        }
        #expect(certificateLogin(t, "gone", cert, key, from: victimSource, at: unixNow()).failure == .revoked)
    }
}
