import CyphonicCore

/// The fixed 16-byte header that starts every CYPHONIC datagram (docs/protocol.md §2):
///
///     0       1       2       3       4               8                              16
///     +-------+-------+-------+-------+---------------+-------------------------------+
///     |version| type  |status | flags |receiver index |  counter / transaction id     |
///     +-------+-------+-------+-------+---------------+-------------------------------+
///
/// Multi-byte fields are big-endian. For sealed messages (signaling, capsule) the whole
/// header is the AEAD's associated data and `counter` is the AEAD nonce.
public struct Header: Equatable, Hashable, Sendable {
    public static let size = 16

    public var version: UInt8
    public var type: MessageType
    public var status: StatusCode
    public var flags: HeaderFlags
    /// The session index the receiver chose (0 where no session exists yet).
    public var receiverIndex: UInt32
    /// AEAD nonce for sealed messages; transaction id for cleartext ones.
    public var counter: UInt64

    public init(
        type: MessageType, status: StatusCode = .ok, flags: HeaderFlags = [], receiverIndex: UInt32 = 0,
        counter: UInt64 = 0, version: UInt8 = CyphonicVersion.protocolVersion
    ) {
        self.version = version
        self.type = type
        self.status = status
        self.flags = flags
        self.receiverIndex = receiverIndex
        self.counter = counter
    }

    /// Decodes the header at the start of `bytes`. Throws for short input, another
    /// version, an unknown type or status, or reserved flag bits.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> Header {
        var r = ByteReader(bytes)
        return try decode(&r)
    }

    static func decode(_ r: inout ByteReader) throws(DecodeError) -> Header {
        guard r.remaining >= size else { throw .truncated(offset: r.offset, needed: size - r.remaining) }
        let version = try r.u8()
        guard version == CyphonicVersion.protocolVersion else { throw .unsupportedVersion(version) }
        let rawType = try r.u8()
        guard let type = MessageType(rawValue: rawType) else { throw .unknownType(rawType) }
        guard let status = StatusCode(rawValue: try r.u8()) else { throw .invalidField("status") }
        let flags = HeaderFlags(rawValue: try r.u8())
        guard HeaderFlags.known.isSuperset(of: flags) else { throw .invalidField("flags") }
        guard flags.isEmpty || type == .capsule else { throw .invalidField("flags") }
        return Header(
            type: type, status: status, flags: flags, receiverIndex: try r.u32(), counter: try r.u64(),
            version: version)
    }

    /// The data plane's per-datagram read of a capsule header: its receiver index and
    /// counter when `bytes` starts with a header that ``decode(_:)`` accepts as a
    /// capsule (same checks: length, version, type, status, flags), else nil. Loads the
    /// fields directly, without a reader or a thrown error.
    @inline(__always)
    public static func capsuleFields(_ bytes: UnsafeRawBufferPointer) -> (receiverIndex: UInt32, counter: UInt64)? {
        guard bytes.count >= size, bytes[0] == CyphonicVersion.protocolVersion, bytes[1] == MessageType.capsule.rawValue,
            StatusCode(rawValue: bytes[2]) != nil, bytes[3] & ~HeaderFlags.known.rawValue == 0
        else { return nil }
        return (
            UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
            UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        )
    }

    /// Writes the 16 bytes into `buffer[0..<16]` (the data plane's zero-copy path).
    public func write(to buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Header.size, "header buffer too small")
        buffer[0] = version
        buffer[1] = type.rawValue
        buffer[2] = status.rawValue
        buffer[3] = flags.rawValue
        buffer.storeBytes(of: receiverIndex.bigEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: counter.bigEndian, toByteOffset: 8, as: UInt64.self)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Header.size)
        out.withUnsafeMutableBytes { write(to: $0) }
        return out
    }

    func encode(into w: inout ByteWriter) { w.raw(bytes) }
}
