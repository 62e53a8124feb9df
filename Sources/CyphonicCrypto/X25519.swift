import CCyphonicOpenSSL

/// A Curve25519 public key for Diffie-Hellman: exactly 32 bytes.
public struct X25519PublicKey: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        guard bytes.count == 32 else { throw CryptoError.invalidLength("X25519 public key \(bytes.count) bytes") }
        self.bytes = bytes
    }

    public var description: String { "X25519:" + bytes.prefix(8).map { String($0, radix: 16) }.joined() }
}

/// An X25519 private key held in a libcrypto `EVP_PKEY`.
/// `@unchecked Sendable`: the `EVP_PKEY` is never modified after `init`, and libcrypto
/// allows concurrent derivations from one key (each creates its own `EVP_PKEY_CTX`).
public final class X25519PrivateKey: @unchecked Sendable {
    package let pkey: OpaquePointer
    public let publicKey: X25519PublicKey

    /// A fresh key from the CSPRNG.
    public convenience init() throws {
        let seed = try SecureBytes.random(count: 32)
        try self.init(rawRepresentation: seed)
    }

    /// From the 32-byte private scalar (clamped by libcrypto as RFC 7748 says).
    public init(rawRepresentation raw: SecureBytes) throws {
        guard raw.count == 32 else { throw CryptoError.invalidLength("X25519 private key \(raw.count) bytes") }
        pkey = try raw.withUnsafeBytes { (p) throws in
            try checkNotNil(
                EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, p.baseAddress?.assumingMemoryBound(to: UInt8.self), 32),
                "EVP_PKEY_new_raw_private_key(X25519)")
        }
        var pub = [UInt8](repeating: 0, count: 32)
        var len = 32
        guard EVP_PKEY_get_raw_public_key(pkey, &pub, &len) == 1, len == 32 else {
            EVP_PKEY_free(pkey)
            throw CryptoError.fromQueue("EVP_PKEY_get_raw_public_key(X25519)")
        }
        publicKey = try X25519PublicKey(bytes: pub)
    }

    public convenience init(rawRepresentation raw: [UInt8]) throws {
        try self.init(rawRepresentation: SecureBytes(raw))
    }

    /// The private scalar, for storing the key (file mode 0600).
    public var rawRepresentation: SecureBytes {
        var out = [UInt8](repeating: 0, count: 32)
        var len = 32
        _ = EVP_PKEY_get_raw_private_key(pkey, &out, &len)
        defer { OPENSSL_cleanse(&out, 32) }
        return SecureBytes(out)
    }

    /// The shared secret with `peer`. Throws ``CryptoError/weakPublicKey`` for a
    /// low-order peer key (all-zero result).
    public func sharedSecret(with peer: X25519PublicKey) throws -> SecureBytes {
        let peerKey = try peer.bytes.withUnsafeBytes { (p) throws in
            try checkNotNil(
                EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, p.baseAddress?.assumingMemoryBound(to: UInt8.self), 32),
                "EVP_PKEY_new_raw_public_key(X25519)")
        }
        defer { EVP_PKEY_free(peerKey) }
        let ctx = try checkNotNil(EVP_PKEY_CTX_new(pkey, nil), "EVP_PKEY_CTX_new")
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_derive_init(ctx), "EVP_PKEY_derive_init")
        try check(EVP_PKEY_derive_set_peer(ctx, peerKey), "EVP_PKEY_derive_set_peer")
        var out = [UInt8](repeating: 0, count: 32)
        var len = 32
        defer { OPENSSL_cleanse(&out, 32) }
        guard EVP_PKEY_derive(ctx, &out, &len) == 1, len == 32 else {
            ERR_clear_error()
            // libcrypto refuses the all-zero result of a low-order point.
            throw CryptoError.weakPublicKey
        }
        return SecureBytes(out)
    }

    deinit { EVP_PKEY_free(pkey) }
}
