import Testing

@testable import CyphonicDataPlane

/// Which packets may overtake a peer's bulk (``PriorityLane``), the CoDel drop schedule,
/// and the pool's per-direction reserve.
@Suite struct PriorityLaneTests {
    /// An IPv4 packet: 20-byte header (or `ihl` words), protocol, then `body`.
    static func ipv4(protocol proto: UInt8, body: [UInt8], ihl: UInt8 = 5, fragment: UInt16 = 0) -> [UInt8] {
        let header = Int(ihl) * 4
        var p = [UInt8](repeating: 0, count: header)
        p[0] = 0x40 | ihl
        let total = header + body.count
        (p[2], p[3]) = (UInt8(total >> 8), UInt8(total & 0xff))
        (p[6], p[7]) = (UInt8(fragment >> 8), UInt8(fragment & 0xff))
        (p[8], p[9]) = (64, proto)
        p.replaceSubrange(12..<20, with: [198, 18, 0, 1, 198, 18, 0, 2])
        return p + body
    }

    static func ipv6(next: UInt8, body: [UInt8]) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: 40)
        p[0] = 0x60
        (p[4], p[5]) = (UInt8(body.count >> 8), UInt8(body.count & 0xff))
        (p[6], p[7]) = (next, 64)
        return p + body
    }

    /// A TCP segment: 20-byte header plus `options` bytes, `flags`, then `payload` bytes.
    static func tcp(flags: UInt8, options: Int = 0, payload: Int = 0) -> [UInt8] {
        var t = [UInt8](repeating: 0, count: 20 + options + payload)
        t[12] = UInt8((20 + options) / 4) << 4
        t[13] = flags
        return t
    }

    static func takes(_ p: [UInt8]) -> Bool { p.withUnsafeBytes { PriorityLane.takes($0) } }

    @Test func acknowledgementsAndPingsTakeTheLane() {
        let ack: UInt8 = 0x10
        #expect(Self.takes(Self.ipv4(protocol: 6, body: Self.tcp(flags: ack, options: 12))))  // ACK with timestamps
        #expect(Self.takes(Self.ipv4(protocol: 6, body: Self.tcp(flags: ack | 0x08))))  // PSH|ACK, no data
        #expect(Self.takes(Self.ipv4(protocol: 6, body: Self.tcp(flags: ack | 0x40 | 0x80))))  // ECE/CWR
        #expect(Self.takes(Self.ipv4(protocol: 1, body: [UInt8](repeating: 0, count: 64))))  // echo, 84 bytes
        #expect(Self.takes(Self.ipv6(next: 58, body: [UInt8](repeating: 0, count: 64))))
        #expect(Self.takes(Self.ipv6(next: 6, body: Self.tcp(flags: ack, options: 12))))
    }

    @Test func anythingThatCouldBeReorderedKeepsItsPlace() {
        let ack: UInt8 = 0x10
        #expect(!Self.takes(Self.ipv4(protocol: 6, body: Self.tcp(flags: ack, payload: 1))))  // data
        #expect(!Self.takes(Self.ipv4(protocol: 6, body: Self.tcp(flags: 0x02))))  // SYN
        #expect(!Self.takes(Self.ipv4(protocol: 6, body: Self.tcp(flags: ack | 0x01))))  // FIN|ACK
        #expect(!Self.takes(Self.ipv4(protocol: 6, body: Self.tcp(flags: ack | 0x04))))  // RST|ACK
        #expect(!Self.takes(Self.ipv4(protocol: 6, body: Self.tcp(flags: 0))))  // no ACK
        #expect(!Self.takes(Self.ipv4(protocol: 17, body: [UInt8](repeating: 0, count: 30))))  // UDP
        #expect(!Self.takes(Self.ipv4(protocol: 1, body: [UInt8](repeating: 0, count: 64), ihl: 6)))  // options
        #expect(!Self.takes(Self.ipv4(protocol: 1, body: [UInt8](repeating: 0, count: 64), fragment: 0x2000)))  // MF
        #expect(!Self.takes(Self.ipv4(protocol: 1, body: [UInt8](repeating: 0, count: 64), fragment: 0x0010)))  // offset
        #expect(!Self.takes(Self.ipv4(protocol: 1, body: [UInt8](repeating: 0, count: PriorityLane.maxBytes))))  // too big
        #expect(!Self.takes(Self.ipv6(next: 0, body: [UInt8](repeating: 0, count: 64))))  // extension header
        #expect(!Self.takes(Self.ipv6(next: 6, body: Self.tcp(flags: ack, payload: 10))))
        // Lengths that disagree with the header, truncation, garbage: never taken, never a crash.
        var short = Self.ipv4(protocol: 6, body: Self.tcp(flags: ack))
        short.removeLast()
        #expect(!Self.takes(short))
        #expect(!Self.takes(Array(Self.ipv6(next: 6, body: Self.tcp(flags: ack)).prefix(50))))
        for n in 0..<60 { #expect(!Self.takes([UInt8](repeating: 0x45, count: n))) }
    }

    @Test func codelDropsOnlyAfterAStandingQueueAndThenFasterAndFaster() {
        var c = CoDel(target: 0.001, interval: 0.020)
        // Short spikes above target, each followed by a short sojourn: no drop.
        var t = 0.0
        for _ in 0..<100 {
            let spike = c.shouldDrop(sojourn: 0.005, now: t)
            let drained = c.shouldDrop(sojourn: 0.0002, now: t + 0.010)
            #expect(!spike && !drained)
            t += 0.015
        }
        // A standing queue: the first drop comes one interval after it began.
        var drops: [Double] = []
        let start = t
        while t < start + 0.3 {
            if c.shouldDrop(sojourn: 0.004, now: t) { drops.append(t - start) }
            t += 0.0005
        }
        #expect(drops.first.map { $0 >= 0.0195 && $0 < 0.022 } == true, "\(drops)")
        #expect(drops.count >= 4)
        // Then spaced by interval / sqrt(count): 20 ms, 14.1 ms, 11.5 ms, ...
        let gaps = zip(drops.dropFirst(), drops).map { $0 - $1 }
        #expect(gaps.count >= 3 && abs(gaps[0] - 0.020) < 0.001 && abs(gaps[1] - 0.020 / 2.0.squareRoot()) < 0.001, "\(gaps)")
        #expect(zip(gaps.dropFirst(), gaps).allSatisfy { $0 <= $1 + 0.0006 })
        // The queue drains: no more drops.
        let afterDrain = c.shouldDrop(sojourn: 0.0001, now: t)
        let stillDropping = c.dropping
        let later = c.shouldDrop(sojourn: 0.0001, now: t + 1)
        #expect(!afterDrain && !stillDropping && !later)
    }

    @Test func poolKeepsTheOtherDirectionsReserve() {
        let pool = BatchPool(size: 8)
        var taken: [PacketBatch] = []
        while let b = pool.tryGet(leaving: 2) { taken.append(b) }
        #expect(taken.count == 6)
        #expect(pool.get(timeoutMilliseconds: 10, leaving: 2) == nil)
        // The other direction (no reserve of its own to leave here) still gets the last two.
        #expect(pool.tryGet() != nil)
        #expect(pool.get(timeoutMilliseconds: 10) != nil)
        #expect(pool.tryGet() == nil)
        pool.put(taken.removeLast())
        #expect(pool.tryGet(leaving: 2) == nil)
        #expect(pool.tryGet(leaving: 0) != nil)
    }
}
