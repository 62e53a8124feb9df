import CyphonicCore
import Glibc
import Testing

@testable import CyphonicPosix

/// UDP GSO on send (``UDPSegmentSender``) and GRO on receive (``DatagramLanding``):
/// whatever the kernel coalesces, every datagram arrives once, in order, with its own
/// boundaries and bytes.
@Suite struct SegmentationTests {
    /// Sizes that make two GSO runs: 50 × 1000 B closed by one shorter datagram, then a
    /// larger size starts a new run of 30 × 1200 B.
    static let sizes = [Int](repeating: 1000, count: 50) + [300] + [Int](repeating: 1200, count: 30)

    /// Fills datagram `i` with a pattern naming it, sends all with `sender`, returns the buffers.
    static func send(_ sender: UDPSegmentSender, to target: Endpoint) throws -> UnsafeMutableRawBufferPointer {
        let stride = 2048
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: sizes.count * stride, alignment: 16)
        for (i, n) in sizes.enumerated() {
            for j in 0..<n { memory[i * stride + j] = UInt8(truncatingIfNeeded: i &* 7 &+ j) }
            try sender.append(memory.baseAddress! + i * stride, length: n, to: SocketAddress(target))
        }
        try sender.flush()
        return memory
    }

    /// Receives until every datagram of ``sizes`` arrived; returns them in arrival order
    /// and how many receive messages carried them.
    static func receiveAll(_ socket: UDPSocket, _ landing: DatagramLanding) throws -> ([[UInt8]], Int) {
        var datagrams: [[UInt8]] = []
        var messages = 0
        var idle = 0
        while datagrams.count < sizes.count, idle < 25 {
            guard waitReadable(socket.fd, timeoutMilliseconds: 200).0 else {
                idle += 1
                continue
            }
            let n = try landing.receive(from: socket)
            messages += n
            for i in 0..<n {
                for k in 0..<landing.segments(i) { datagrams.append(Array(landing.segment(i, k))) }
            }
        }
        return (datagrams, messages)
    }

    static func check(_ datagrams: [[UInt8]]) {
        #expect(datagrams.count == sizes.count)
        for (i, d) in datagrams.enumerated() where i < sizes.count {
            #expect(d.count == sizes[i], "datagram \(i) length")
            #expect(d.enumerated().allSatisfy { $0.element == UInt8(truncatingIfNeeded: i &* 7 &+ $0.offset) }, "datagram \(i) bytes")
        }
    }

    @Test(arguments: ["127.0.0.1:0", "[::1]:0"])
    func gsoRunsArriveAsTheOriginalDatagramsWithGRO(_ bind: String) throws {
        let a = try UDPSocket(bind: Endpoint(bind)!)
        let b = try UDPSocket(bind: Endpoint(bind)!)
        #expect(b.enableGRO())
        let sender = UDPSegmentSender(socket: a)
        let memory = try Self.send(sender, to: b.localEndpoint())
        defer { memory.deallocate() }
        // Two runs, so two system calls for 81 datagrams (loopback segments in software).
        #expect(sender.segmentation)
        #expect(sender.calls == 2 && sender.datagrams == Self.sizes.count)
        let (datagrams, messages) = try Self.receiveAll(b, DatagramLanding())
        Self.check(datagrams)
        // GRO hands over coalesced runs: fewer messages than datagrams.
        #expect(messages < Self.sizes.count)
    }

    @Test func gsoRunsArriveSplitWithoutGRO() throws {
        let a = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let b = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let sender = UDPSegmentSender(socket: a)
        let memory = try Self.send(sender, to: b.localEndpoint())
        defer { memory.deallocate() }
        let (datagrams, messages) = try Self.receiveAll(b, DatagramLanding(messages: 64, bufferSize: 2048))
        Self.check(datagrams)
        #expect(messages == Self.sizes.count)
    }

    @Test func plainDatagramsWhenSegmentationIsOff() throws {
        let a = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let b = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        #expect(b.enableGRO())
        let sender = UDPSegmentSender(socket: a, segmentation: false)
        let memory = try Self.send(sender, to: b.localEndpoint())
        defer { memory.deallocate() }
        // Runs of up to 64 per sendmmsg: 81 datagrams in two calls, none segmented.
        #expect(sender.calls == 2)
        let (datagrams, messages) = try Self.receiveAll(b, DatagramLanding())
        Self.check(datagrams)
        #expect(messages == Self.sizes.count)
    }

    @Test func aNewAddressStartsANewRun() throws {
        let a = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let b = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let c = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let sender = UDPSegmentSender(socket: a)
        var buffer = [UInt8](repeating: 0xAB, count: 500)
        try buffer.withUnsafeMutableBytes { raw in
            for i in 0..<6 {
                raw[0] = UInt8(i)
                // Each append copies nothing: send before changing the buffer.
                try sender.append(raw.baseAddress!, length: 500, to: SocketAddress(i % 2 == 0 ? b.localEndpoint() : c.localEndpoint()))
                try sender.flush()
            }
        }
        #expect(sender.calls == 6)
        for (socket, expected) in [(b, [0, 2, 4]), (c, [1, 3, 5])] {
            try socket.setReceiveTimeout(milliseconds: 2000)
            var seen: [Int] = []
            var buf = [UInt8](repeating: 0, count: 2048)
            for _ in 0..<3 {
                let (n, _) = try buf.withUnsafeMutableBytes { try socket.receive(into: $0) }
                #expect(n == 500)
                seen.append(Int(buf[0]))
            }
            #expect(seen == expected)
        }
    }

    @Test func aReceiveLimitIsHonoured() throws {
        let a = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let b = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        for i in 0..<5 { try a.send([UInt8(i)], to: b.localEndpoint()) }
        let landing = DatagramLanding(messages: 8, bufferSize: 64)
        #expect(waitReadable(b.fd, timeoutMilliseconds: 2000).0)
        usleep(50_000)
        #expect(try landing.receive(from: b, limit: 2) == 2)
        #expect(try landing.receive(from: b) == 3)
        #expect(try landing.receive(from: b) == 0)
    }
}

/// ``DatagramLanding`` on lent buffers: a buffer the caller takes back (``DatagramLanding/lend(_:to:)``
/// gives the landing another one) keeps the datagrams that landed in it, and the next
/// receive lands in the new buffer.
@Suite struct LentLandingTests {
    static func sendRun(_ sender: UDPSegmentSender, to target: Endpoint, count: Int, size: Int, stamp: UInt8) throws {
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: count * size, alignment: 16)
        defer { memory.deallocate() }
        for i in 0..<count {
            for j in 0..<size { memory[i * size + j] = stamp &+ UInt8(truncatingIfNeeded: i &* 3 &+ j) }
            try sender.append(memory.baseAddress! + i * size, length: size, to: SocketAddress(target))
        }
        try sender.flush()
    }

    /// Receives one message (waiting for it), returns its datagrams.
    static func receiveOne(_ landing: DatagramLanding, from socket: UDPSocket) throws -> [[UInt8]] {
        #expect(waitReadable(socket.fd, timeoutMilliseconds: 2000).0)
        usleep(50_000)
        #expect(try landing.receive(from: socket, limit: 1) == 1)
        return (0..<landing.segments(0)).map { Array(landing.segment(0, $0)) }
    }

    @Test func aBufferTakenBackKeepsItsDatagrams() throws {
        let a = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let b = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        #expect(b.enableGRO())
        let sender = UDPSegmentSender(socket: a)
        let buffers = (0..<2).map { _ in UnsafeMutableRawPointer.allocate(byteCount: DatagramLanding.gro, alignment: 64) }
        defer { for p in buffers { p.deallocate() } }
        let landing = DatagramLanding(lent: [buffers[0]], bufferSize: DatagramLanding.gro)
        try Self.sendRun(sender, to: b.localEndpoint(), count: 20, size: 1000, stamp: 1)
        let first = try Self.receiveOne(landing, from: b)
        #expect(first.count > 1, "GRO coalesced the run")
        #expect(landing.segment(0, 0).baseAddress == buffers[0])
        // Take the buffer back; the rest of the run (if any) and a second run land in the new one.
        landing.lend(buffers[1], to: 0)
        try Self.sendRun(sender, to: b.localEndpoint(), count: 20, size: 1000, stamp: 101)
        let next = try Self.receiveOne(landing, from: b)
        #expect(landing.segment(0, 0).baseAddress == buffers[1])
        #expect(!next.isEmpty && next[0] != first[0])
        // The first buffer still holds exactly what landed in it.
        for (k, d) in first.enumerated() {
            #expect(Array(UnsafeRawBufferPointer(start: buffers[0] + k * 1000, count: d.count)) == d)
            #expect(d.count == 1000 && d[0] == 1 &+ UInt8(truncatingIfNeeded: k &* 3))
        }
    }
}
