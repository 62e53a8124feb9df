/// The MTU arithmetic of the data plane (docs/protocol.md §5). A capsule adds the
/// 16-byte header and the 16-byte AEAD tag to the inner packet; the underlay adds UDP
/// (8) and IP (20 for IPv4, 40 for IPv6). On a 1500-byte underlay the worst case
/// (IPv6) leaves 1420 bytes for the inner packet, which is the default TUN MTU.
public enum Overhead {
    public static let header = Header.size
    public static let tag = 16
    public static let udp = 8
    public static let ipv4 = 20
    public static let ipv6 = 40

    /// Bytes a capsule adds to an inner packet on the wire, for the given underlay family.
    public static func perPacket(ipv6Underlay: Bool) -> Int { header + tag + udp + (ipv6Underlay ? ipv6 : ipv4) }

    /// The largest inner packet that fits `underlayMTU` without IP fragmentation on either family.
    public static func tunnelMTU(underlayMTU: Int = 1500) -> Int { underlayMTU - perPacket(ipv6Underlay: true) }

    /// TCP MSS to clamp to inside the tunnel: MTU minus inner IP and TCP headers.
    public static func clampedMSS(tunnelMTU: Int, innerIPv6: Bool) -> Int { tunnelMTU - (innerIPv6 ? 40 : 20) - 20 }
}
