/// Fixed-size byte strings held inline (keys, tokens) instead of in arrays, for records
/// kept by the hundred thousand (no allocation each). Shorter input is zero-padded.
public enum FixedBytes {
    public static func simd32(_ b: [UInt8]) -> SIMD32<UInt8> {
        var v = SIMD32<UInt8>()
        for i in 0..<min(32, b.count) { v[i] = b[i] }
        return v
    }

    public static func simd16(_ b: [UInt8]) -> SIMD16<UInt8> {
        var v = SIMD16<UInt8>()
        for i in 0..<min(16, b.count) { v[i] = b[i] }
        return v
    }

    public static func array<V: SIMD>(_ v: V) -> [UInt8] where V.Scalar == UInt8 { (0..<V.scalarCount).map { v[$0] } }
}
