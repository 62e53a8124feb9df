import CyphonicCore
import CyphonicCrypto
import Testing

@testable import CyphonicPKI

@Suite struct CertificateTests {
    @Test func issuedNodeCertificateSaysWhatTheTemplateSaid() throws {
        let pki = try TestPKI()
        let cert = pki.node
        #expect(cert.commonName == "init01.cyphonic.internal")
        #expect(cert.issuerCommonName == "CYPHONIC Root CA")
        #expect(cert.role == .node)
        #expect(cert.serial == 1001)
        #expect(cert.dnsNames == ["init01.cyphonic.internal"])
        #expect(cert.ipAddresses == [pki.v4, pki.v6])
        #expect(cert.x25519PublicKey == pki.nodeKey.publicKey)
        #expect(cert.ed25519PublicKey == nil)
        #expect(!cert.isCA)
        #expect(cert.notBefore == pki.now - 60)
        #expect(cert.notAfter == pki.now - 60 + 30 * 86_400)
        #expect(pki.ca.certificate.isCA)
        #expect(pki.ca.certificate.role == .ca)
        #expect(pki.ca.certificate.ed25519PublicKey == pki.ca.key.publicKey)
    }

    @Test func derAndPEMRoundTrip() throws {
        let pki = try TestPKI()
        #expect(try Certificate(der: pki.node.derBytes) == pki.node)
        #expect(try Certificate(pem: pki.node.pemString) == pki.node)
        #expect(pki.node.pemString.hasPrefix("-----BEGIN CERTIFICATE-----"))
        let bundle = try Certificate.all(pem: pki.node.pemString + pki.ca.certificate.pemString)
        #expect(bundle == [pki.node, pki.ca.certificate])
        #expect(pki.node.sha256Fingerprint.count == 32)
    }

    @Test func malformedInputIsATypedError() throws {
        let der = try TestPKI().node.derBytes
        #expect(throws: PKIError.self) { try Certificate(der: []) }
        #expect(throws: PKIError.self) { try Certificate(der: Array(der.prefix(der.count / 2))) }
        #expect(throws: PKIError.self) { try Certificate(der: der + [0]) }
        #expect(throws: PKIError.self) { try Certificate(der: try SecureRandom.bytes(300)) }
        #expect(throws: PKIError.self) { try Certificate(pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n") }
        #expect(throws: PKIError.self) { try Certificate.all(pem: "nothing here") }
        var flipped = der
        flipped[flipped.count - 10] ^= 0xff  // inside the signature: parses, but never verifies
        if let cert = try? Certificate(der: flipped) {
            let verifier = try CertificateVerifier(trustAnchor: try TestPKI().ca.certificate)
            #expect(throws: PKIError.self) { try verifier.verify(cert, role: .node) }
        }
    }

    @Test func templatesRefuseWhatConfigSyntaxCouldMisread() throws {
        let pki = try TestPKI()
        var t = CertificateTemplate.node(fqdn: pki.fqdn, addresses: [pki.v4], serial: 5, validFrom: pki.now, days: 1)
        t.dnsNames = ["a,IP:1.2.3.4"]
        #expect(throws: PKIError.self) { try pki.ca.issue(t, publicKey: pki.nodeKey.publicKey) }
        t = CertificateTemplate.node(fqdn: pki.fqdn, addresses: [], serial: 0, validFrom: pki.now, days: 1)
        #expect(throws: PKIError.malformed("serial must be positive")) { try pki.ca.issue(t, publicKey: pki.nodeKey.publicKey) }
    }

    @Test func caKeyMustMatchItsCertificate() throws {
        let pki = try TestPKI()
        #expect(throws: PKIError.self) { try CertificateAuthority(certificate: pki.ca.certificate, key: try Ed25519PrivateKey()) }
        #expect(throws: PKIError.self) { try CertificateAuthority(certificate: pki.node, key: pki.ca.key) }
        #expect(try CertificateAuthority(certificate: pki.ca.certificate, key: pki.ca.key).certificate == pki.ca.certificate)
    }

    @Test func keyFilesRoundTrip() throws {
        let ed = try Ed25519PrivateKey()
        #expect(try KeyFiles.ed25519(pem: try KeyFiles.pem(ed)).publicKey == ed.publicKey)
        let x = try X25519PrivateKey()
        #expect(try KeyFiles.x25519(pem: try KeyFiles.pem(x)).publicKey == x.publicKey)
        #expect(throws: PKIError.self) { try KeyFiles.x25519(pem: try KeyFiles.pem(ed)) }
        #expect(throws: PKIError.self) { try KeyFiles.ed25519(pem: "garbage") }
    }
}
