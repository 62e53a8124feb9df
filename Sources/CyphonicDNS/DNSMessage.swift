/// What a forwarder needs of any message, query or response, without parsing it: the id
/// and the QR bit. Works on any bytes and never traps; less than a header is "no message".
public enum DNSMessage {
    public static let headerSize = DNSHeader.size

    /// The id of a message (first two bytes), nil if shorter than a header.
    public static func id(of bytes: [UInt8]) -> UInt16? {
        guard bytes.count >= headerSize else { return nil }
        return UInt16(bytes[0]) << 8 | UInt16(bytes[1])
    }

    /// A copy of `bytes` with its id replaced (for forwarding to an upstream resolver and
    /// back); bytes shorter than a header are returned unchanged.
    public static func replacingID(_ bytes: [UInt8], with id: UInt16) -> [UInt8] {
        guard bytes.count >= headerSize else { return bytes }
        var copy = bytes
        copy[0] = UInt8(truncatingIfNeeded: id >> 8)
        copy[1] = UInt8(truncatingIfNeeded: id)
        return copy
    }

    /// Whether `bytes` is a response (QR=1) with at least a header.
    public static func isResponse(_ bytes: [UInt8]) -> Bool {
        bytes.count >= headerSize && bytes[2] & 0x80 != 0
    }
}
