import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire
import Foundation
import Synchronization
import Testing

@testable import CyphonicAS

/// Issue 8, defect 4 (no fresh certificate for a revoked node; renewals bounded) and the
/// AS half of defect 1 (a removed node's addresses are not reissued while a certificate
/// naming them is valid). Uses only API that predates the fix, so it runs on old code too.
@Suite struct CertificateLifecycleTests {
    let source = IPAddress("198.19.1.2")!

    func login(
        _ t: TempAS, _ name: String, _ credential: Login.Credential, _ key: X25519PrivateKey, at now: Int64,
        from: IPAddress? = nil
    ) -> Result<LoginSuccess, LoginFailure> {
        t.authority.login(Login(name: name, credential: credential), clientKey: key.publicKey, source: from ?? source, now: now)
    }

    /// Several threads renew a node's certificate in a loop (every login is past the
    /// renewal point of the newest certificate) while another thread revokes the node:
    /// afterwards the node has no unrevoked certificate, so none was issued after the
    /// revocation. Five rounds, so that the race window is hit on code without the fix.
    @Test func renewalsRacingARevocationNeverLeaveAnUnrevokedCertificate() throws {
        let t = try TempAS(renewBeforeDays: 29)
        defer { t.cleanup() }
        for round in 0..<5 {
            let name = "race\(round)"
            let base = unixNow()
            let ticket = try t.authority.addNode(name: name, group: nil, now: base)
            let key = try X25519PrivateKey()
            // Each round enrols from its own address: the refused logins of earlier rounds count against theirs.
            let first = try login(t, name, .token(ticket.token), key, at: base, from: IPAddress("198.19.2.\(round + 1)")!)
                .get().value.certificate
            let shared = RaceState(clock: base)
            let group = DispatchGroup()
            for _ in 0..<4 {
                group.enter()
                Thread { [t, shared] in
                    defer { group.leave() }
                    var cert = first
                    // Each login is 25 h after the previous one: past the newest certificate's
                    // renewal point (1 day after issue with 30-day certificates, renew 29 days before).
                    for _ in 0..<200 {
                        let now = shared.clock.add(90_000, ordering: .relaxed).newValue
                        switch t.authority.login(
                            Login(name: name, credential: .certificate(der: cert)), clientKey: key.publicKey,
                            source: IPAddress("198.19.2.\(round + 1)")!, now: now)
                        {
                        case .success(let s):
                            if s.issued { shared.issued.add(1, ordering: .relaxed) }
                            cert = s.value.certificate
                        case .failure:
                            if shared.revoked.load(ordering: .acquiring) { return }
                        }
                    }
                }.start()
            }
            // Revoke while the renewals run.
            let deadline = Date().addingTimeInterval(30)
            while shared.issued.load(ordering: .relaxed) < 6, Date() < deadline { usleep(200) }
            #expect(shared.issued.load(ordering: .relaxed) >= 6, "round \(round): renewals did not start")
            try t.authority.revokeNode(name: name, now: shared.clock.load(ordering: .relaxed))
            shared.revoked.store(true, ordering: .releasing)
            group.wait()
            let node = try #require(try t.directory.store.node(named: name))
            #expect(node.state == .revoked)
            #expect(node.serial == nil, "round \(round): unrevoked certificate \(node.serial ?? 0) after the revocation")
            #expect(login(t, name, .certificate(der: first), key, at: shared.clock.load(ordering: .relaxed)).failure == .revoked)
        }
    }

    /// Renewals are rate-limited (logging in again and again with an old certificate
    /// gets the newest one back, not a new one) and superseded expired certificates are
    /// dropped, so a node renewing every 25 h for 120 renewals keeps at most the ~29
    /// certificates still valid at any time.
    @Test func repeatedRenewalsDoNotGrowTheCertificatesTable() throws {
        let t = try TempAS(renewBeforeDays: 29)
        defer { t.cleanup() }
        let base = unixNow()
        let ticket = try t.authority.addNode(name: "busy", group: nil, now: base)
        let key = try X25519PrivateKey()
        let first = try login(t, "busy", .token(ticket.token), key, at: base).get().value.certificate
        // Ten logins with the first certificate, 2 days later: one renewal, then that one back.
        let answers = try (0..<10).map { _ in try login(t, "busy", .certificate(der: first), key, at: base + 2 * 86_400).get() }
        #expect(answers.filter(\.issued).count == 1)
        #expect(Set(answers.map(\.value.certificate)).count == 1 && answers[0].value.certificate != first)
        var cert = answers[0].value.certificate
        var now = base + 2 * 86_400
        for i in 0..<120 {
            now += 90_000
            let answer = try login(t, "busy", .certificate(der: cert), key, at: now).get()
            #expect(answer.issued, "renewal \(i)")
            cert = answer.value.certificate
        }
        // Revoking lists every certificate the store still holds for the node.
        let held = try t.authority.revokeNode(name: "busy", now: now)
        #expect(held.count >= 2 && held.count <= 30, "\(held.count) certificates held after 122 issues")
    }

    /// `node remove` quarantines the node's addresses until its last certificate expires
    /// (a renewal extends it): `node add` skips them until that second, then reuses them.
    @Test func removedAddressesAreNotReissuedWhileACertificateNamesThem() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let base = unixNow()
        let a = try t.authority.addNode(name: "a", group: nil, now: base)
        let key = try X25519PrivateKey()
        let cert = try login(t, "a", .token(a.token), key, at: base).get().value.certificate
        // 25 days on the 30-day certificate is renewed: the last certificate now ends later.
        let renewed = try login(t, "a", .certificate(der: cert), key, at: base + 25 * 86_400).get()
        #expect(renewed.issued)
        let until = try #require(try Certificate(der: renewed.value.certificate).notAfter)
        try t.authority.removeNode(name: "a", now: base + 26 * 86_400)
        // After the first certificate expired, before the renewed one did.
        let c = try t.authority.addNode(name: "c", group: nil, now: base + 31 * 86_400).node
        #expect(c.vip4 != a.node.vip4 && c.vip6 != a.node.vip6)
        try t.authority.removeNode(name: "c", now: base + 31 * 86_400)  // never enrolled: freed at once
        let d = try t.authority.addNode(name: "d", group: nil, now: until - 1).node
        #expect(d.vip4 != a.node.vip4 && d.vip6 != a.node.vip6)
        #expect(d.vip4 == c.vip4)
        let e = try t.authority.addNode(name: "e", group: nil, now: until).node
        #expect(e.vip4 == a.node.vip4 && e.vip6 == a.node.vip6)
    }
}

/// What the racing threads share (an `Atomic` cannot be captured by itself).
final class RaceState: Sendable {
    let clock: Atomic<Int64>
    let issued = Atomic<Int>(0)
    let revoked = Atomic<Bool>(false)
    init(clock: Int64) { self.clock = Atomic(clock) }
}
