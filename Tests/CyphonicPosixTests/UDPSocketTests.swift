import CyphonicCore
import Glibc
import Testing

@testable import CyphonicPosix

@Suite struct UDPSocketTests {
    @Test(arguments: ["127.0.0.1:0", "[::1]:0"])
    func singleDatagramRoundTrip(_ bind: String) throws {
        let a = try UDPSocket(bind: Endpoint(bind)!)
        let b = try UDPSocket(bind: Endpoint(bind)!)
        try b.setReceiveTimeout(milliseconds: 2000)
        try a.send([1, 2, 3], to: b.localEndpoint())
        var buf = [UInt8](repeating: 0, count: 64)
        let (n, from) = try buf.withUnsafeMutableBytes { try b.receive(into: $0) }
        #expect(n == 3 && Array(buf.prefix(3)) == [1, 2, 3])
        #expect(from == (try a.localEndpoint()))
    }

    @Test func batchesGoOutAndComeBackInOrder() throws {
        let a = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let b = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        try b.setReceiveTimeout(milliseconds: 2000)
        let out = DatagramBatch(capacity: 64, bufferSize: 1500)
        let target = try b.localEndpoint()
        for i in 0..<64 {
            let buf = out.buffer(i)
            for j in 0..<100 { buf[j] = UInt8(truncatingIfNeeded: i &+ j) }
            out.setLength(i, 100 + i)
            out.setEndpoint(i, target)
        }
        out.count = 64
        try a.sendBatch(out)
        let inBatch = DatagramBatch(capacity: 64, bufferSize: 1500)
        var seen = 0
        while seen < 64 {
            let n = try b.receiveBatch(inBatch)
            for k in 0..<n {
                let i = seen + k
                #expect(inBatch.length(k) == 100 + i)
                #expect(inBatch.payload(k)[0] == UInt8(i) && inBatch.payload(k)[99] == UInt8(truncatingIfNeeded: i + 99))
                #expect(inBatch.endpoint(k) == (try a.localEndpoint()))
            }
            seen += n
        }
        #expect(seen == 64)
    }

    @Test func gsoSendIsSplitOrCoalescedByTheKernel() throws {
        let a = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let plain = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        try plain.setReceiveTimeout(milliseconds: 2000)
        let out = DatagramBatch(capacity: 1, bufferSize: 16_000)
        let segments = 8
        let size = 1000
        for i in 0..<(segments * size) { out.buffer(0)[i] = UInt8(i / size) }
        out.setLength(0, segments * size)
        out.setSegmentSize(0, size)
        out.setEndpoint(0, try plain.localEndpoint())
        out.count = 1
        try a.sendBatch(out)
        // Without GRO the receiver sees eight separate datagrams.
        let inBatch = DatagramBatch(capacity: 16, bufferSize: 16_000)
        var received: [[UInt8]] = []
        while received.count < segments {
            let n = try plain.receiveBatch(inBatch)
            for k in 0..<n { received.append(Array(inBatch.payload(k))) }
        }
        #expect(received.count == segments)
        for (i, d) in received.enumerated() { #expect(d.count == size && d.allSatisfy { $0 == UInt8(i) }) }

        // With GRO the kernel may hand over one coalesced buffer and its segment size.
        let gro = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        try gro.setReceiveTimeout(milliseconds: 2000)
        #expect(gro.enableGRO())
        out.setEndpoint(0, try gro.localEndpoint())
        try a.sendBatch(out)
        var total = 0
        while total < segments * size {
            let n = try gro.receiveBatch(inBatch)
            for k in 0..<n {
                let seg = inBatch.segmentSize(k)
                #expect(seg == 0 || seg == size)
                total += inBatch.length(k)
            }
        }
        #expect(total == segments * size)
    }

    @Test func dualStackSocketReportsIPv4Senders() throws {
        let server = try UDPSocket(bind: Endpoint("[::]:0")!, dualStack: true)
        try server.setReceiveTimeout(milliseconds: 2000)
        let client = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        try client.send([9], to: Endpoint(address: IPAddress("127.0.0.1")!, port: try server.localEndpoint().port))
        var buf = [UInt8](repeating: 0, count: 8)
        let (_, from) = try buf.withUnsafeMutableBytes { try server.receive(into: $0) }
        #expect(from == (try client.localEndpoint()))
        #expect(from.address.isIPv4)
    }

    @Test func errorsNameTheCallAndErrno() throws {
        let a = try UDPSocket(bind: Endpoint("127.0.0.1:0")!, reuseAddress: false)
        do {
            _ = try UDPSocket(bind: try a.localEndpoint(), reuseAddress: false)
            Issue.record("second bind should fail")
        } catch {
            #expect(error.errno == EADDRINUSE)
            #expect(error.description.hasPrefix("bind(127.0.0.1:"))
        }
        let b = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let batch = DatagramBatch(capacity: 4)
        #expect(throws: SystemError.self) { try b.receiveBatch(batch, nonBlocking: true) }
        do { try b.receiveBatch(batch, nonBlocking: true) } catch { #expect(error.wouldBlock) }
    }

    @Test func socketAddressesRoundTrip() {
        for text in ["198.19.0.1:4501", "[2001:db8:1::5]:30000", "0.0.0.0:0"] {
            let e = Endpoint(text)!
            #expect(Endpoint(socketAddress: e.socketAddress.0) == e)
        }
    }
}
