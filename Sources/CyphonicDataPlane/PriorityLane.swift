import CyphonicWire

/// Which inner packets may overtake a peer's bulk traffic: pure TCP acknowledgements
/// (no payload; ACK set, no SYN, FIN, RST or URG) and ICMP / ICMPv6 (echo, errors), of
/// at most ``maxBytes``. The multi-threaded pipeline seals or opens these on the staging
/// thread and sends or delivers them at once instead of queueing them behind the
/// peer's batches, so ACKs and pings keep a short RTT under bulk load (DESIGN §2's
/// per-peer order is kept for every other packet).
///
/// Guarantees: overtaking cannot disturb a transport. A pure ACK carries no sequence
/// space (TCP ignores its position among data segments; its acknowledgement number is
/// cumulative) and ICMP has no order. A packet that is not provably one of these —
/// IPv4 options, IPv6 extension headers, fragments, anything with a payload — keeps its
/// place in the peer's order.
public enum PriorityLane {
    /// Largest inner packet the lane takes.
    public static let maxBytes = 256
    /// Largest capsule that can hold such a packet: only these are opened early on receipt.
    public static let maxCapsule = Header.size + maxBytes + 16

    /// Whether the inner IP packet `p` takes the priority lane.
    @inline(__always)
    public static func takes(_ p: UnsafeRawBufferPointer) -> Bool {
        let n = p.count
        guard n >= 20, n <= maxBytes else { return false }
        switch p[0] >> 4 {
        case 4:
            guard p[0] == 0x45, Int(p[2]) << 8 | Int(p[3]) == n,
                p[6] & 0x3f == 0, p[7] == 0  // not a fragment (MF clear, offset 0)
            else { return false }
            switch p[9] {
            case 1: return true
            case 6: return pureAck(p, at: 20)
            default: return false
            }
        case 6:
            guard n >= 40, Int(p[4]) << 8 | Int(p[5]) + 40 == n else { return false }
            switch p[6] {
            case 58: return true
            case 6: return pureAck(p, at: 40)
            default: return false
            }
        default:
            return false
        }
    }

    /// A TCP segment at `offset` that is the rest of the packet, carries no payload and
    /// has ACK set and none of SYN, FIN, RST, URG.
    @inline(__always)
    static func pureAck(_ p: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        guard p.count >= offset + 20 else { return false }
        let headerLength = Int(p[offset + 12] >> 4) * 4
        let flags = p[offset + 13]
        return headerLength >= 20 && offset + headerLength == p.count && flags & 0x10 != 0 && flags & 0x27 == 0
    }
}
