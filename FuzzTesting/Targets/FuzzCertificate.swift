// libFuzzer target: the certificate and revocation-list parsers and every accessor the
// stack reads, plus verification against a fixed CA. Never a trap, whatever the DER.
import CyphonicCore
import CyphonicCrypto
import CyphonicPKI

private let ca = try! CertificateAuthority.create(name: "Fuzz CA", key: try! Ed25519PrivateKey(), serial: 1)
private let verifier = try! CertificateVerifier(trustAnchor: ca.certificate)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCertificate(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let der = Array(UnsafeBufferPointer(start: data, count: size))
    if let cert = try? Certificate(der: der) {
        _ = (cert.serial, cert.commonName, cert.issuerCommonName, cert.role, cert.notBefore, cert.notAfter)
        _ = (cert.dnsNames, cert.ipAddresses, cert.isCA, cert.x25519PublicKey, cert.ed25519PublicKey)
        _ = (cert.pemString, cert.sha256Fingerprint, cert.description)
        _ = try? verifier.verify(cert, role: .node, name: "init01.cyphonic.internal", addresses: [IPAddress("198.18.0.1")!])
    }
    if let crl = try? RevocationList(der: der) {
        _ = (crl.number, crl.serials, crl.thisUpdate, crl.nextUpdate, crl.contains(1), crl.pemString)
        _ = try? crl.verify(issuedBy: ca.certificate)
    }
    _ = try? Certificate(pem: String(decoding: der, as: UTF8.self))
    return 0
}
