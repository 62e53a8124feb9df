import CCyphonicOpenSSL

/// Secret bytes (keys, chaining values) in memory that this object alone owns and
/// that is wiped with `OPENSSL_cleanse` when the object is released or ``wipe()`` is
/// called. Immutable after creation apart from wiping, so sharing it is safe as long
/// as nobody wipes it while another thread reads it.
public final class SecureBytes: @unchecked Sendable {
    private let storage: UnsafeMutableRawBufferPointer

    /// Copies `bytes` into owned storage.
    public init<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        storage = .allocate(byteCount: max(bytes.count, 1), alignment: 16)
        count = bytes.count
        // Contiguous sources (arrays, buffers) are copied at once; others element by element.
        let copied: Bool? = bytes.withContiguousStorageIfAvailable { source in
            if let base = source.baseAddress { storage.baseAddress!.copyMemory(from: base, byteCount: source.count) }
            return true
        }
        if copied == nil { _ = storage.initializeMemory(as: UInt8.self, from: bytes) }
    }

    /// `count` fresh bytes from the CSPRNG.
    public static func random(count: Int) throws -> SecureBytes {
        let s = SecureBytes([UInt8](repeating: 0, count: count))
        try s.withUnsafeMutableBytes { (p) throws in try SecureRandom.fill(p) }
        return s
    }

    public let count: Int

    /// Read access to the secret; do not let the pointer escape.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// A copy of the secret as an array (tests and serialisation only).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Overwrites the secret with zeros now.
    public func wipe() { OPENSSL_cleanse(storage.baseAddress, storage.count) }

    /// Whether every byte is zero (true after ``wipe()``).
    public var isZero: Bool { withUnsafeBytes { $0.allSatisfy { $0 == 0 } } }

    deinit {
        wipe()
        storage.deallocate()
    }
}

extension Array where Element == UInt8 {
    /// Overwrites this array's bytes with zeros (for transient key copies that
    /// libcrypto's HKDF or a split handed back as a plain array).
    public mutating func secureWipe() {
        withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
    }
}
