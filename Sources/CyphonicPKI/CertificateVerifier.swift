import CCyphonicOpenSSL
import CyphonicCore

/// Checks a presented certificate the way every CYPHONIC endpoint must (DESIGN §3):
/// issued by the pinned CA (OpenSSL chain verification), inside its validity window,
/// not on the CA's revocation list, of the expected role, and naming the FQDN and
/// virtual IPs it is presented for. `Sendable`; each call builds its own store.
public struct CertificateVerifier: Sendable {
    public let trustAnchor: Certificate
    public let revocations: RevocationList?

    /// `revocations`, when given, must be signed by `trustAnchor` (checked here).
    public init(trustAnchor: Certificate, revocations: RevocationList? = nil) throws(PKIError) {
        guard trustAnchor.isCA else { throw .malformed("trust anchor is not a CA certificate") }
        try revocations?.verify(issuedBy: trustAnchor)
        self.trustAnchor = trustAnchor
        self.revocations = revocations
    }

    /// Throws the first reason `certificate` is unacceptable at unix time `now`.
    public func verify(
        _ certificate: Certificate, role: CertificateRole, name: String? = nil,
        addresses: [IPAddress] = [], at now: Int64 = unixNow()
    ) throws(PKIError) {
        guard let store = X509_STORE_new() else { throw opensslError("X509_STORE_new") }
        defer { X509_STORE_free(store) }
        try pkiCheck(X509_STORE_add_cert(store, trustAnchor.x509), "X509_STORE_add_cert")
        guard let ctx = X509_STORE_CTX_new() else { throw opensslError("X509_STORE_CTX_new") }
        defer { X509_STORE_CTX_free(ctx) }
        try pkiCheck(X509_STORE_CTX_init(ctx, store, certificate.x509, nil), "X509_STORE_CTX_init")
        X509_STORE_CTX_set_time(ctx, 0, time_t(now))
        if X509_verify_cert(ctx) != 1 {
            let code = X509_STORE_CTX_get_error(ctx)
            ERR_clear_error()
            switch code {
            case X509_V_ERR_CERT_HAS_EXPIRED: throw .expired
            case X509_V_ERR_CERT_NOT_YET_VALID: throw .notYetValid
            default: throw .untrusted(String(cString: X509_verify_cert_error_string(Int(code))))
            }
        }
        // Revocation by serial against the CA-signed list checked in init.
        if let revocations, let serial = certificate.serial, revocations.contains(serial) {
            throw .revoked(serial: serial)
        }
        guard certificate.role == role else { throw .wrongRole(expected: role, actual: certificate.role) }
        if let name {
            let ok = X509_check_host(certificate.x509, name, name.utf8.count, UInt32(X509_CHECK_FLAG_NO_WILDCARDS), nil)
            guard ok == 1 else { throw .nameMismatch(name) }
        }
        for address in addresses {
            let bytes = address.bytes
            guard X509_check_ip(certificate.x509, bytes, bytes.count, 0) == 1 else {
                throw .addressMismatch(address.description)
            }
        }
    }
}
