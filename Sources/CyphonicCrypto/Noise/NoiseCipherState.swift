/// Noise CipherState (spec §5.1): a key `k` (or none) and a 64-bit nonce `n`.
/// Not thread-safe: one owner at a time.
public final class NoiseCipherState {
    public let algorithm: AEADAlgorithm
    public private(set) var key: AEADKey?
    /// The next nonce. 2^64-1 is reserved and never used.
    public var nonce: UInt64 = 0

    public init(algorithm: AEADAlgorithm) { self.algorithm = algorithm }

    public var hasKey: Bool { key != nil }

    func initializeKey<C: Collection>(_ k: C) throws where C.Element == UInt8 {
        key = try AEADKey(algorithm, key: k)
        nonce = 0
    }

    /// ENCRYPT(k, n++, ad, plaintext), or the plaintext itself when there is no key.
    public func encrypt(ad: [UInt8], plaintext: [UInt8]) throws -> [UInt8] {
        guard let key else { return plaintext }
        guard nonce != UInt64.max else { throw CryptoError.nonceExhausted }
        let out = try key.seal(nonce: nonce, aad: ad, plaintext: plaintext)
        nonce += 1
        return out
    }

    /// DECRYPT(k, n++, ad, ciphertext); the nonce advances only on success.
    public func decrypt(ad: [UInt8], ciphertext: [UInt8]) throws -> [UInt8] {
        guard let key else { return ciphertext }
        guard nonce != UInt64.max else { throw CryptoError.nonceExhausted }
        let out = try key.open(nonce: nonce, aad: ad, ciphertext: ciphertext)
        nonce += 1
        return out
    }

    /// REKEY (spec §4.2): k = first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zeros).
    public func rekey() throws {
        guard let key else { return }
        let next = try key.seal(nonce: UInt64.max, aad: [], plaintext: [UInt8](repeating: 0, count: 32))
        self.key = try AEADKey(algorithm, key: next.prefix(32))
    }
}

/// Noise SymmetricState (spec §5.2): chaining key, handshake hash and a CipherState.
struct NoiseSymmetricState {
    private(set) var ck: SecureBytes
    private(set) var h: [UInt8]
    private var cipherState: NoiseCipherState
    var cipher: NoiseCipherState { cipherState }

    init(protocolName: String, algorithm: AEADAlgorithm) {
        let name = Array(protocolName.utf8)
        h = name.count <= 32 ? name + [UInt8](repeating: 0, count: 32 - name.count) : SHA256.hash(name)
        ck = SecureBytes(h)
        cipherState = NoiseCipherState(algorithm: algorithm)
    }

    mutating func mixKey(_ input: SecureBytes) throws {
        var salt = ck.bytes
        var ikm = input.bytes
        var out = try HKDF.sha256(salt: salt, ikm: ikm, info: [], outputLength: 64)
        defer {
            // Every transient copy of key material is wiped, not left to the allocator.
            salt.secureWipe()
            ikm.secureWipe()
            out.secureWipe()
        }
        ck = SecureBytes(out[0..<32])
        try cipher.initializeKey(out[32..<64])
    }

    /// An independent copy (its own cipher state), to roll a failed read back to.
    func copy() throws -> NoiseSymmetricState {
        var c = self
        c.ck = SecureBytes(ck.bytes)
        let cs = NoiseCipherState(algorithm: cipher.algorithm)
        if let key = cipher.key { try key.keyBytes.withUnsafeBytes { (k) throws in try cs.initializeKey(k) } }
        cs.nonce = cipher.nonce
        c.cipherState = cs
        return c
    }

    mutating func mixHash(_ data: [UInt8]) {
        var hasher = SHA256Hasher()
        hasher.update(h)
        hasher.update(data)
        h = hasher.finalize()
    }

    mutating func encryptAndHash(_ plaintext: [UInt8]) throws -> [UInt8] {
        let c = try cipher.encrypt(ad: h, plaintext: plaintext)
        mixHash(c)
        return c
    }

    mutating func decryptAndHash(_ ciphertext: [UInt8]) throws -> [UInt8] {
        let p = try cipher.decrypt(ad: h, ciphertext: ciphertext)
        mixHash(ciphertext)
        return p
    }

    /// Split (spec §5.2): the two transport CipherStates (initiator→responder first).
    func split() throws -> (NoiseCipherState, NoiseCipherState) {
        var salt = ck.bytes
        var out = try HKDF.sha256(salt: salt, ikm: [], info: [], outputLength: 64)
        defer {
            salt.secureWipe()
            out.secureWipe()
        }
        let c1 = NoiseCipherState(algorithm: cipher.algorithm)
        let c2 = NoiseCipherState(algorithm: cipher.algorithm)
        try c1.initializeKey(out[0..<32])
        try c2.initializeKey(out[32..<64])
        return (c1, c2)
    }
}
