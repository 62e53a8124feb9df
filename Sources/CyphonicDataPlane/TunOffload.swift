/// TUN offload (`IFF_VNET_HDR` + `TUNSETOFFLOAD` TSO4/TSO6/CSUM): the kernel hands the
/// daemon TCP super-packets of up to 64 KiB with one `virtio_net_hdr` in front, instead
/// of one read per 1420-byte packet. ``segment(_:into:)`` cuts such a read into ordinary
/// IP packets (headers copied, lengths, IPv4 id and header checksum, TCP sequence
/// numbers, flags and checksum fixed), and completes the checksum of a single packet the
/// kernel left partial. Pure functions over caller-owned memory: no allocation.
public enum TunOffload {
    public static let headerSize = 10

    static let needsChecksum: UInt8 = 1
    static let gsoNone: UInt8 = 0
    static let gsoTCPv4: UInt8 = 1
    static let gsoTCPv6: UInt8 = 4

    /// Splits one read (`vnet header + packet`) into packets; `emit(start, length)` gets
    /// each result written into `out` (which must hold 128 × `stride` bytes). Returns the
    /// number of packets, or 0 for a read it cannot parse (counted by the caller).
    @inline(__always)
    public static func segment(
        _ read: UnsafeMutableRawBufferPointer, count: Int, out: UnsafeMutableRawBufferPointer,
        stride: Int, offset: Int, maxSegments: Int, lengths: UnsafeMutablePointer<Int>
    ) -> Int {
        guard count > headerSize + 20 else { return 0 }
        let flags = read[0]
        let gso = read[1] & 0x7f
        let gsoSize = Int(read.loadUnaligned(fromByteOffset: 4, as: UInt16.self).littleEndian)
        let csumStart = Int(read.loadUnaligned(fromByteOffset: 6, as: UInt16.self).littleEndian)
        let csumOffset = Int(read.loadUnaligned(fromByteOffset: 8, as: UInt16.self).littleEndian)
        let packet = UnsafeMutableRawBufferPointer(rebasing: read[headerSize..<count])
        if gso == gsoNone {
            if flags & needsChecksum != 0 {
                guard csumStart + csumOffset + 2 <= packet.count else { return 0 }
                let sum = onesComplementSum(UnsafeRawBufferPointer(rebasing: packet[csumStart...]), initial: 0)
                packet.storeBytes(of: (~fold(sum)).bigEndian, toByteOffset: csumStart + csumOffset, as: UInt16.self)
            }
            guard packet.count <= stride - offset, maxSegments >= 1 else { return 0 }
            UnsafeMutableRawBufferPointer(rebasing: out[offset..<(offset + packet.count)]).copyMemory(from: UnsafeRawBufferPointer(packet))
            lengths[0] = packet.count
            return 1
        }
        guard gso == gsoTCPv4 || gso == gsoTCPv6, gsoSize > 0 else { return 0 }
        let v4 = gso == gsoTCPv4
        let ipHeader = v4 ? Int(packet[0] & 0x0f) * 4 : 40
        guard packet.count >= ipHeader + 20 else { return 0 }
        let tcpHeader = Int(packet[ipHeader + 12] >> 4) * 4
        let headers = ipHeader + tcpHeader
        guard tcpHeader >= 20, packet.count > headers else { return 0 }
        let payload = packet.count - headers
        let segments = (payload + gsoSize - 1) / gsoSize
        guard segments <= maxSegments, headers + gsoSize <= stride - offset else { return 0 }
        let firstSeq = UInt32(bigEndian: packet.loadUnaligned(fromByteOffset: ipHeader + 4, as: UInt32.self))
        let firstID = v4 ? UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) : 0
        let tcpFlags = packet[ipHeader + 13]
        for i in 0..<segments {
            let chunk = min(gsoSize, payload - i * gsoSize)
            let base = i * stride + offset
            let seg = UnsafeMutableRawBufferPointer(rebasing: out[base..<(base + headers + chunk)])
            UnsafeMutableRawBufferPointer(rebasing: seg[0..<headers]).copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[0..<headers]))
            UnsafeMutableRawBufferPointer(rebasing: seg[headers...])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[(headers + i * gsoSize)..<(headers + i * gsoSize + chunk)]))
            if v4 {
                seg.storeBytes(of: UInt16(headers + chunk).bigEndian, toByteOffset: 2, as: UInt16.self)
                seg.storeBytes(of: (firstID &+ UInt16(truncatingIfNeeded: i)).bigEndian, toByteOffset: 4, as: UInt16.self)
                setIPv4HeaderChecksum(seg, headerLength: ipHeader)
            } else {
                seg.storeBytes(of: UInt16(tcpHeader + chunk).bigEndian, toByteOffset: 4, as: UInt16.self)
            }
            seg.storeBytes(of: (firstSeq &+ UInt32(i * gsoSize)).bigEndian, toByteOffset: ipHeader + 4, as: UInt32.self)
            var f = tcpFlags
            if i < segments - 1 { f &= ~0x09 }  // FIN and PSH only on the last segment
            if i > 0 { f &= ~0x80 }  // CWR only on the first
            seg[ipHeader + 13] = f
            // TCP checksum over the pseudo-header and the segment.
            seg.storeBytes(of: UInt16(0), toByteOffset: ipHeader + 16, as: UInt16.self)
            var sum = pseudoHeaderSum(UnsafeRawBufferPointer(seg), v4: v4, tcpLength: tcpHeader + chunk)
            sum = onesComplementSum(UnsafeRawBufferPointer(rebasing: seg[ipHeader...]), initial: sum)
            seg.storeBytes(of: (~fold(sum)).bigEndian, toByteOffset: ipHeader + 16, as: UInt16.self)
            lengths[i] = headers + chunk
        }
        return segments
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

    /// Sum of big-endian 16-bit words (odd tail padded with zero), not yet folded.
    @inline(__always)
    static func onesComplementSum(_ data: UnsafeRawBufferPointer, initial: UInt64) -> UInt64 {
        var sum = initial
        var i = 0
        let n = data.count
        while i + 8 <= n {
            let w = UInt64(bigEndian: data.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            sum &+= (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff)
            i += 8
        }
        while i + 2 <= n {
            sum &+= UInt64(data[i]) << 8 | UInt64(data[i + 1])
            i += 2
        }
        if i < n { sum &+= UInt64(data[i]) << 8 }
        return sum
    }

    @inline(__always)
    static func fold(_ s: UInt64) -> UInt16 {
        var sum = s
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return UInt16(sum)
    }
}
