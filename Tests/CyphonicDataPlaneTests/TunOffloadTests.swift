import Testing

@testable import CyphonicDataPlane

/// Segmentation of TUN super-packets: every segment must be a valid IP/TCP packet.
@Suite struct TunOffloadTests {
    /// A vnet header + IPv4/TCP packet with `payload` bytes of data.
    func superPacket(v6: Bool, payload: Int, gsoSize: Int, flags: UInt8 = 0x18) -> [UInt8] {
        let ip = v6 ? 40 : 20
        var p = [UInt8](repeating: 0, count: 10 + ip + 20 + payload)
        p[0] = 1  // NEEDS_CSUM (as the kernel sets it with TSO)
        p[1] = v6 ? 4 : 1
        p[2] = UInt8(ip + 20)
        p[4] = UInt8(gsoSize & 0xff)
        p[5] = UInt8(gsoSize >> 8)
        p[6] = UInt8(ip)
        p[8] = 16
        if v6 {
            p[10] = 0x60
            p[16] = 6
            p[17] = 64
            for i in 0..<16 {
                p[18 + i] = UInt8(i)
                p[34 + i] = UInt8(100 + i)
            }
        } else {
            p[10] = 0x45
            p[14] = 0x12
            p[15] = 0x34
            p[18] = 64
            p[19] = 6
            p.replaceSubrange(22..<26, with: [198, 18, 0, 1])
            p.replaceSubrange(26..<30, with: [198, 18, 0, 2])
        }
        let t = 10 + ip
        p[t] = 0x13
        p[t + 1] = 0x88
        p[t + 2] = 0xc3
        p[t + 3] = 0x50
        p.replaceSubrange((t + 4)..<(t + 8), with: [0, 0, 0x10, 0])  // seq 4096
        p[t + 12] = 0x50
        p[t + 13] = flags
        for i in 0..<payload { p[t + 20 + i] = UInt8(truncatingIfNeeded: i * 7) }
        return p
    }

    func sum(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        bytes.withUnsafeBytes { TunOffload.fold(TunOffload.onesComplementSum($0, initial: 0)) }
    }

    func tcpChecksumValid(_ seg: [UInt8], v6: Bool) -> Bool {
        let ip = v6 ? 40 : 20
        let tcpLength = seg.count - ip
        var pseudo: [UInt8] = v6 ? Array(seg[8..<40]) : Array(seg[12..<20])
        pseudo += [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xff)]
        let total = (pseudo + seg[ip...]).withUnsafeBytes { TunOffload.onesComplementSum($0, initial: 0) }
        return TunOffload.fold(total) == 0xffff
    }

    func segment(_ packet: [UInt8]) -> [[UInt8]] {
        var read = packet
        let stride = 2048
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 128 * stride, alignment: 16)
        defer { out.deallocate() }
        var lengths = [Int](repeating: 0, count: 128)
        let n = read.withUnsafeMutableBytes { r in
            lengths.withUnsafeMutableBufferPointer { l in
                TunOffload.segment(r, count: packet.count, out: out, stride: stride, offset: 0, maxSegments: 128, lengths: l.baseAddress!)
            }
        }
        return (0..<n).map { Array(UnsafeRawBufferPointer(rebasing: out[($0 * stride)..<($0 * stride + lengths[$0])])) }
    }

    @Test(arguments: [false, true])
    func superPacketsBecomeValidSegments(_ v6: Bool) {
        let segs = segment(superPacket(v6: v6, payload: 250, gsoSize: 100, flags: 0x19))  // PSH|FIN|ACK
        #expect(segs.count == 3)
        let ip = v6 ? 40 : 20
        for (i, s) in segs.enumerated() {
            let data = i < 2 ? 100 : 50
            #expect(s.count == ip + 20 + data)
            let seq = UInt32(s[ip + 4]) << 24 | UInt32(s[ip + 5]) << 16 | UInt32(s[ip + 6]) << 8 | UInt32(s[ip + 7])
            #expect(seq == 4096 + UInt32(i * 100))
            #expect((s[ip + 13] & 0x09 != 0) == (i == 2), "FIN/PSH only on the last segment")
            #expect(s[ip + 20] == UInt8(truncatingIfNeeded: i * 100 * 7))
            if v6 {
                #expect(Int(s[4]) << 8 | Int(s[5]) == 20 + data)
            } else {
                #expect(Int(s[2]) << 8 | Int(s[3]) == 20 + 20 + data)
                #expect(Int(s[4]) << 8 | Int(s[5]) == 0x1234 + i)
                #expect(sum(s[0..<20]) == 0xffff, "IPv4 header checksum")
            }
            #expect(tcpChecksumValid(s, v6: v6), "TCP checksum of segment \(i)")
        }
    }

    @Test func aPartialChecksumIsCompleted() {
        // A single packet (no GSO) whose TCP checksum field holds the pseudo-header sum.
        var p = superPacket(v6: false, payload: 33, gsoSize: 0)
        p[1] = 0
        let seg = Array(p[10...])
        let tcpLength = seg.count - 20
        let pseudo: [UInt8] = Array(seg[12..<20]) + [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xff)]
        let partial = pseudo.withUnsafeBytes { TunOffload.fold(TunOffload.onesComplementSum($0, initial: 0)) }
        p[10 + 20 + 16] = UInt8(partial >> 8)
        p[10 + 20 + 17] = UInt8(partial & 0xff)
        let out = segment(p)
        #expect(out.count == 1)
        #expect(tcpChecksumValid(out[0], v6: false))
    }

    @Test func garbageIsRefusedNotTrapped() {
        #expect(segment([1, 2, 3]).isEmpty)
        var bad = superPacket(v6: false, payload: 10, gsoSize: 100)
        bad[1] = 3  // UDP GSO: not offered, refused
        #expect(segment(bad).isEmpty)
        var tiny = superPacket(v6: false, payload: 300, gsoSize: 1)  // 300 segments > 128
        tiny[0] = 0
        #expect(segment(tiny).isEmpty)
        for _ in 0..<2000 {
            var r = (0..<Int.random(in: 0..<200)).map { _ in UInt8.random(in: 0...255) }
            if r.count > 2 { r[1] = [0, 1, 4].randomElement()! }
            _ = segment(r)
        }
    }

    /// RFC 1071's sum as written there: big-endian 16-bit words, the odd byte padded.
    func referenceSum(_ bytes: ArraySlice<UInt8>, initial: UInt64) -> UInt16 {
        var sum = initial
        var i = bytes.startIndex
        while i + 1 < bytes.endIndex {
            sum += UInt64(bytes[i]) << 8 | UInt64(bytes[i + 1])
            i += 2
        }
        if i < bytes.endIndex { sum += UInt64(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return UInt16(sum)
    }

    /// The lane-summed checksum equals the plain one on every length up to 1 600 bytes
    /// (each tail case), at each of 8 start offsets, on random and on all-0xff data.
    @Test func theFastSumIsTheOnesComplementSum() {
        var rng = SystemRandomNumberGenerator()
        let buffer = (0..<1700).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let ones = [UInt8](repeating: 0xff, count: 1700)
        for data in [buffer, ones] {
            for length in 0...1600 {
                for start in 0..<8 {
                    let slice = data[start..<(start + length)]
                    let initial = UInt64.random(in: 0...0x1_0000, using: &rng)
                    let fast = slice.withUnsafeBytes { TunOffload.fold(TunOffload.onesComplementSum($0, initial: initial)) }
                    // Both fold to the same representative: 0 only when every word is 0.
                    #expect(fast == referenceSum(slice, initial: initial), "length \(length) at \(start)")
                }
            }
        }
    }
}
