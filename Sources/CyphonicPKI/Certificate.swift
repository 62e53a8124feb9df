import CCyphonicOpenSSL
import CyphonicCore
import CyphonicCrypto

/// An X.509 v3 certificate of the CYPHONIC PKI, parsed once; its fields are read-only.
/// `@unchecked Sendable`: the wrapped `X509` is never modified after `init` and
/// libcrypto's read accessors are safe to call concurrently.
public final class Certificate: @unchecked Sendable, Equatable, CustomStringConvertible {
    package let x509: OpaquePointer

    /// Takes ownership of `x509`.
    init(owning x509: OpaquePointer) { self.x509 = x509 }

    /// Parses DER. Any malformed input throws ``PKIError/malformed(_:)``.
    public convenience init(der: [UInt8]) throws(PKIError) {
        guard !der.isEmpty, der.count <= 64 * 1024 else { throw .malformed("certificate of \(der.count) bytes") }
        let parsed: OpaquePointer? = der.withUnsafeBytes { raw in
            var p: UnsafePointer<UInt8>? = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            return d2i_X509(nil, &p, raw.count)
        }
        guard let parsed else {
            ERR_clear_error()
            throw .malformed("not a DER certificate")
        }
        self.init(owning: parsed)
        // Reject trailing garbage: re-encoding must give back exactly the input.
        guard derBytes == der else { throw .malformed("trailing or non-canonical bytes") }
    }

    /// Parses the first PEM "CERTIFICATE" block of `pem`.
    public convenience init(pem: String) throws(PKIError) {
        let parsed = try withReadBIO(Array(pem.utf8)) { bio in PEM_read_bio_X509(bio, nil, nil, nil) }
        guard let parsed else {
            ERR_clear_error()
            throw .malformed("no PEM certificate")
        }
        self.init(owning: parsed)
    }

    /// Parses every PEM certificate in `pem` (a bundle).
    public static func all(pem: String) throws(PKIError) -> [Certificate] {
        var out: [Certificate] = []
        try withReadBIO(Array(pem.utf8)) { (bio) throws(PKIError) in
            while let x = PEM_read_bio_X509(bio, nil, nil, nil) { out.append(Certificate(owning: x)) }
        }
        ERR_clear_error()  // the end of the bundle reads as "no start line"
        guard !out.isEmpty else { throw .malformed("no PEM certificate") }
        return out
    }

    public var derBytes: [UInt8] {
        var p: UnsafeMutablePointer<UInt8>?
        let n = i2d_X509(x509, &p)
        guard n > 0, let p else { return [] }
        defer { ccy_openssl_free(p) }
        return Array(UnsafeBufferPointer(start: p, count: Int(n)))
    }

    public var pemString: String {
        let bytes = (try? writeBIO({ PEM_write_bio_X509($0, x509) }, "PEM_write_bio_X509")) ?? []
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The serial number, or nil if it does not fit 64 bits (never for certificates we issue).
    public var serial: UInt64? {
        var v: UInt64 = 0
        guard let s = X509_get0_serialNumber(x509), ASN1_INTEGER_get_uint64(&v, s) == 1 else {
            ERR_clear_error()
            return nil
        }
        return v
    }

    private func nameEntry(_ name: OpaquePointer?, _ nid: Int32) -> String? {
        guard let name else { return nil }
        var buf = [CChar](repeating: 0, count: 256)
        let n = X509_NAME_get_text_by_NID(name, nid, &buf, Int32(buf.count))
        guard n >= 0 else { return nil }
        return String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Subject common name: the FQDN for nodes and services, the CA's name for the CA.
    public var commonName: String? { nameEntry(X509_get_subject_name(x509), NID_commonName) }
    /// The policy group of a node (subject `description`), nil for none.
    public var group: String? { nameEntry(X509_get_subject_name(x509), NID_description) }
    public var issuerCommonName: String? { nameEntry(X509_get_issuer_name(x509), NID_commonName) }

    /// The role in the subject's OU, nil if absent or unknown.
    public var role: CertificateRole? {
        nameEntry(X509_get_subject_name(x509), NID_organizationalUnitName).flatMap(CertificateRole.init(rawValue:))
    }

    public var notBefore: Int64? { unixTime(X509_get0_notBefore(x509)) }
    public var notAfter: Int64? { unixTime(X509_get0_notAfter(x509)) }

    /// DNS names of the subject-alternative-name extension.
    public var dnsNames: [String] {
        subjectAltNames(GEN_DNS).map { String(decoding: $0, as: UTF8.self) }
    }

    /// IP addresses of the subject-alternative-name extension.
    public var ipAddresses: [IPAddress] { subjectAltNames(GEN_IPADD).compactMap { IPAddress(bytes: $0) } }

    private func subjectAltNames(_ type: Int32) -> [[UInt8]] {
        guard let names = ccy_x509_get_sans(x509) else {
            ERR_clear_error()
            return []
        }
        defer { ccy_sans_free(names) }
        var out: [[UInt8]] = []
        for i in 0..<ccy_sans_count(names) {
            var data: UnsafePointer<UInt8>?
            var length: Int32 = 0
            if ccy_sans_at(names, i, &data, &length) == type, let data, length >= 0 {
                out.append(Array(UnsafeBufferPointer(start: data, count: Int(length))))
            }
        }
        return out
    }

    /// True if basicConstraints says CA.
    public var isCA: Bool { X509_check_ca(x509) != 0 }

    /// The raw public key and its OpenSSL type id.
    private func rawPublicKey(ofType type: Int32) -> [UInt8]? {
        guard let key = X509_get0_pubkey(x509), EVP_PKEY_get_base_id(key) == type else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        var len = 32
        guard EVP_PKEY_get_raw_public_key(key, &out, &len) == 1, len == 32 else {
            ERR_clear_error()
            return nil
        }
        return out
    }

    /// The X25519 static key of a node or service certificate.
    public var x25519PublicKey: X25519PublicKey? {
        rawPublicKey(ofType: EVP_PKEY_X25519).flatMap { try? X25519PublicKey(bytes: $0) }
    }

    /// The Ed25519 key of a CA certificate.
    public var ed25519PublicKey: Ed25519PublicKey? {
        rawPublicKey(ofType: EVP_PKEY_ED25519).flatMap { try? Ed25519PublicKey(bytes: $0) }
    }

    /// SHA-256 of the DER encoding: the fingerprint a node may pin instead of the CA file.
    public var sha256Fingerprint: [UInt8] { SHA256.hash(derBytes) }

    public static func == (a: Certificate, b: Certificate) -> Bool { a.derBytes == b.derBytes }

    public var description: String {
        "Certificate(\(role?.rawValue ?? "?") \(commonName ?? "?") serial \(serial.map(String.init) ?? "?"))"
    }

    deinit { X509_free(x509) }
}
