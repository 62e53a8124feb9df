import CCyphonicOpenSSL

/// A failure of the cryptographic layer. OpenSSL failures carry the name of the
/// libcrypto function that failed and the text of OpenSSL's error queue.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A libcrypto call failed.
    case openssl(function: String, reason: String)
    /// An AEAD tag did not verify: the data was altered or the key is wrong.
    case authenticationFailed
    /// A key, nonce or buffer had the wrong size; the string names it.
    case invalidLength(String)
    /// A DH result was all zeros (a low-order peer public key).
    case weakPublicKey
    /// A nonce counter reached its limit; the key must be replaced.
    case nonceExhausted

    public var description: String {
        switch self {
        case .openssl(let function, let reason): return "\(function) failed: \(reason)"
        case .authenticationFailed: return "AEAD authentication failed"
        case .invalidLength(let what): return "invalid length: \(what)"
        case .weakPublicKey: return "DH produced an all-zero result (low-order public key)"
        case .nonceExhausted: return "nonce counter exhausted"
        }
    }

    /// Captures and clears OpenSSL's thread-local error queue.
    package static func fromQueue(_ function: String) -> CryptoError {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            reasons.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return .openssl(function: function, reason: reasons.isEmpty ? "no error recorded" : reasons.joined(separator: "; "))
    }
}

/// Throws the OpenSSL error queue unless `result` is 1 (libcrypto's success value).
@inline(__always)
package func check(_ result: Int32, _ function: String) throws {
    if result != 1 { throw CryptoError.fromQueue(function) }
}

/// Throws the OpenSSL error queue if `pointer` is nil.
@inline(__always)
package func checkNotNil<T>(_ pointer: T?, _ function: String) throws -> T {
    guard let p = pointer else { throw CryptoError.fromQueue(function) }
    return p
}
