import CCyphonicOpenSSL

/// Slow salted hashing of secrets that must be stored (enrolment tokens): PBKDF2 with
/// HMAC-SHA256 (RFC 8018) through libcrypto's `PKCS5_PBKDF2_HMAC`. Verification compares
/// in constant time.
public enum PasswordHash {
    /// Iterations for new hashes: ~10 ms of one core here, so guessing is slow while a
    /// legitimate login stays fast.
    public static let defaultIterations = 60_000

    /// The 32-byte PBKDF2-HMAC-SHA256 of `secret`.
    public static func derive(secret: [UInt8], salt: [UInt8], iterations: Int = defaultIterations) throws -> [UInt8] {
        guard iterations > 0, !salt.isEmpty else { throw CryptoError.invalidLength("PBKDF2 salt or iterations") }
        var out = [UInt8](repeating: 0, count: 32)
        // A non-null pointer even for an empty secret.
        let padded = secret + [0]
        let ok = padded.withUnsafeBytes { s in
            PKCS5_PBKDF2_HMAC(
                s.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(secret.count), salt,
                Int32(salt.count), Int32(iterations), EVP_sha256(), 32, &out)
        }
        try check(ok, "PKCS5_PBKDF2_HMAC")
        return out
    }

    /// Whether `secret` hashes to `expected` under `salt` (constant-time comparison).
    public static func verify(secret: [UInt8], salt: [UInt8], iterations: Int, expected: [UInt8]) -> Bool {
        guard let actual = try? derive(secret: secret, salt: salt, iterations: iterations) else { return false }
        return ConstantTime.equal(actual, expected)
    }
}
