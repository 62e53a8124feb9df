/// Why a byte string could not be decoded. Every decoder of the project throws this
/// (or wraps it) instead of trapping, whatever the input.
public enum DecodeError: Error, Equatable, Sendable {
    /// The input ended `needed` bytes early at offset `offset`.
    case truncated(offset: Int, needed: Int)
    /// The input is longer than the message allows.
    case oversized(length: Int, limit: Int)
    /// Bytes were left over after a complete message.
    case trailingBytes(Int)
    /// The protocol version is not one this build speaks.
    case unsupportedVersion(UInt8)
    /// The message type code is unknown.
    case unknownType(UInt8)
    /// A field holds a value the protocol does not allow; the string names the field.
    case invalidField(String)
}

/// A bounds-checked, big-endian cursor over borrowed bytes. Never reads past the end:
/// every read either returns a value or throws ``DecodeError/truncated(offset:needed:)``.
/// It does not own the memory: use it only inside the `withUnsafeBytes` scope that made it.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    /// Offset of the next unread byte.
    public private(set) var offset: Int = 0

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Bytes not yet read.
    public var remaining: Int { bytes.count - offset }

    private mutating func take(_ n: Int) throws(DecodeError) -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else { throw .truncated(offset: offset, needed: n - remaining) }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n])
        offset += n
        return slice
    }

    public mutating func u8() throws(DecodeError) -> UInt8 { try take(1)[0] }

    public mutating func u16() throws(DecodeError) -> UInt16 {
        let s = try take(2)
        return UInt16(s[0]) << 8 | UInt16(s[1])
    }

    public mutating func u32() throws(DecodeError) -> UInt32 {
        let s = try take(4)
        var v: UInt32 = 0
        for b in s { v = v << 8 | UInt32(b) }
        return v
    }

    public mutating func u64() throws(DecodeError) -> UInt64 {
        let s = try take(8)
        var v: UInt64 = 0
        for b in s { v = v << 8 | UInt64(b) }
        return v
    }

    /// Exactly `count` bytes, copied out.
    public mutating func bytes(_ count: Int) throws(DecodeError) -> [UInt8] { Array(try take(count)) }

    /// A u16-length-prefixed byte string of at most `limit` bytes.
    public mutating func lengthPrefixed(limit: Int = Int(UInt16.max), field: String) throws(DecodeError) -> [UInt8] {
        let n = Int(try u16())
        guard n <= limit else { throw .invalidField(field) }
        return try bytes(n)
    }

    /// A u16-length-prefixed UTF-8 string of at most `limit` bytes; invalid UTF-8 is an error.
    public mutating func string(limit: Int = 255, field: String) throws(DecodeError) -> String {
        let raw = try lengthPrefixed(limit: limit, field: field)
        guard let s = String(validating: raw, as: UTF8.self) else { throw .invalidField(field) }
        return s
    }

    /// Everything not yet read, copied out.
    public mutating func rest() -> [UInt8] {
        let out = Array(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
        offset = bytes.count
        return out
    }

    /// Throws unless every byte has been read.
    public func finish() throws(DecodeError) {
        if remaining != 0 { throw .trailingBytes(remaining) }
    }
}

/// Appends big-endian fields to a growable byte array. Encoding never fails except for a
/// field longer than its length prefix can say, which is a programming error reported
/// by ``EncodeError``.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(v >> 8))
        bytes.append(UInt8(v & 0xff))
    }
    public mutating func u32(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }
    public mutating func u64(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }
    public mutating func raw<C: Collection>(_ data: C) where C.Element == UInt8 { bytes.append(contentsOf: data) }

    /// A u16 length followed by the bytes. Data longer than 65535 bytes is a caller bug.
    public mutating func lengthPrefixed<C: Collection>(_ data: C) throws(EncodeError) where C.Element == UInt8 {
        guard data.count <= Int(UInt16.max) else { throw EncodeError.fieldTooLong(data.count) }
        u16(UInt16(data.count))
        raw(data)
    }

    public mutating func string(_ s: String) throws(EncodeError) { try lengthPrefixed(Array(s.utf8)) }
}

/// A value too large for its wire field.
public enum EncodeError: Error, Equatable, Sendable {
    case fieldTooLong(Int)
}

extension DecodeError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .truncated(let offset, let needed): return "the message ends \(needed) byte(s) early (at offset \(offset))"
        case .oversized(let length, let limit): return "the message is \(length) bytes, more than the \(limit) allowed"
        case .trailingBytes(let n): return "\(n) byte(s) left over after the message"
        case .unsupportedVersion(let v): return "protocol version \(v) is not spoken here"
        case .unknownType(let t): return "unknown message type \(t)"
        case .invalidField(let f): return "field \(f) holds a value the protocol does not allow"
        }
    }
}

extension EncodeError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .fieldTooLong(let n): return "a value of \(n) bytes is too long for its field"
        }
    }
}
