import CyphonicCore
import CyphonicCrypto
import Testing

@testable import CyphonicPKI

@Suite struct VerifierTests {
    @Test func goodCertificatePasses() throws {
        let pki = try TestPKI()
        let v = try CertificateVerifier(trustAnchor: pki.ca.certificate)
        try v.verify(pki.node, role: .node, name: "init01.cyphonic.internal", addresses: [pki.v4, pki.v6])
        try v.verify(pki.node, role: .node, name: "INIT01.cyphonic.internal")
    }

    @Test func foreignCAIsRefusedEvenWithTheSameName() throws {
        let pki = try TestPKI()
        let impostor = try TestPKI()  // same CA name, other key
        let v = try CertificateVerifier(trustAnchor: pki.ca.certificate)
        #expect(throws: PKIError.self) { try v.verify(impostor.node, role: .node) }
        do {
            try v.verify(impostor.node, role: .node)
        } catch let PKIError.untrusted(reason) {
            #expect(!reason.isEmpty)
        }
    }

    @Test func validityWindowIsEnforced() throws {
        let pki = try TestPKI()
        let v = try CertificateVerifier(trustAnchor: pki.ca.certificate)
        #expect(throws: PKIError.expired) { try v.verify(pki.node, role: .node, at: pki.now + 31 * 86_400) }
        #expect(throws: PKIError.notYetValid) { try v.verify(pki.node, role: .node, at: pki.now - 3600) }
    }

    @Test func roleNameAndAddressBindingAreEnforced() throws {
        let pki = try TestPKI()
        let v = try CertificateVerifier(trustAnchor: pki.ca.certificate)
        #expect(throws: PKIError.wrongRole(expected: .nms, actual: .node)) { try v.verify(pki.node, role: .nms) }
        #expect(throws: PKIError.nameMismatch("init02.cyphonic.internal")) {
            try v.verify(pki.node, role: .node, name: "init02.cyphonic.internal")
        }
        #expect(throws: PKIError.addressMismatch("198.18.0.12")) {
            try v.verify(pki.node, role: .node, addresses: [IPAddress("198.18.0.12")!])
        }
        // A service certificate carries its role.
        let nmsKey = try X25519PrivateKey()
        let nms = try pki.ca.issue(
            .service(.nms, name: try FQDN("nms.cyphonic.internal"), serial: 7, validFrom: pki.now - 1, days: 1),
            publicKey: nmsKey.publicKey)
        try v.verify(nms, role: .nms, name: "nms.cyphonic.internal")
        #expect(throws: PKIError.wrongRole(expected: .node, actual: .nms)) { try v.verify(nms, role: .node) }
    }

    @Test func revokedSerialIsRefused() throws {
        let pki = try TestPKI()
        let crl = try RevocationList.sign(by: pki.ca, serials: [1001, 5, 5], number: 3, nextUpdate: pki.now + 86_400)
        #expect(crl.serials == [5, 1001])
        #expect(crl.number == 3)
        #expect(crl.contains(1001) && !crl.contains(1002))
        let v = try CertificateVerifier(trustAnchor: pki.ca.certificate, revocations: crl)
        #expect(throws: PKIError.revoked(serial: 1001)) { try v.verify(pki.node, role: .node) }
        let clean = try CertificateVerifier(
            trustAnchor: pki.ca.certificate,
            revocations: try RevocationList.sign(by: pki.ca, serials: [], number: 4, nextUpdate: pki.now + 86_400))
        try clean.verify(pki.node, role: .node)
    }

    @Test func revocationListRoundTripsAndOnlyTheCAMaySignIt() throws {
        let pki = try TestPKI()
        let other = try TestPKI()
        let crl = try RevocationList.sign(by: pki.ca, serials: [9, 10], number: 1, nextUpdate: pki.now + 60)
        let decoded = try RevocationList(der: crl.derBytes)
        #expect(decoded.serials == [9, 10])
        #expect(decoded.nextUpdate == pki.now + 60)
        #expect(try RevocationList(pem: crl.pemString).derBytes == crl.derBytes)
        try decoded.verify(issuedBy: pki.ca.certificate)
        #expect(throws: PKIError.self) { try decoded.verify(issuedBy: other.ca.certificate) }
        #expect(throws: PKIError.self) { try CertificateVerifier(trustAnchor: other.ca.certificate, revocations: decoded) }
        var tampered = crl.derBytes
        tampered[tampered.count - 5] ^= 1
        if let t = try? RevocationList(der: tampered) {
            #expect(throws: PKIError.self) { try t.verify(issuedBy: pki.ca.certificate) }
        }
        #expect(throws: PKIError.self) { try RevocationList(der: [0x30, 0x03, 1, 2, 3]) }
    }
}
