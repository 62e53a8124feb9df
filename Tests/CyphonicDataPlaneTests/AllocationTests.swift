import CCyphonicMallocCounter
import CyphonicCore
import CyphonicCrypto
import CyphonicPosix
import CyphonicWire
import Glibc
import Testing

@testable import CyphonicDataPlane

/// The per-packet work of the pipeline, run on one thread with malloc counted
/// (CCyphonicMallocCounter interposes malloc in the test process): routing, staging in a
/// pooled batch, counter, seal, queue hand-off, open, replay check, inner-source check,
/// FIFO release, recycling. None of it may allocate.
@Suite struct AllocationTests {
    @Test func hotPathMakesNoHeapAllocationPerPacket() throws {
        let raw = try SecureBytes.random(count: 32)
        let sender = try DataSession(
            localIndex: 1, remoteIndex: 2, isInitiator: true, send: raw, receive: raw,
            algorithm: .aes256gcm, threads: 2)
        let receiver = try DataSession(
            localIndex: 2, remoteIndex: 1, isInitiator: false, send: raw, receive: raw,
            algorithm: .aes256gcm, threads: 2)
        let peer = Peer(
            staticKey: try X25519PrivateKey().publicKey, fqdn: "b.cyphonic.internal",
            addresses: [IPAddress("198.18.0.2")!, IPAddress("2001:db8:c0ff:ee::2")!], endpoint: Endpoint("198.19.0.2:30000"))
        let table = PeerTable()
        table.withLock {
            table.insertLocked(peer)
            table.installLocked(sender, for: peer, endpoint: nil)
        }
        let pool = BatchPool(size: 8)
        let queue = WorkQueue<PacketBatch>(capacity: 8)
        // An IPv4 packet from 198.18.0.2 to 198.18.0.2 (both checks use the peer's address).
        var packet = [UInt8](repeating: 0xab, count: 1400)
        packet[0] = 0x45
        packet.replaceSubrange(12..<16, with: [198, 18, 0, 2])
        packet.replaceSubrange(16..<20, with: [198, 18, 0, 2])
        var fifo = BatchFIFO()

        func onePacket() -> Bool {
            var ok = false
            packet.withUnsafeBytes { p in
                table.lock()
                let routed = table.routeLocked(packet: p)
                table.unlock()
                guard routed === peer else { return }
                let b = pool.get()
                let slot = b.slot(0)
                UnsafeMutableRawBufferPointer(rebasing: slot[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + p.count)])
                    .copyMemory(from: p)
                let counter = sender.nextCounter()
                guard let sealed = sender.seal(slot: slot, length: p.count, counter: counter, keyIndex: 0) else { return }
                b.count = 1
                _ = fifo.append(b)
                queue.push(b)
                guard let taken = queue.pop(), let opened = receiver.open(slot: taken.slot(0), length: sealed, counter: counter, keyIndex: 0),
                    receiver.replay.withLock({ $0.accept(counter) })
                else { return }
                let inner = UnsafeRawBufferPointer(rebasing: taken.slot(0)[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + opened)])
                ok = PeerTable.sourceBelongs(inner, to: peer) && fifo.removeFirst() === taken
                pool.put(taken)
            }
            return ok
        }

        #expect(onePacket())  // warm-up: lazily created cipher contexts, first queue use
        let before = ccy_thread_allocations()
        var good = 0
        for _ in 0..<10_000 where onePacket() { good += 1 }
        let allocations = ccy_thread_allocations() - before
        print("hot path: \(good) packets sealed, handed over, opened and released with \(allocations) heap allocations")
        #expect(good == 10_000)
        #expect(allocations == 0)
    }

    /// The offloads around it: a run of 20 datagrams out as one UDP GSO send, in through a
    /// GRO landing area, and 20 TCP segments coalesced into one TUN write (to /dev/null).
    @Test func offloadPathsMakeNoHeapAllocation() throws {
        let out = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let inbound = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        #expect(inbound.enableGRO())
        let target = SocketAddress(try inbound.localEndpoint())
        let sender = UDPSegmentSender(socket: out)
        let landing = DatagramLanding()
        let null = open("/dev/null", O_WRONLY)
        defer { close(null) }
        let coalescer = TunCoalescer { iov, count in _ = writev(null, iov, count) }
        let segments = TunOffloadTests().segment(TunOffloadTests().superPacket(v6: false, payload: 20 * 1000, gsoSize: 1000))
        let stride = 2048
        let offset = 16
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: segments.count * stride, alignment: 16)
        defer { memory.deallocate() }
        for (i, seg) in segments.enumerated() {
            seg.withUnsafeBytes { (memory.baseAddress! + i * stride + offset).copyMemory(from: $0.baseAddress!, byteCount: seg.count) }
        }
        // A pristine copy: the coalescer rewrites the first packet's headers in place.
        let pristine = UnsafeMutableRawBufferPointer.allocate(byteCount: memory.count, alignment: 16)
        defer { pristine.deallocate() }
        pristine.copyMemory(from: UnsafeRawBufferPointer(memory))
        let lengths = segments.map(\.count)
        let count = segments.count
        func oneRun() throws -> Bool {
            for i in 0..<count { try sender.append(memory.baseAddress! + i * stride + offset, length: lengths[i], to: target) }
            try sender.flush()
            var received = 0
            var idle = 0
            while received < count, idle < 100 {
                guard waitReadable(inbound.fd, timeoutMilliseconds: 20).0 else {
                    idle += 1
                    continue
                }
                let n = try landing.receive(from: inbound)
                for m in 0..<n { received += landing.segments(m) }
            }
            memory.copyMemory(from: UnsafeRawBufferPointer(pristine))
            for i in 0..<count { coalescer.add(memory.baseAddress! + i * stride + offset, length: lengths[i]) }
            coalescer.flush()
            return received == count
        }
        #expect(try oneRun())  // warm-up
        let writes = coalescer.writes
        let calls = sender.calls
        let before = ccy_thread_allocations()
        var good = 0
        for _ in 0..<1_000 where try oneRun() { good += 1 }
        let allocations = ccy_thread_allocations() - before
        print(
            "offloads: \(good) runs of \(segments.count) datagrams in \(sender.calls - calls) sends and \(coalescer.writes - writes) TUN writes, \(allocations) heap allocations"
        )
        #expect(good == 1_000)
        #expect(sender.calls - calls == 1_000 && coalescer.writes - writes == 1_000)
        #expect(allocations == 0)
    }

    @Test func theCounterSeesAllocations() {
        let before = ccy_thread_allocations()
        let array = (0..<100).map { [UInt8](repeating: UInt8($0), count: 64) }
        #expect(array.count == 100)
        #expect(ccy_thread_allocations() - before >= 100)
    }
}
