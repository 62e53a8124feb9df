import CCyphonicMallocCounter
import CyphonicCore
import CyphonicCrypto
import CyphonicPosix
import CyphonicWire
import Testing

@testable import CyphonicDataPlane

/// The per-packet work of the pipeline, run on one thread with malloc counted
/// (CCyphonicMallocCounter interposes malloc in the test process): routing, staging in a
/// pooled batch, counter, seal, queue hand-off, open, replay check, inner-source check,
/// FIFO release, recycling. None of it may allocate.
@Suite struct AllocationTests {
    @Test func hotPathMakesNoHeapAllocationPerPacket() throws {
        let raw = try SecureBytes.random(count: 32)
        let sender = try DataSession(localIndex: 1, remoteIndex: 2, isInitiator: true, send: raw, receive: raw,
                                     algorithm: .aes256gcm, threads: 2)
        let receiver = try DataSession(localIndex: 2, remoteIndex: 1, isInitiator: false, send: raw, receive: raw,
                                       algorithm: .aes256gcm, threads: 2)
        let peer = Peer(staticKey: try X25519PrivateKey().publicKey, fqdn: "b.cyphonic.internal",
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
                      receiver.replay.accept(counter) else { return }
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

    @Test func theCounterSeesAllocations() {
        let before = ccy_thread_allocations()
        let array = (0..<100).map { [UInt8](repeating: UInt8($0), count: 64) }
        #expect(array.count == 100)
        #expect(ccy_thread_allocations() - before >= 100)
    }
}
