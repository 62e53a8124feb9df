/// RFC 1035 §4.2.2 TCP framing: a 2-byte big-endian length before every message.
/// The framer holds at most one unfinished frame (2 + ``maxMessage`` bytes), whatever it is
/// fed. A frame announcing 0 bytes or more than ``maxMessage`` is an error after which the
/// framer is spent: every later ``append(_:)`` throws the same error, so the caller closes
/// the connection.
public struct DNSTCPFramer: Sendable {
    /// The longest message accepted, in 1...65535.
    public let maxMessage: Int
    private var buffer: [UInt8] = []
    private var expected = 0
    private var failure: DNSParseError?

    public init(maxMessage: Int = 65_535) {
        self.maxMessage = min(max(maxMessage, 1), DNSQuery.maxMessageSize)
    }

    /// Bytes received but not yet returned as a message (length prefix included).
    public var bufferedCount: Int { buffer.count }

    /// Appends received bytes; returns every complete message now available, in order.
    /// Throws ``DNSParseError/zeroLengthFrame`` or ``DNSParseError/oversized`` as soon as
    /// a length prefix says so (messages completed earlier in the same call are dropped
    /// with the connection).
    public mutating func append(_ bytes: some Sequence<UInt8>) throws(DNSParseError) -> [[UInt8]] {
        if let failure { throw failure }
        var messages: [[UInt8]] = []
        for byte in bytes {
            buffer.append(byte)
            if buffer.count == 2 {
                expected = Int(buffer[0]) << 8 | Int(buffer[1])
                if expected == 0 || expected > maxMessage {
                    let error: DNSParseError = expected == 0 ? .zeroLengthFrame : .oversized
                    failure = error
                    buffer = []
                    throw error
                }
            } else if buffer.count == 2 + expected {
                messages.append(Array(buffer[2...]))
                buffer.removeAll(keepingCapacity: true)
            }
        }
        if buffer.isEmpty && buffer.capacity > 4096 { buffer = [] }
        return messages
    }

    /// `message` with its length prefix. A message longer than 65535 bytes cannot be
    /// framed: the result is then empty (nothing to send).
    public static func frame(_ message: [UInt8]) -> [UInt8] {
        guard message.count <= DNSQuery.maxMessageSize else { return [] }
        var framed: [UInt8] = []
        framed.reserveCapacity(2 + message.count)
        framed.append(UInt8(truncatingIfNeeded: message.count >> 8))
        framed.append(UInt8(truncatingIfNeeded: message.count))
        framed.append(contentsOf: message)
        return framed
    }
}
