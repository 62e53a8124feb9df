import CCyphonicOpenSSL

/// The CSPRNG: OpenSSL's `RAND_bytes` (seeded from the kernel). Thread-safe.
public enum SecureRandom {
    /// Fills `buffer` with random bytes.
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) throws {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        try check(RAND_bytes(base.assumingMemoryBound(to: UInt8.self), Int32(buffer.count)), "RAND_bytes")
    }

    /// `count` random bytes.
    public static func bytes(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { (p) throws in try fill(p) }
        return out
    }

    /// A uniformly random 32-bit value (session indices).
    public static func u32() throws -> UInt32 {
        try bytes(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// A uniformly random 64-bit value (serials, transaction ids).
    public static func u64() throws -> UInt64 {
        try bytes(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// Comparison whose running time does not depend on where two byte strings differ.
public enum ConstantTime {
    /// True iff `a` and `b` have the same length and bytes. Lengths are not secret.
    public static func equal<A: Collection, B: Collection>(_ a: A, _ b: B) -> Bool
    where A.Element == UInt8, B.Element == UInt8 {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        let x = Array(a)
        let y = Array(b)
        return x.withUnsafeBytes { p in y.withUnsafeBytes { q in CRYPTO_memcmp(p.baseAddress, q.baseAddress, x.count) == 0 } }
    }
}
