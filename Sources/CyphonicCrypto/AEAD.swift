import CCyphonicOpenSSL

/// The AEAD ciphers of the stack, with Noise's nonce convention: 96-bit nonce = 32 zero
/// bits followed by the 64-bit counter, big-endian for AES-GCM, little-endian for ChaChaPoly.
public enum AEADAlgorithm: String, Sendable, CaseIterable {
    case aes256gcm = "AESGCM"
    case chacha20poly1305 = "ChaChaPoly"

    public static let keyByteCount = 32
    public static let tagByteCount = 16

    var evpCipher: OpaquePointer? {
        switch self {
        case .aes256gcm: return EVP_aes_256_gcm()
        case .chacha20poly1305: return EVP_chacha20_poly1305()
        }
    }

    @inline(__always)
    func writeNonce(_ counter: UInt64, into nonce: inout (UInt64, UInt32)) {
        // Layout in memory: 4 zero bytes, then 8 counter bytes.
        nonce = (0, 0)
        withUnsafeMutableBytes(of: &nonce) { p in
            let c = self == .aes256gcm ? counter.bigEndian : counter.littleEndian
            p.storeBytes(of: c, toByteOffset: 4, as: UInt64.self)
        }
    }
}

/// One AEAD key with its libcrypto cipher contexts, created once and reused for every
/// packet: sealing and opening allocate nothing. Contract: an `AEADKey` is used by one
/// thread at a time (the contexts carry per-call state); give each worker its own
/// instance of the same key. The key bytes are wiped when the object is released.
public final class AEADKey {
    public let algorithm: AEADAlgorithm
    private let key: SecureBytes
    private var sealContext: OpaquePointer?
    private var openContext: OpaquePointer?

    /// A key of exactly 32 bytes.
    public init<C: Collection>(_ algorithm: AEADAlgorithm, key: C) throws where C.Element == UInt8 {
        guard key.count == AEADAlgorithm.keyByteCount else { throw CryptoError.invalidLength("AEAD key \(key.count) bytes") }
        self.algorithm = algorithm
        self.key = SecureBytes(key)
    }

    /// The raw key (Noise rekey, tests).
    public var keyBytes: SecureBytes { key }

    private func context(encrypt: Bool) throws -> OpaquePointer {
        if let c = encrypt ? sealContext : openContext { return c }
        let c = try checkNotNil(EVP_CIPHER_CTX_new(), "EVP_CIPHER_CTX_new")
        let ok = key.withUnsafeBytes { k in
            EVP_CipherInit_ex(
                c, algorithm.evpCipher, nil, k.baseAddress?.assumingMemoryBound(to: UInt8.self), nil,
                encrypt ? 1 : 0)
        }
        guard ok == 1 else {
            EVP_CIPHER_CTX_free(c)
            throw CryptoError.fromQueue("EVP_CipherInit_ex(\(algorithm.rawValue))")
        }
        if encrypt { sealContext = c } else { openContext = c }
        return c
    }

    /// Encrypts `buffer[0..<plaintextCount]` in place and writes the 16-byte tag right
    /// after it. `buffer` must hold at least `plaintextCount + 16` bytes. Returns the
    /// ciphertext length (`plaintextCount + 16`).
    @discardableResult
    public func seal(
        nonce counter: UInt64, aad: UnsafeRawBufferPointer, buffer: UnsafeMutableRawBufferPointer,
        plaintextCount: Int
    ) throws -> Int {
        guard plaintextCount >= 0, buffer.count >= plaintextCount + 16, plaintextCount <= Int(Int32.max) - 16 else {
            throw CryptoError.invalidLength("seal buffer \(buffer.count) for \(plaintextCount) bytes")
        }
        let ctx = try context(encrypt: true)
        var nonce: (UInt64, UInt32) = (0, 0)
        algorithm.writeNonce(counter, into: &nonce)
        var outLen: Int32 = 0
        let base = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let ok = withUnsafeBytes(of: &nonce) { n -> Bool in
            guard EVP_EncryptInit_ex(ctx, nil, nil, nil, n.baseAddress?.assumingMemoryBound(to: UInt8.self)) == 1
            else { return false }
            if aad.count > 0,
                EVP_EncryptUpdate(
                    ctx, nil, &outLen, aad.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    Int32(aad.count)) != 1
            {
                return false
            }
            if plaintextCount > 0, EVP_EncryptUpdate(ctx, base, &outLen, base, Int32(plaintextCount)) != 1 {
                return false
            }
            var finalLen: Int32 = 0
            guard EVP_EncryptFinal_ex(ctx, base.map { $0 + plaintextCount }, &finalLen) == 1 else { return false }
            return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, base.map { $0 + plaintextCount }) == 1
        }
        guard ok else { throw CryptoError.fromQueue("EVP_Encrypt(\(algorithm.rawValue))") }
        return plaintextCount + 16
    }

    /// Verifies and decrypts `buffer[0..<ciphertextCount]` (ciphertext then tag) in place.
    /// Returns the plaintext length. On a bad tag throws ``CryptoError/authenticationFailed``
    /// and the buffer content is unspecified.
    @discardableResult
    public func open(
        nonce counter: UInt64, aad: UnsafeRawBufferPointer, buffer: UnsafeMutableRawBufferPointer,
        ciphertextCount: Int
    ) throws -> Int {
        guard ciphertextCount >= 16, buffer.count >= ciphertextCount, ciphertextCount <= Int(Int32.max) else {
            throw CryptoError.invalidLength("open of \(ciphertextCount) bytes")
        }
        let ctx = try context(encrypt: false)
        let plainCount = ciphertextCount - 16
        var nonce: (UInt64, UInt32) = (0, 0)
        algorithm.writeNonce(counter, into: &nonce)
        var outLen: Int32 = 0
        let base = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
        var authFailed = false
        let ok = withUnsafeBytes(of: &nonce) { n -> Bool in
            guard EVP_DecryptInit_ex(ctx, nil, nil, nil, n.baseAddress?.assumingMemoryBound(to: UInt8.self)) == 1
            else { return false }
            if aad.count > 0,
                EVP_DecryptUpdate(
                    ctx, nil, &outLen, aad.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    Int32(aad.count)) != 1
            {
                return false
            }
            if plainCount > 0, EVP_DecryptUpdate(ctx, base, &outLen, base, Int32(plainCount)) != 1 { return false }
            guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, base.map { $0 + plainCount }) == 1 else {
                return false
            }
            var finalLen: Int32 = 0
            if EVP_DecryptFinal_ex(ctx, base.map { $0 + plainCount }, &finalLen) != 1 {
                authFailed = true
                return false
            }
            return true
        }
        if authFailed {
            ERR_clear_error()
            throw CryptoError.authenticationFailed
        }
        guard ok else { throw CryptoError.fromQueue("EVP_Decrypt(\(algorithm.rawValue))") }
        return plainCount
    }

    /// Convenience for small messages (handshakes, signaling): returns ciphertext || tag.
    public func seal(nonce: UInt64, aad: [UInt8], plaintext: [UInt8]) throws -> [UInt8] {
        var buf = plaintext + [UInt8](repeating: 0, count: 16)
        let n = plaintext.count
        try aad.withUnsafeBytes { (a) throws in
            try buf.withUnsafeMutableBytes { (b) throws in
                _ = try seal(nonce: nonce, aad: a, buffer: b, plaintextCount: n)
            }
        }
        return buf
    }

    /// Convenience for small messages: returns the plaintext.
    public func open(nonce: UInt64, aad: [UInt8], ciphertext: [UInt8]) throws -> [UInt8] {
        var buf = ciphertext
        let n = ciphertext.count
        let plain = try aad.withUnsafeBytes { (a) throws -> Int in
            try buf.withUnsafeMutableBytes { (b) throws -> Int in
                try open(nonce: nonce, aad: a, buffer: b, ciphertextCount: n)
            }
        }
        return Array(buf[0..<plain])
    }

    deinit {
        // EVP_CIPHER_CTX_free cleanses the expanded key schedule.
        EVP_CIPHER_CTX_free(sealContext)
        EVP_CIPHER_CTX_free(openContext)
    }
}
