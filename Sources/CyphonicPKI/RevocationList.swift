import CCyphonicOpenSSL
import CyphonicCrypto

/// A signed X.509 v2 CRL listing revoked certificate serials, with a monotonically
/// increasing CRL number so holders can tell newer lists from older ones.
/// `@unchecked Sendable`: the wrapped `X509_CRL` is never modified after `init`.
public final class RevocationList: @unchecked Sendable, CustomStringConvertible {
    package let crl: OpaquePointer

    init(owning crl: OpaquePointer) { self.crl = crl }

    /// Parses DER; malformed input throws.
    public convenience init(der: [UInt8]) throws(PKIError) {
        guard !der.isEmpty, der.count <= 4 * 1024 * 1024 else { throw .malformed("CRL of \(der.count) bytes") }
        let parsed: OpaquePointer? = der.withUnsafeBytes { raw in
            var p: UnsafePointer<UInt8>? = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            return d2i_X509_CRL(nil, &p, raw.count)
        }
        guard let parsed else {
            ERR_clear_error()
            throw .malformed("not a DER CRL")
        }
        self.init(owning: parsed)
    }

    public convenience init(pem: String) throws(PKIError) {
        let parsed = try withReadBIO(Array(pem.utf8)) { bio in PEM_read_bio_X509_CRL(bio, nil, nil, nil) }
        guard let parsed else {
            ERR_clear_error()
            throw .malformed("no PEM CRL")
        }
        self.init(owning: parsed)
    }

    /// Signs a CRL for `serials` with the CA key.
    public static func sign(
        by ca: CertificateAuthority, serials: [UInt64], number: UInt64, thisUpdate: Int64 = unixNow(),
        nextUpdate: Int64
    ) throws(PKIError) -> RevocationList {
        guard let crl = X509_CRL_new() else { throw opensslError("X509_CRL_new") }
        do throws(PKIError) {
            try pkiCheck(X509_CRL_set_version(crl, 1), "X509_CRL_set_version")
            try pkiCheck(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca.certificate.x509)), "X509_CRL_set_issuer_name")
            let last = try asn1Time(thisUpdate)
            let next = try asn1Time(nextUpdate)
            defer {
                ASN1_TIME_free(last)
                ASN1_TIME_free(next)
            }
            try pkiCheck(X509_CRL_set1_lastUpdate(crl, last), "X509_CRL_set1_lastUpdate")
            try pkiCheck(X509_CRL_set1_nextUpdate(crl, next), "X509_CRL_set1_nextUpdate")
            for serial in Set(serials).sorted() {
                guard let entry = X509_REVOKED_new() else { throw opensslError("X509_REVOKED_new") }
                let s = try asn1Integer(serial)
                defer { ASN1_INTEGER_free(s) }
                guard X509_REVOKED_set_serialNumber(entry, s) == 1, X509_REVOKED_set_revocationDate(entry, last) == 1,
                    X509_CRL_add0_revoked(crl, entry) == 1
                else {
                    X509_REVOKED_free(entry)
                    throw opensslError("X509_CRL_add0_revoked")
                }
            }
            try pkiCheck(X509_CRL_sort(crl), "X509_CRL_sort")
            let n = try asn1Integer(number)
            defer { ASN1_INTEGER_free(n) }
            try pkiCheck(X509_CRL_add1_ext_i2d(crl, NID_crl_number, n, 0, 0), "X509_CRL_add1_ext_i2d(crlNumber)")
            try pkiCheck(
                ccy_crl_add_ext(crl, ca.certificate.x509, NID_authority_key_identifier, "keyid:always"),
                "X509V3_EXT_conf_nid(authorityKeyIdentifier)")
            guard X509_CRL_sign(crl, ca.key.pkey, nil) > 0 else { throw opensslError("X509_CRL_sign") }
            return RevocationList(owning: crl)
        } catch {
            X509_CRL_free(crl)
            throw error
        }
    }

    public var derBytes: [UInt8] {
        var p: UnsafeMutablePointer<UInt8>?
        let n = i2d_X509_CRL(crl, &p)
        guard n > 0, let p else { return [] }
        defer { ccy_openssl_free(p) }
        return Array(UnsafeBufferPointer(start: p, count: Int(n)))
    }

    public var pemString: String {
        String(decoding: (try? writeBIO({ PEM_write_bio_X509_CRL($0, crl) }, "PEM_write_bio_X509_CRL")) ?? [], as: UTF8.self)
    }

    /// The CRL number (0 if absent).
    public var number: UInt64 {
        guard let n = X509_CRL_get_ext_d2i(crl, NID_crl_number, nil, nil) else { return 0 }
        let i = n.assumingMemoryBound(to: ASN1_INTEGER.self)
        defer { ASN1_INTEGER_free(i) }
        var v: UInt64 = 0
        return ASN1_INTEGER_get_uint64(&v, i) == 1 ? v : 0
    }

    public var thisUpdate: Int64? { unixTime(X509_CRL_get0_lastUpdate(crl)) }
    public var nextUpdate: Int64? { unixTime(X509_CRL_get0_nextUpdate(crl)) }

    /// Every revoked serial, ascending.
    public var serials: [UInt64] {
        (0..<ccy_crl_revoked_count(crl)).compactMap { i in
            var v: UInt64 = 0
            guard let entry = ccy_crl_revoked_at(crl, i),
                ASN1_INTEGER_get_uint64(&v, X509_REVOKED_get0_serialNumber(entry)) == 1
            else { return nil }
            return v
        }
    }

    /// Whether `serial` is listed.
    public func contains(_ serial: UInt64) -> Bool {
        guard let s = try? asn1Integer(serial) else { return false }
        defer { ASN1_INTEGER_free(s) }
        var entry: OpaquePointer?
        return X509_CRL_get0_by_serial(crl, &entry, s) == 1
    }

    /// Checks the signature and issuer against `ca`.
    public func verify(issuedBy ca: Certificate) throws(PKIError) {
        guard X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca.x509)) == 0 else {
            throw .badRevocationList("issuer is not \(ca.commonName ?? "the CA")")
        }
        guard let key = X509_get0_pubkey(ca.x509), X509_CRL_verify(crl, key) == 1 else {
            ERR_clear_error()
            throw .badRevocationList("signature does not verify")
        }
    }

    public var description: String { "RevocationList(#\(number), \(serials.count) serials)" }

    deinit { X509_CRL_free(crl) }
}
