/// TUN offload (`IFF_VNET_HDR` + `TUNSETOFFLOAD` TSO4/TSO6/CSUM): the kernel hands the
/// daemon TCP super-packets of up to 64 KiB with one `virtio_net_hdr` in front, instead
/// of one read per 1420-byte packet. ``prepare(_:count:)`` checks such a read and
/// `writeSegment(_:of:from:into:)` cuts it into ordinary
/// IP packets (headers copied, lengths, IPv4 id and header checksum, TCP sequence
/// numbers, flags and checksum fixed), and completes the checksum of a single packet the
/// kernel left partial. Pure functions over caller-owned memory: no allocation.
public enum TunOffload {
    public static let headerSize = 10

    static let needsChecksum: UInt8 = 1
    static let gsoNone: UInt8 = 0
    static let gsoTCPv4: UInt8 = 1
    static let gsoTCPv6: UInt8 = 4

    /// What one read (`vnet header + packet`) holds, checked: one ordinary packet (its
    /// partial checksum, if the kernel left one, completed in place), or a TCP
    /// super-packet to be cut (``Cut``). Either starts at ``headerSize`` and runs to the
    /// end of the read. `nil` for a read that cannot be parsed (counted by the caller).
    public enum Read {
        /// One packet.
        case packet
        /// A TCP super-packet.
        case superPacket(Cut)
    }

    /// How a TCP super-packet is cut: everything `writeSegment(_:of:from:into:)` needs,
    /// read and checked once per super-packet.
    public struct Cut: Sendable {
        let v4: Bool
        let ipHeader: Int
        let tcpHeader: Int
        let payload: Int
        let gsoSize: Int
        let firstSeq: UInt32
        let firstID: UInt16
        let tcpFlags: UInt8
        /// How many packets the super-packet becomes.
        public let segments: Int
        /// IP and TCP headers, copied into every segment.
        var headers: Int { ipHeader + tcpHeader }
        /// The longest segment (headers + one `gsoSize` of data, or all of it if less).
        public var largest: Int { headers + min(gsoSize, payload) }
    }

    /// Checks one read of `count` bytes and says what it holds (see ``Read``); completes
    /// a single packet's partial checksum in place.
    @inline(__always)
    public static func prepare(_ read: UnsafeMutableRawBufferPointer, count: Int) -> Read? {
        guard count > headerSize + 20 else { return nil }
        let flags = read[0]
        let gso = read[1] & 0x7f
        let gsoSize = Int(read.loadUnaligned(fromByteOffset: 4, as: UInt16.self).littleEndian)
        let csumStart = Int(read.loadUnaligned(fromByteOffset: 6, as: UInt16.self).littleEndian)
        let csumOffset = Int(read.loadUnaligned(fromByteOffset: 8, as: UInt16.self).littleEndian)
        let packet = UnsafeMutableRawBufferPointer(rebasing: read[headerSize..<count])
        if gso == gsoNone {
            if flags & needsChecksum != 0 {
                guard csumStart + csumOffset + 2 <= packet.count else { return nil }
                let sum = onesComplementSum(UnsafeRawBufferPointer(rebasing: packet[csumStart...]), initial: 0)
                packet.storeBytes(of: (~fold(sum)).bigEndian, toByteOffset: csumStart + csumOffset, as: UInt16.self)
            }
            return .packet
        }
        guard gso == gsoTCPv4 || gso == gsoTCPv6, gsoSize > 0 else { return nil }
        let v4 = gso == gsoTCPv4
        let ipHeader = v4 ? Int(packet[0] & 0x0f) * 4 : 40
        guard packet.count >= ipHeader + 20 else { return nil }
        let tcpHeader = Int(packet[ipHeader + 12] >> 4) * 4
        let headers = ipHeader + tcpHeader
        guard tcpHeader >= 20, packet.count > headers else { return nil }
        let payload = packet.count - headers
        return .superPacket(
            Cut(
                v4: v4, ipHeader: ipHeader, tcpHeader: tcpHeader, payload: payload, gsoSize: gsoSize,
                firstSeq: UInt32(bigEndian: packet.loadUnaligned(fromByteOffset: ipHeader + 4, as: UInt32.self)),
                firstID: v4 ? UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) : 0,
                tcpFlags: packet[ipHeader + 13], segments: (payload + gsoSize - 1) / gsoSize))
    }

    /// Writes segment `i` (of ``Cut/segments``) of the super-packet `packet` (the read after
    /// its vnet header, as ``prepare(_:count:)`` checked it) into `seg`, which must hold
    /// ``Cut/largest`` bytes: headers copied, lengths, IPv4 id and header checksum, TCP
    /// sequence number, flags and checksum fixed. Returns its length. Unchecked in release
    /// builds (the per-packet path): the callers size `seg` from the cut.
    @inline(__always)
    static func writeSegment(
        _ i: Int, of cut: Cut, from packet: UnsafeRawBufferPointer, into seg: UnsafeMutableRawBufferPointer
    ) -> Int {
        assert(i >= 0 && i < cut.segments && seg.count >= cut.largest && packet.count == cut.headers + cut.payload)
        let headers = cut.headers
        let ipHeader = cut.ipHeader
        let chunk = min(cut.gsoSize, cut.payload - i * cut.gsoSize)
        let length = headers + chunk
        (seg.baseAddress!).copyMemory(from: packet.baseAddress!, byteCount: headers)
        (seg.baseAddress! + headers).copyMemory(from: packet.baseAddress! + headers + i * cut.gsoSize, byteCount: chunk)
        if cut.v4 {
            seg.storeBytes(of: UInt16(length).bigEndian, toByteOffset: 2, as: UInt16.self)
            seg.storeBytes(of: (cut.firstID &+ UInt16(truncatingIfNeeded: i)).bigEndian, toByteOffset: 4, as: UInt16.self)
            setIPv4HeaderChecksum(seg, headerLength: ipHeader)
        } else {
            seg.storeBytes(of: UInt16(cut.tcpHeader + chunk).bigEndian, toByteOffset: 4, as: UInt16.self)
        }
        seg.storeBytes(of: (cut.firstSeq &+ UInt32(truncatingIfNeeded: i * cut.gsoSize)).bigEndian, toByteOffset: ipHeader + 4, as: UInt32.self)
        var f = cut.tcpFlags
        if i < cut.segments - 1 { f &= ~0x09 }  // FIN and PSH only on the last segment
        if i > 0 { f &= ~0x80 }  // CWR only on the first
        seg[ipHeader + 13] = f
        // TCP checksum over the pseudo-header and the segment.
        seg.storeBytes(of: UInt16(0), toByteOffset: ipHeader + 16, as: UInt16.self)
        var sum = pseudoHeaderSum(UnsafeRawBufferPointer(seg), v4: cut.v4, tcpLength: cut.tcpHeader + chunk)
        sum = onesComplementSum(UnsafeRawBufferPointer(rebasing: seg[ipHeader..<length]), initial: sum)
        seg.storeBytes(of: (~fold(sum)).bigEndian, toByteOffset: ipHeader + 16, as: UInt16.self)
        return length
    }

    /// Splits one read (`vnet header + packet`) into packets written into `out`, one per
    /// `stride` bytes at `offset` (room for `maxSegments`), their lengths into `lengths`.
    /// Returns the number of packets, or 0 for a read it cannot parse or that does not
    /// fit (counted by the caller). ``prepare(_:count:)`` and `writeSegment(_:of:from:into:)`
    /// in one call.
    @inline(__always)
    public static func segment(
        _ read: UnsafeMutableRawBufferPointer, count: Int, out: UnsafeMutableRawBufferPointer,
        stride: Int, offset: Int, maxSegments: Int, lengths: UnsafeMutablePointer<Int>
    ) -> Int {
        switch prepare(read, count: count) {
        case nil:
            return 0
        case .packet:
            let length = count - headerSize
            guard length <= stride - offset, maxSegments >= 1 else { return 0 }
            (out.baseAddress! + offset).copyMemory(from: read.baseAddress! + headerSize, byteCount: length)
            lengths[0] = length
            return 1
        case .superPacket(let cut):
            guard cut.segments <= maxSegments, cut.largest <= stride - offset else { return 0 }
            let packet = UnsafeRawBufferPointer(rebasing: read[headerSize..<count])
            for i in 0..<cut.segments {
                let base = i * stride + offset
                lengths[i] = writeSegment(
                    i, of: cut, from: packet, into: UnsafeMutableRawBufferPointer(rebasing: out[base..<(base + stride - offset)]))
            }
            return cut.segments
        }
    }

    /// The TCP pseudo-header's sum (addresses, protocol 6, TCP length), not yet folded,
    /// for an IPv4 or IPv6 packet starting at `packet[0]`.
    @inline(__always)
    static func pseudoHeaderSum(_ packet: UnsafeRawBufferPointer, v4: Bool, tcpLength: Int) -> UInt64 {
        let addresses = v4 ? packet[12..<20] : packet[8..<40]
        return onesComplementSum(UnsafeRawBufferPointer(rebasing: addresses), initial: 6 + UInt64(tcpLength))
    }

    /// Recomputes the IPv4 header checksum (bytes 10–11) of `packet` over its first
    /// `headerLength` bytes.
    @inline(__always)
    static func setIPv4HeaderChecksum(_ packet: UnsafeMutableRawBufferPointer, headerLength: Int) {
        packet.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        let sum = onesComplementSum(UnsafeRawBufferPointer(rebasing: packet[0..<headerLength]), initial: 0)
        packet.storeBytes(of: (~fold(sum)).bigEndian, toByteOffset: 10, as: UInt16.self)
    }

    /// Sum of big-endian 16-bit words (odd tail padded with zero) plus `initial`, not yet
    /// folded. Every sent TCP segment is summed whole, so this runs at memory speed: the
    /// bytes are summed as native 32-bit words in four independent lanes and folded once
    /// (the ones' complement sum does not depend on byte order, RFC 1071 §2), then turned
    /// to big-endian order.
    @inline(__always)
    static func onesComplementSum(_ data: UnsafeRawBufferPointer, initial: UInt64) -> UInt64 {
        let n = data.count
        guard n > 0 else { return initial }
        let base = data.baseAddress!
        // Each lane adds at most 2^33 per 8 bytes: no overflow below 2^30 bytes.
        var a: UInt64 = 0
        var b: UInt64 = 0
        var c: UInt64 = 0
        var d: UInt64 = 0
        var i = 0
        while i + 32 <= n {
            let w0 = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let w1 = base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
            let w2 = base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)
            let w3 = base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)
            a &+= (w0 & 0xffff_ffff) &+ (w0 >> 32)
            b &+= (w1 & 0xffff_ffff) &+ (w1 >> 32)
            c &+= (w2 & 0xffff_ffff) &+ (w2 >> 32)
            d &+= (w3 & 0xffff_ffff) &+ (w3 >> 32)
            i += 32
        }
        while i + 8 <= n {
            let w = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            a &+= (w & 0xffff_ffff) &+ (w >> 32)
            i += 8
        }
        while i + 2 <= n {
            b &+= UInt64(base.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            i += 2
        }
        // A last odd byte is the first (most significant, in network order) of its word.
        if i < n { c &+= UInt64(UInt16(littleEndian: UInt16(base.load(fromByteOffset: i, as: UInt8.self)))) }
        let native = fold(a &+ b &+ c &+ d)
        return UInt64(UInt16(bigEndian: native)) &+ initial
    }

    @inline(__always)
    static func fold(_ s: UInt64) -> UInt16 {
        var sum = s
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return UInt16(sum)
    }
}
