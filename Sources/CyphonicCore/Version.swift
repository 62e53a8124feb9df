/// Build-wide identity of the CYPHONIC-Swift stack.
public enum CyphonicVersion {
    /// The software version printed by every program's `--version`.
    public static let software = "0.1.0"
    /// The wire protocol version carried in every datagram header.
    public static let protocolVersion: UInt8 = 1
}
