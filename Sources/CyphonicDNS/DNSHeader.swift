/// The 12-byte message header (RFC 1035 §4.1.1), read from or written to fixed offsets.
/// Reading needs only 12 bytes and never fails past that; the flag accessors just mask bits.
package struct DNSHeader: Equatable, Sendable {
    package static let size = 12
    package static let qr: UInt16 = 0x8000
    package static let aa: UInt16 = 0x0400
    package static let tc: UInt16 = 0x0200
    package static let rd: UInt16 = 0x0100
    package static let ra: UInt16 = 0x0080
    package static let cd: UInt16 = 0x0010

    package var id: UInt16
    package var flags: UInt16
    package var questionCount: UInt16
    package var answerCount: UInt16
    package var authorityCount: UInt16
    package var additionalCount: UInt16

    package init(id: UInt16, flags: UInt16, counts: (UInt16, UInt16, UInt16, UInt16) = (0, 0, 0, 0)) {
        self.id = id
        self.flags = flags
        (questionCount, answerCount, authorityCount, additionalCount) = counts
    }

    /// The header at the start of `bytes`, nil if there are fewer than 12 bytes.
    package init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= Self.size else { return nil }
        func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
        self.init(id: u16(0), flags: u16(2), counts: (u16(4), u16(6), u16(8), u16(10)))
    }

    package var isResponse: Bool { flags & Self.qr != 0 }
    package var opcode: UInt8 { UInt8(truncatingIfNeeded: flags >> 11) & 0x0f }
    package var rcode: UInt8 { UInt8(truncatingIfNeeded: flags) & 0x0f }
    package func has(_ flag: UInt16) -> Bool { flags & flag != 0 }

    /// The 12 bytes, big-endian.
    package var bytes: [UInt8] {
        var w = DNSWriter(capacity: Self.size)
        for field in [id, flags, questionCount, answerCount, authorityCount, additionalCount] { w.u16(field) }
        return w.bytes
    }
}
