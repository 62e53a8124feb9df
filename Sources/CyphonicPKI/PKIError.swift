/// Why a certificate, revocation list or key was refused. Every parse and every
/// verification reports one of these; none traps.
public enum PKIError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not a well-formed certificate, CRL or key; the string says which.
    case malformed(String)
    /// The chain does not lead to the trusted CA (OpenSSL's verification reason).
    case untrusted(String)
    case expired
    case notYetValid
    case revoked(serial: UInt64)
    /// The certificate's role is not the one required.
    case wrongRole(expected: CertificateRole, actual: CertificateRole?)
    /// The certificate does not name the FQDN it was presented for.
    case nameMismatch(String)
    /// The certificate does not name the virtual IP it was presented for.
    case addressMismatch(String)
    /// The certificate's key is not of the type required.
    case wrongKeyType(String)
    /// The revocation list's signature or issuer is not the CA's.
    case badRevocationList(String)
    /// A libcrypto call failed while building or checking.
    case openssl(function: String, reason: String)

    public var description: String {
        switch self {
        case .malformed(let s): return "malformed: \(s)"
        case .untrusted(let s): return "not issued by the trusted CA: \(s)"
        case .expired: return "certificate has expired"
        case .notYetValid: return "certificate is not yet valid"
        case .revoked(let serial): return "certificate \(serial) is revoked"
        case .wrongRole(let e, let a): return "certificate role is \(a.map { $0.rawValue } ?? "none"), expected \(e.rawValue)"
        case .nameMismatch(let n): return "certificate does not name \(n)"
        case .addressMismatch(let a): return "certificate does not name address \(a)"
        case .wrongKeyType(let s): return "wrong key type: \(s)"
        case .badRevocationList(let s): return "revocation list refused: \(s)"
        case .openssl(let f, let r): return "\(f) failed: \(r)"
        }
    }
}

/// What a certificate is for; carried as the subject's organizational unit (OU).
public enum CertificateRole: String, Sendable, CaseIterable {
    case ca, node, `as`, nms, trs
}
