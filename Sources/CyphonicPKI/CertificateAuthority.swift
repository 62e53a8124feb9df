import CCyphonicOpenSSL
import CyphonicCore
import CyphonicCrypto

/// The CYPHONIC root CA: an Ed25519 key and its self-signed certificate. Issues node and
/// service certificates (X25519 keys) and signs revocation lists. `Sendable`: both parts
/// are immutable; issuing builds a new `X509` per call.
public final class CertificateAuthority: Sendable {
    public let certificate: Certificate
    public let key: Ed25519PrivateKey

    /// Pairs an existing CA certificate with its key; throws if they do not match.
    public init(certificate: Certificate, key: Ed25519PrivateKey) throws(PKIError) {
        guard let pub = certificate.ed25519PublicKey, pub == key.publicKey else {
            throw .wrongKeyType("the CA key does not match the CA certificate")
        }
        guard certificate.isCA else { throw .malformed("certificate is not a CA certificate") }
        self.certificate = certificate
        self.key = key
    }

    /// Creates a new self-signed root: CN `name`, valid for `days` from `validFrom`.
    public static func create(
        name: String, key: Ed25519PrivateKey, serial: UInt64, validFrom: Int64 = unixNow(),
        days: Int = 3650
    ) throws(PKIError) -> CertificateAuthority {
        var template = CertificateTemplate(
            role: .ca, commonName: name, serial: serial, notBefore: validFrom,
            notAfter: validFrom + Int64(days) * 86_400)
        template.dnsNames = []
        let x509 = try build(
            template, publicKey: key.pkey, issuer: nil, signer: key,
            extensions: [
                (NID_basic_constraints, "critical,CA:TRUE"),
                (NID_key_usage, "critical,keyCertSign,cRLSign"),
                (NID_subject_key_identifier, "hash"),
            ])
        return try CertificateAuthority(certificate: Certificate(owning: x509), key: key)
    }

    /// Issues a certificate binding `publicKey` to what `template` says.
    public func issue(_ template: CertificateTemplate, publicKey: X25519PublicKey) throws(PKIError) -> Certificate {
        try issue(template, rawKey: publicKey.bytes, type: EVP_PKEY_X25519, usage: "critical,keyAgreement")
    }

    /// Issues a certificate for a service's Ed25519 signing key (the NMS signs route
    /// authorizations with it; key usage digitalSignature only).
    public func issue(_ template: CertificateTemplate, signingKey: Ed25519PublicKey) throws(PKIError) -> Certificate {
        guard template.role == .nms || template.role == .trs else { throw .wrongRole(expected: .nms, actual: template.role) }
        return try issue(template, rawKey: signingKey.bytes, type: EVP_PKEY_ED25519, usage: "critical,digitalSignature")
    }

    private func issue(_ template: CertificateTemplate, rawKey: [UInt8], type: Int32, usage: String) throws(PKIError) -> Certificate {
        guard template.role != .ca else { throw .wrongRole(expected: .node, actual: .ca) }
        let pkey: OpaquePointer? = rawKey.withUnsafeBytes {
            EVP_PKEY_new_raw_public_key(type, nil, $0.baseAddress?.assumingMemoryBound(to: UInt8.self), 32)
        }
        guard let pkey else { throw opensslError("EVP_PKEY_new_raw_public_key") }
        defer { EVP_PKEY_free(pkey) }
        var extensions: [(Int32, String)] = [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, usage),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid:always"),
        ]
        if let san = template.subjectAltNameConfig { extensions.append((NID_subject_alt_name, san)) }
        let x509 = try Self.build(template, publicKey: pkey, issuer: certificate, signer: key, extensions: extensions)
        return Certificate(owning: x509)
    }

    /// A random positive 63-bit serial.
    public static func randomSerial() throws -> UInt64 { (try SecureRandom.u64() >> 1) | 1 }

    private static func build(
        _ t: CertificateTemplate, publicKey: OpaquePointer, issuer: Certificate?,
        signer: Ed25519PrivateKey, extensions: [(Int32, String)]
    ) throws(PKIError) -> OpaquePointer {
        try t.validate()
        guard let x = X509_new() else { throw opensslError("X509_new") }
        do throws(PKIError) {
            try pkiCheck(X509_set_version(x, 2), "X509_set_version")
            let serial = try asn1Integer(t.serial)
            defer { ASN1_INTEGER_free(serial) }
            try pkiCheck(X509_set_serialNumber(x, serial), "X509_set_serialNumber")
            let before = try asn1Time(t.notBefore)
            let after = try asn1Time(t.notAfter)
            defer {
                ASN1_TIME_free(before)
                ASN1_TIME_free(after)
            }
            try pkiCheck(X509_set1_notBefore(x, before), "X509_set1_notBefore")
            try pkiCheck(X509_set1_notAfter(x, after), "X509_set1_notAfter")

            guard let subject = X509_NAME_new() else { throw opensslError("X509_NAME_new") }
            defer { X509_NAME_free(subject) }
            var entries = [("O", "CYPHONIC"), ("OU", t.role.rawValue)]
            if let group = t.group { entries.append(("description", group)) }
            entries.append(("CN", t.commonName))
            for (field, value) in entries {
                try pkiCheck(
                    X509_NAME_add_entry_by_txt(subject, field, ccy_mbstring_utf8(), value, -1, -1, 0),
                    "X509_NAME_add_entry_by_txt(\(field))")
            }
            try pkiCheck(X509_set_subject_name(x, subject), "X509_set_subject_name")
            let issuerName = issuer.map { X509_get_subject_name($0.x509) } ?? subject
            try pkiCheck(X509_set_issuer_name(x, issuerName), "X509_set_issuer_name")
            try pkiCheck(X509_set_pubkey(x, publicKey), "X509_set_pubkey")
            for (nid, value) in extensions {
                try pkiCheck(ccy_x509_add_ext(x, issuer?.x509 ?? x, nid, value), "X509V3_EXT_conf_nid(\(value))")
            }
            // Ed25519 signs the whole TBS: no separate digest.
            guard X509_sign(x, signer.pkey, nil) > 0 else { throw opensslError("X509_sign") }
            return x
        } catch {
            X509_free(x)
            throw error
        }
    }
}
