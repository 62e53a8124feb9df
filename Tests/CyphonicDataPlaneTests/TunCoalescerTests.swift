import Glibc
import Testing

@testable import CyphonicDataPlane

/// Receive offload towards the TUN: runs of TCP segments become one super-packet that
/// the kernel (here: our own segmenter, which does what the kernel does) turns back into
/// exactly the original segments; anything that must not merge is written alone.
@Suite struct TunCoalescerTests {
    let offload = TunOffloadTests()

    /// Collects every write as bytes; `writes` counts them.
    final class Sink: @unchecked Sendable {
        var writes: [[UInt8]] = []
    }

    /// Feeds `packets` (each placed in its own slot with room for a vnet header) to a
    /// coalescer, then flushes; returns the writes.
    func coalesce(_ packets: [[UInt8]]) -> [[UInt8]] {
        let sink = Sink()
        let c = TunCoalescer { iov, count in
            var bytes: [UInt8] = []
            for i in 0..<Int(count) { bytes += UnsafeRawBufferPointer(start: iov[i].iov_base, count: iov[i].iov_len) }
            sink.writes.append(bytes)
        }
        let stride = 2048
        let offset = 16
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, packets.count) * stride, alignment: 16)
        defer { memory.deallocate() }
        for (i, p) in packets.enumerated() {
            let at = memory.baseAddress! + i * stride + offset
            p.withUnsafeBytes { at.copyMemory(from: $0.baseAddress!, byteCount: p.count) }
            c.add(at, length: p.count)
        }
        c.flush()
        #expect(c.writes == sink.writes.count && c.packets == packets.count)
        return sink.writes
    }

    @Test(arguments: [false, true])
    func aRunBecomesOneSuperPacketThatSegmentsBackExactly(_ v6: Bool) {
        let original = offload.segment(offload.superPacket(v6: v6, payload: 1000, gsoSize: 100, flags: 0x18))
        #expect(original.count == 10)
        let writes = coalesce(original)
        #expect(writes.count == 1)
        let w = writes[0]
        #expect(w[0] == 1 && w[1] == (v6 ? 4 : 1), "NEEDS_CSUM and gso type")
        #expect(Int(w[4]) | Int(w[5]) << 8 == 100, "gso_size")
        #expect(w.count == 10 + (v6 ? 40 : 20) + 20 + 1000)
        #expect(offload.segment(w) == original)
    }

    @Test func aSequenceGapSplitsTheRun() {
        var segs = offload.segment(offload.superPacket(v6: false, payload: 1000, gsoSize: 100))
        segs.remove(at: 4)
        let writes = coalesce(segs)
        #expect(writes.count == 2)
        #expect(writes.flatMap { offload.segment($0) } == segs)
    }

    @Test func finIsWrittenAloneAndLast() {
        let segs = offload.segment(offload.superPacket(v6: false, payload: 500, gsoSize: 100, flags: 0x19))  // FIN on the last
        let writes = coalesce(segs)
        #expect(writes.count == 2)
        #expect(writes[1].count == 10 + segs[4].count && Array(writes[1][10...]) == segs[4])
        #expect(writes.flatMap { offload.segment($0) } == segs)
    }

    @Test func otherProtocolsAndFlowsAreNotMerged() {
        let a = offload.segment(offload.superPacket(v6: false, payload: 300, gsoSize: 100))
        var b = offload.segment(offload.superPacket(v6: false, payload: 300, gsoSize: 100))
        for i in b.indices { b[i][21] = 0x99 }  // another source port: another flow (checksums are not checked here)
        var udp = [UInt8](repeating: 0, count: 60)
        udp[0] = 0x45
        udp[3] = 60
        udp[9] = 17
        // a0 b0 a1 b1 ... interleaved, then a datagram: nothing merges.
        let mixed = [a[0], b[0], a[1], b[1], udp]
        let writes = coalesce(mixed)
        #expect(writes.count == 5)
        for (w, p) in zip(writes, mixed) { #expect(Array(w[10...]) == p && w[0..<10].allSatisfy { $0 == 0 }) }
    }

    @Test func runsStopAt64SegmentsAnd64KiB() {
        let segs = offload.segment(offload.superPacket(v6: false, payload: 100 * 100, gsoSize: 100))
        #expect(segs.count == 100)
        let writes = coalesce(segs)
        #expect(writes.count == 2)
        #expect(writes.flatMap { offload.segment($0) } == segs)
        let big = offload.segment(offload.superPacket(v6: true, payload: 60 * 1300, gsoSize: 1300))
        let bigWrites = coalesce(big)
        #expect(bigWrites.count == 2 && bigWrites.allSatisfy { $0.count - 10 <= 65_535 + 40 })
        #expect(bigWrites.flatMap { offload.segment($0) } == big)
    }
}
