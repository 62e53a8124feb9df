import CCyphonicOpenSSL

/// An Ed25519 verification key (32 bytes) in a libcrypto `EVP_PKEY`.
/// `@unchecked Sendable`: immutable after `init`; verification makes its own context.
public final class Ed25519PublicKey: @unchecked Sendable, Equatable {
    package let pkey: OpaquePointer
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        guard bytes.count == 32 else { throw CryptoError.invalidLength("Ed25519 public key \(bytes.count) bytes") }
        pkey = try bytes.withUnsafeBytes { (p) throws in
            try checkNotNil(
                EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, p.baseAddress?.assumingMemoryBound(to: UInt8.self), 32),
                "EVP_PKEY_new_raw_public_key(Ed25519)")
        }
        self.bytes = bytes
    }

    /// True iff `signature` is a valid Ed25519 signature of `message` under this key.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard signature.count == 64, let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, nil, nil, pkey) == 1 else {
            ERR_clear_error()
            return false
        }
        let ok = EVP_DigestVerify(ctx, signature, 64, message, message.count) == 1
        ERR_clear_error()
        return ok
    }

    public static func == (a: Ed25519PublicKey, b: Ed25519PublicKey) -> Bool { a.bytes == b.bytes }

    deinit { EVP_PKEY_free(pkey) }
}

/// An Ed25519 signing key (the root CA's). `@unchecked Sendable`: immutable after
/// `init`; each signature uses its own digest context.
public final class Ed25519PrivateKey: @unchecked Sendable {
    package let pkey: OpaquePointer
    public let publicKey: Ed25519PublicKey

    /// A fresh key from the CSPRNG.
    public convenience init() throws {
        try self.init(seed: try SecureBytes.random(count: 32))
    }

    /// From the 32-byte seed (RFC 8032 private key).
    public init(seed: SecureBytes) throws {
        guard seed.count == 32 else { throw CryptoError.invalidLength("Ed25519 seed \(seed.count) bytes") }
        let key = try seed.withUnsafeBytes { (p) throws in
            try checkNotNil(
                EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, p.baseAddress?.assumingMemoryBound(to: UInt8.self), 32),
                "EVP_PKEY_new_raw_private_key(Ed25519)")
        }
        var pub = [UInt8](repeating: 0, count: 32)
        var len = 32
        guard EVP_PKEY_get_raw_public_key(key, &pub, &len) == 1 else {
            EVP_PKEY_free(key)
            throw CryptoError.fromQueue("EVP_PKEY_get_raw_public_key(Ed25519)")
        }
        pkey = key
        publicKey = try Ed25519PublicKey(bytes: pub)
    }

    /// The seed, for storing the key (file mode 0600).
    public var seed: SecureBytes {
        var out = [UInt8](repeating: 0, count: 32)
        var len = 32
        _ = EVP_PKEY_get_raw_private_key(pkey, &out, &len)
        defer { OPENSSL_cleanse(&out, 32) }
        return SecureBytes(out)
    }

    /// The 64-byte signature of `message`.
    public func signature(for message: [UInt8]) throws -> [UInt8] {
        let ctx = try checkNotNil(EVP_MD_CTX_new(), "EVP_MD_CTX_new")
        defer { EVP_MD_CTX_free(ctx) }
        try check(EVP_DigestSignInit(ctx, nil, nil, nil, pkey), "EVP_DigestSignInit(Ed25519)")
        var sig = [UInt8](repeating: 0, count: 64)
        var len = 64
        try check(EVP_DigestSign(ctx, &sig, &len, message, message.count), "EVP_DigestSign(Ed25519)")
        return sig
    }

    deinit { EVP_PKEY_free(pkey) }
}
