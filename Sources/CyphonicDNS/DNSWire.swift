/// Appends big-endian fields to a byte array; it cannot fail (lengths are the caller's to check).
struct DNSWriter {
    private(set) var bytes: [UInt8]

    init(capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    var count: Int { bytes.count }
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }
    mutating func u32(_ v: UInt32) {
        u16(UInt16(truncatingIfNeeded: v >> 16))
        u16(UInt16(truncatingIfNeeded: v))
    }
    mutating func raw(_ data: [UInt8]) { bytes.append(contentsOf: data) }
    /// Overwrites the byte at `offset`, which the caller wrote before.
    mutating func set8(_ v: UInt8, at offset: Int) { bytes[offset] = v }
}

/// A bounds-checked big-endian cursor over a borrowed message: a read that would pass the
/// end throws the error it is given and leaves the offset where it was.
struct DNSCursor {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, offset: Int) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    mutating func skip(_ n: Int, or error: DNSParseError) throws(DNSParseError) {
        guard n >= 0, n <= remaining else { throw error }
        offset += n
    }

    mutating func u16(or error: DNSParseError) throws(DNSParseError) -> UInt16 {
        guard remaining >= 2 else { throw error }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func u32(or error: DNSParseError) throws(DNSParseError) -> UInt32 {
        guard remaining >= 4 else { throw error }
        let high = try u16(or: error)
        return UInt32(high) << 16 | UInt32(try u16(or: error))
    }
}
