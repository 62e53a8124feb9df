import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire
import Foundation
import Testing

@testable import CyphonicAS

@Suite struct AuthorityTests {
    let source = IPAddress("198.19.1.2")!

    @Test func tokenLoginIssuesACertificateBindingKeyNameAndAddresses() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let ticket = try t.authority.addNode(name: "init01", group: "lab")
        #expect(ticket.node.fqdn == "init01.cyphonic.internal")
        #expect(ticket.node.vip4 == "198.18.0.1" && ticket.node.vip6 == "2001:db8:c0ff:ee::1")
        #expect(ticket.token.hasPrefix("init01."))
        let key = try X25519PrivateKey()
        let ok = try t.authority.login(
            Login(name: "init01", credential: .token(ticket.token)), clientKey: key.publicKey,
            source: source
        ).get()
        #expect(ok.issued)
        let p = ok.value
        #expect(p.fqdn.value == "init01.cyphonic.internal")
        #expect(p.virtualIPv4 == IPAddress("198.18.0.1") && p.virtualIPv6 == IPAddress("2001:db8:c0ff:ee::1"))
        #expect(p.nmsEndpoints == [Endpoint("198.19.0.2:4502")!] && p.trsEndpoints == [Endpoint("198.19.0.3:4503")!])
        let cert = try Certificate(der: p.certificate)
        #expect(cert.x25519PublicKey == key.publicKey)
        try CertificateVerifier(trustAnchor: try Certificate(der: p.caCertificate))
            .verify(cert, role: .node, name: "init01.cyphonic.internal", addresses: [p.virtualIPv4, p.virtualIPv6])
        #expect(try t.directory.store.node(named: "init01")?.state == .active)
    }

    @Test func tokenWorksOnceAndWrongTokensLookLikeUnknownNodes() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let ticket = try t.authority.addNode(name: "init01", group: nil)
        let key = try X25519PrivateKey()
        _ = try t.authority.login(Login(name: "init01", credential: .token(ticket.token)), clientKey: key.publicKey, source: source).get()
        let again = t.authority.login(
            Login(name: "init01", credential: .token(ticket.token)), clientKey: key.publicKey,
            source: IPAddress("198.19.9.9")!)
        #expect(again.failure == .tokenUsed)
        let unknown = t.authority.login(
            Login(name: "nobody", credential: .token("nobody.00")), clientKey: key.publicKey,
            source: IPAddress("198.19.9.10")!)
        let wrong = t.authority.login(
            Login(name: "init01", credential: .token("init01.00")), clientKey: key.publicKey,
            source: IPAddress("198.19.9.11")!)
        // Distinct internally, the same on the wire.
        #expect(unknown.failure == .unknownNode && wrong.failure == .badCredential("token"))
        #expect(
            unknown.failure?.status == .unauthorized && wrong.failure?.status == .unauthorized
                && again.failure?.status == .unauthorized)
    }

    /// Token failures count per source and per node name: five block further token
    /// logins from that source (for any name) and for that name (from any source), before
    /// PBKDF2, until the window has passed. (Certificate logins are never blocked: LoginAbuseTests.)
    @Test func failuresAreRateLimitedPerSourceAndPerName() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let ticket = try t.authority.addNode(name: "init02", group: nil, now: 1000)
        let key = try X25519PrivateKey()
        var results: [LoginFailure?] = []
        for i in 0..<10 {
            results.append(
                t.authority.login(
                    Login(name: "init02", credential: .token("init02.bad\(i)")), clientKey: key.publicKey,
                    source: source, now: 1000
                ).failure)
        }
        #expect(results.prefix(5).allSatisfy { $0 == .badCredential("token") })
        #expect(results.suffix(5).allSatisfy { $0 == .rateLimited })
        #expect(t.authority.passwordChecksPerformed == 5)
        // The source is blocked for other names too...
        #expect(
            t.authority.login(
                Login(name: "other", credential: .token("other.x")), clientKey: key.publicKey,
                source: source, now: 1001
            ).failure == .rateLimited)
        // ...and the name from another address, even with the right token, also by its FQDN...
        #expect(
            t.authority.login(
                Login(name: "init02", credential: .token(ticket.token)), clientKey: key.publicKey,
                source: IPAddress("198.19.7.7")!, now: 1001
            ).failure == .rateLimited)
        #expect(
            t.authority.login(
                Login(name: "init02.cyphonic.internal", credential: .token(ticket.token)), clientKey: key.publicKey,
                source: IPAddress("198.19.7.8")!, now: 1001
            ).failure == .rateLimited)
        #expect(t.authority.passwordChecksPerformed == 5)
        // ...until the window has passed.
        #expect(throws: Never.self) {
            _ = try t.authority.login(
                Login(name: "init02", credential: .token(ticket.token)), clientKey: key.publicKey,
                source: IPAddress("198.19.7.7")!, now: 1061
            ).get()
        }
    }

    @Test func certificateLoginKeepsAddressesAndRenewsNearExpiry() throws {
        let t = try TempAS(renewBeforeDays: 10)
        defer { t.cleanup() }
        let ticket = try t.authority.addNode(name: "init03", group: nil)
        let key = try X25519PrivateKey()
        let first = try t.authority.login(
            Login(name: "init03", credential: .token(ticket.token)), clientKey: key.publicKey,
            source: source
        ).get().value
        let later = try t.authority.login(
            Login(name: "init03", credential: .certificate(der: first.certificate)),
            clientKey: key.publicKey, source: source
        ).get()
        #expect(!later.issued && later.value.certificate == first.certificate)
        #expect(later.value.virtualIPv4 == first.virtualIPv4 && later.value.fqdn == first.fqdn)
        // 25 days on, the 30-day certificate is within 10 days of expiry: renewed.
        let renewed = try t.authority.login(
            Login(name: "init03", credential: .certificate(der: first.certificate)),
            clientKey: key.publicKey, source: source, now: unixNow() + 25 * 86_400
        ).get()
        #expect(renewed.issued && renewed.value.certificate != first.certificate)
        #expect(renewed.value.virtualIPv6 == first.virtualIPv6)
        // Another key cannot use this certificate.
        let thief = try X25519PrivateKey()
        #expect(
            t.authority.login(
                Login(name: "init03", credential: .certificate(der: first.certificate)),
                clientKey: thief.publicKey, source: IPAddress("198.19.5.5")!
            ).failure == .badCredential("key"))
    }

    @Test func revokedAndRemovedNodesAreRefused() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let a = try t.authority.addNode(name: "a", group: nil)
        let b = try t.authority.addNode(name: "b", group: nil)
        let ka = try X25519PrivateKey()
        let kb = try X25519PrivateKey()
        let pa = try t.authority.login(Login(name: "a", credential: .token(a.token)), clientKey: ka.publicKey, source: source).get().value
        let pb = try t.authority.login(Login(name: "b", credential: .token(b.token)), clientKey: kb.publicKey, source: source).get().value
        let serials = try t.authority.revokeNode(name: "a")
        #expect(serials == [try Certificate(der: pa.certificate).serial!])
        #expect(
            t.authority.login(
                Login(name: "a", credential: .certificate(der: pa.certificate)), clientKey: ka.publicKey,
                source: source
            ).failure == .revoked)
        let crl = try #require(try t.authority.revocationList())
        try crl.verify(issuedBy: t.directory.ca.certificate)
        #expect(crl.contains(serials[0]))
        try t.authority.removeNode(name: "b")
        #expect(
            t.authority.login(
                Login(name: "b", credential: .certificate(der: pb.certificate)), clientKey: kb.publicKey,
                source: source
            ).failure == .unknownNode)
        #expect(try t.authority.revocationList()?.contains(try Certificate(der: pb.certificate).serial!) == true)
        #expect(try t.authority.revocationList()!.number > crl.number)
    }

    @Test func namesAndAddressesAreUniqueAndThePoolEnds() throws {
        let t = try TempAS(vip4: "198.18.9.0/30", vip6: "2001:db8:c0ff:ee::/126")  // 2 host addresses
        defer { t.cleanup() }
        _ = try t.authority.addNode(name: "n1", group: nil)
        #expect(throws: StoreError.nameTaken("n1")) { try t.authority.addNode(name: "N1", group: nil) }
        #expect(throws: StoreError.invalidName("bad_name")) { try t.authority.addNode(name: "bad_name", group: nil) }
        #expect(throws: StoreError.invalidName("a.b")) { try t.authority.addNode(name: "a.b", group: nil) }
        let n2 = try t.authority.addNode(name: "n2", group: nil)
        #expect(n2.node.vip4 == "198.18.9.2")
        #expect(throws: StoreError.poolExhausted(t.directory.settings.pool.description)) { try t.authority.addNode(name: "n3", group: nil) }
        // A removed node's addresses are free again.
        try t.authority.removeNode(name: "n1")
        #expect(try t.authority.addNode(name: "n3", group: nil).node.vip4 == "198.18.9.1")
    }

    @Test func initRefusesAnInitialisedDirectoryAndReopens() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        #expect(throws: InitError.self) { try ASDirectory.initialise(at: t.path, settings: t.directory.settings) }
        let again = try ASDirectory.open(at: t.path)
        #expect(again.ca.certificate == t.directory.ca.certificate)
        #expect(again.settings == t.directory.settings)
        #expect(again.store.schemaVersion == Int64(ASStore.migrations.count))
        let mode = try FileManager.default.attributesOfItem(atPath: ASDirectory.file(t.path, "ca.key"))[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }
}

extension Result {
    var failure: Failure? { if case .failure(let f) = self { return f } else { return nil } }
}
