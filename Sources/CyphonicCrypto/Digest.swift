import CCyphonicOpenSSL

/// SHA-256 over libcrypto's EVP interface.
public enum SHA256 {
    public static let byteCount = 32

    /// The digest of `data`.
    public static func hash<C: Collection>(_ data: C) -> [UInt8] where C.Element == UInt8 {
        var h = SHA256Hasher()
        h.update(data)
        return h.finalize()
    }
}

/// An incremental SHA-256 computation. Single use: ``finalize()`` ends it.
public struct SHA256Hasher: ~Copyable {
    private let ctx: OpaquePointer

    public init() {
        // Allocation failure of a 200-byte context is treated as out-of-memory.
        guard let c = EVP_MD_CTX_new(), EVP_DigestInit_ex(c, EVP_sha256(), nil) == 1 else {
            fatalError("EVP_DigestInit_ex(SHA256) failed: out of memory")
        }
        ctx = c
    }

    public mutating func update<C: Collection>(_ data: C) where C.Element == UInt8 {
        let ok =
            data.withContiguousStorageIfAvailable { p in EVP_DigestUpdate(ctx, p.baseAddress, p.count) }
            ?? Array(data).withUnsafeBytes { p in EVP_DigestUpdate(ctx, p.baseAddress, p.count) }
        precondition(ok == 1, "EVP_DigestUpdate failed")
    }

    public consuming func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        precondition(EVP_DigestFinal_ex(ctx, &out, &len) == 1 && len == 32, "EVP_DigestFinal_ex failed")
        return out
    }

    deinit { EVP_MD_CTX_free(ctx) }
}

/// HMAC-SHA256 (RFC 2104) through `EVP_Q_mac`.
public enum HMACSHA256 {
    /// The 32-byte tag of `data` under `key`.
    public static func authenticate<K: Collection, D: Collection>(key: K, data: D) throws -> [UInt8]
    where K.Element == UInt8, D.Element == UInt8 {
        let k = Array(key)
        let d = Array(data)
        var out = [UInt8](repeating: 0, count: 32)
        var outLen = 0
        let r = k.withUnsafeBytes { kp in
            d.withUnsafeBytes { dp in
                EVP_Q_mac(
                    nil, "HMAC", nil, "SHA256", nil, kp.baseAddress ?? UnsafeRawPointer(bitPattern: 1), kp.count,
                    dp.baseAddress?.assumingMemoryBound(to: UInt8.self), dp.count, &out, 32, &outLen)
            }
        }
        guard r != nil, outLen == 32 else { throw CryptoError.fromQueue("EVP_Q_mac(HMAC-SHA256)") }
        return out
    }
}

/// HKDF with SHA-256 (RFC 5869) through libcrypto's HKDF key-derivation method.
public enum HKDF {
    /// Extract-then-expand: `outputLength` bytes of key material.
    public static func sha256(salt: [UInt8], ikm: [UInt8], info: [UInt8], outputLength: Int) throws -> [UInt8] {
        guard outputLength > 0, outputLength <= 255 * 32 else { throw CryptoError.invalidLength("HKDF output \(outputLength)") }
        let ctx = try checkNotNil(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nil), "EVP_PKEY_CTX_new_id(HKDF)")
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_derive_init(ctx), "EVP_PKEY_derive_init(HKDF)")
        try check(EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()), "EVP_PKEY_CTX_set_hkdf_md")
        // A zero-length salt means HashLen zeros (RFC 5869 §2.2); pass it explicitly.
        let s = salt.isEmpty ? [UInt8](repeating: 0, count: 32) : salt
        try check(EVP_PKEY_CTX_set1_hkdf_salt(ctx, s, Int32(s.count)), "EVP_PKEY_CTX_set1_hkdf_salt")
        // A zero-length input key (Noise's Split) must still come with a non-null pointer.
        let k = ikm.isEmpty ? [UInt8(0)] : ikm
        try check(EVP_PKEY_CTX_set1_hkdf_key(ctx, k, Int32(ikm.count)), "EVP_PKEY_CTX_set1_hkdf_key")
        if !info.isEmpty {
            try check(EVP_PKEY_CTX_add1_hkdf_info(ctx, info, Int32(info.count)), "EVP_PKEY_CTX_add1_hkdf_info")
        }
        var out = [UInt8](repeating: 0, count: outputLength)
        var len = outputLength
        try check(EVP_PKEY_derive(ctx, &out, &len), "EVP_PKEY_derive(HKDF)")
        guard len == outputLength else { throw CryptoError.invalidLength("HKDF produced \(len)") }
        return out
    }
}
