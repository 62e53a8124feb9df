import CyphonicCore
import CyphonicCrypto
import CyphonicPosix
import CyphonicWire
import Glibc
import Synchronization
import Testing

@testable import CyphonicDataPlane

/// The real pipeline (staging, crypto workers, in-order release) between the in-process
/// edges `cyphonic-bench pipeline` uses: every packet the source gives is sealed once, in
/// order per peer, and opens with the peer's key to exactly what the source gave. No
/// TUN, no root.
@Suite struct PipelineEdgesTests {
    final class Source: @unchecked Sendable {
        let peers: Int
        let total: Int
        var given = 0
        init(peers: Int, total: Int) {
            self.peers = peers
            self.total = total
        }
        /// Packet `k` goes to peer `k / 64 % peers` (bursts of 64), payload stamped with k.
        func fill(_ slots: UnsafeMutableRawPointer, _ stride: Int, _ lengths: UnsafeMutablePointer<Int>, _ count: Int) -> Int {
            guard given < total else { return 0 }
            let n = min(count, 64, total - given)
            for j in 0..<n {
                let k = given + j
                let p = UnsafeMutableRawBufferPointer(start: slots + j * stride, count: 300)
                p.initializeMemory(as: UInt8.self, repeating: 0)
                let peer = k / 64 % peers
                p.copyBytes(from: [0x45, 0, 1, 44, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 1, UInt8(1 + peer)])
                p.storeBytes(of: UInt32(k).bigEndian, toByteOffset: 28, as: UInt32.self)
                lengths[j] = 300
            }
            given += n
            return n
        }
    }

    final class Sink: @unchecked Sendable {
        let received = Mutex<[(index: UInt32, counter: UInt64, datagram: [UInt8])]>([])
        func take(_ iov: UnsafePointer<iovec>, _ n: Int) {
            var got: [(UInt32, UInt64, [UInt8])] = []
            for i in 0..<n {
                let d = UnsafeRawBufferPointer(start: iov[i].iov_base, count: iov[i].iov_len)
                got.append(
                    (
                        UInt32(bigEndian: d.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                        UInt64(bigEndian: d.loadUnaligned(fromByteOffset: 8, as: UInt64.self)), Array(d)
                    ))
            }
            received.withLock { $0 += got.map { (index: $0.0, counter: $0.1, datagram: $0.2) } }
        }
    }

    /// A table of `count` peers 198.18.1.1… ("p0.cyphonic.internal"…), each with a
    /// session of its own random key (returned, by peer) at 127.0.0.1:9.
    func table(peers count: Int, mode: PipelineMode) throws -> (PeerTable, [SecureBytes], [Peer]) {
        let table = PeerTable()
        var keys: [SecureBytes] = []
        var all: [Peer] = []
        for p in 0..<count {
            let key = try SecureBytes.random(count: 32)
            keys.append(key)
            let peer = Peer(
                staticKey: try X25519PrivateKey().publicKey, fqdn: "p\(p).cyphonic.internal",
                addresses: [IPAddress.v4(198, 18, 1, UInt8(1 + p))], endpoint: nil)
            all.append(peer)
            let session = try DataSession(
                localIndex: UInt32(1 + p), remoteIndex: UInt32(100 + p), isInitiator: true, send: key, receive: key,
                algorithm: .aes256gcm, threads: mode.keySlots)
            table.withLock {
                _ = table.insertLocked(peer)
                table.installLocked(session, for: peer, endpoint: SocketAddress(Endpoint("127.0.0.1:9")!))
            }
        }
        return (table, keys, all)
    }

    /// Runs a pipeline over `table` between `edges` until `sink` got `total` packets,
    /// counting the dropped ones (20 s at most), and stops it. Returns it and its drops.
    func run(
        _ table: PeerTable, _ mode: PipelineMode, _ reading: TunReading, poolSize: Int, sink: Sink, total: Int, _ edges: PipelineEdges
    ) throws -> (Pipeline, Int) {
        let socket = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        defer { socket.close() }
        let pipeline = Pipeline(
            tun: TunDevice(adopting: open("/dev/null", O_RDWR), name: "test"), socket: socket, peers: table, control: Quiet(),
            mode: mode, poolSize: poolSize)
        pipeline.tunReading = reading
        pipeline.edges = edges
        try pipeline.start()
        let dropped = { Int(DropReason.allCases.reduce(0) { $0 + pipeline.stats.drops($1) }) }
        let deadline = monotonicSeconds() + 20
        while sink.received.withLock({ $0.count }) + dropped() < total, monotonicSeconds() < deadline { usleep(10_000) }
        pipeline.stop()
        return (pipeline, dropped())
    }

    /// Both multi-threaded designs: the TUN reader thread, and the workers reading in turn
    /// (with one worker too: it must also seal the batches it queued for others).
    @Test(
        arguments: zip(
            [PipelineMode.single, .multi(workers: 2), .multi(workers: 3), .multi(workers: 1), .multi(workers: 2), .multi(workers: 3)],
            [TunReading.thread, .thread, .thread, .workers, .workers, .workers]))
    func everyPacketIsSealedOnceInOrderPerPeer(mode: PipelineMode, reading: TunReading) throws {
        let peers = 3
        let total = 64 * 60 + 17
        let (table, keys, _) = try table(peers: peers, mode: mode)
        let source = Source(peers: peers, total: total)
        let sink = Sink()
        // A packet the pipeline drops on purpose (CoDel, when a batch waited too long on a
        // loaded machine) is counted, and its counter is never sent: every packet is
        // either delivered once, in order, or counted as dropped — none vanishes.
        let (_, dropped) = try run(
            table, mode, reading, poolSize: 8, sink: sink, total: total,
            PipelineEdges(tunSource: { source.fill($0, $1, $2, $3) }, udpSink: { iov, n, _ in sink.take(iov, n) }))
        let got = sink.received.withLock { $0 }
        #expect(got.count + dropped == total, "\(got.count) delivered, \(dropped) dropped")
        #expect(dropped <= total / 100, "dropped \(dropped) of \(total)")
        var seen = Set<UInt32>()
        for p in 0..<peers {
            let mine = got.filter { $0.index == UInt32(100 + p) }
            // Counters leave in order, without repeat; a gap only where a packet was dropped.
            #expect(zip(mine, mine.dropFirst()).allSatisfy { $0.counter < $1.counter })
            #expect(Int(mine.last?.counter ?? 0) + 1 - mine.count <= dropped)
            let opener = try keys[p].withUnsafeBytes { try AEADKey(.aes256gcm, key: $0) }
            var lastStamp = -1
            for m in mine {
                let plain = try opener.open(nonce: m.counter, aad: Array(m.datagram[0..<Header.size]), ciphertext: Array(m.datagram[Header.size...]))
                #expect(plain.count == 300 && plain[19] == UInt8(1 + p))
                let stamp = Int(UInt32(plain[28]) << 24 | UInt32(plain[29]) << 16 | UInt32(plain[30]) << 8 | UInt32(plain[31]))
                #expect(stamp > lastStamp, "peer \(p): packet \(stamp) after \(lastStamp)")
                lastStamp = stamp
                seen.insert(UInt32(stamp))
            }
        }
        #expect(seen.count == got.count)
    }

    /// Packets for a closed (parked) tunnel's address, from either design's TUN path:
    /// each is dropped as `no_route`, and the peer's name is wanted once, so the control
    /// thread asks for the tunnel again; the live peers' packets all go through.
    @Test(arguments: [(PipelineMode.single, TunReading.thread), (.multi(workers: 2), .thread), (.multi(workers: 2), .workers)])
    func packetsForAParkedAddressWantItsTunnel(mode: PipelineMode, reading: TunReading) throws {
        let (table, _, peers) = try table(peers: 3, mode: mode)
        table.withLock { table.parkLocked(peers[2], now: monotonicSeconds()) }
        let total = 64 * 9
        let source = Source(peers: 3, total: total)
        let sink = Sink()
        let (pipeline, dropped) = try run(
            table, mode, reading, poolSize: 8, sink: sink, total: total,
            PipelineEdges(tunSource: { source.fill($0, $1, $2, $3) }, udpSink: { iov, n, _ in sink.take(iov, n) }))
        #expect(pipeline.stats.drops(.noRoute) == UInt64(total / 3))
        #expect(sink.received.withLock { $0.count } + dropped == total)
        #expect(!sink.received.withLock { $0 }.contains { $0.index == 102 })
        #expect(table.takeWanted() == ["p2.cyphonic.internal"])
    }

    /// A TUN with offload as `read(2)` gives it: reads in order, one per call.
    final class OffloadSource: @unchecked Sendable {
        let reads: [[UInt8]]
        var next = 0
        init(reads: [[UInt8]]) { self.reads = reads }
        func read(_ buffer: UnsafeMutableRawPointer, _ capacity: Int) -> Int {
            guard next < reads.count else { return 0 }
            let r = reads[next]
            next += 1
            precondition(r.count <= capacity)
            r.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: r.count) }
            return r.count
        }
    }

    /// Read `r` of the offload test: a vnet header and an IPv4/TCP packet to peer `peer`,
    /// a super-packet of `payload` bytes cut every 1380 (`gso`), or one packet (no GSO).
    func offloadRead(_ r: Int, peer: Int, payload: Int, gso: Bool) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: 10 + 40 + payload)
        p[0] = 1  // NEEDS_CSUM
        p[1] = gso ? 1 : 0
        p[2] = 40
        p[4] = UInt8(1380 & 0xff)
        p[5] = UInt8(1380 >> 8)
        p[6] = 20
        p[8] = 16
        p.replaceSubrange(10..<30, with: [0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 1, UInt8(1 + peer)])
        p.replaceSubrange(30..<50, with: [0x13, 0x88, 0xc3, 0x50, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, 0x18, 0, 0, 0, 0, 0, 0])
        for i in 0..<payload { p[50 + i] = UInt8(truncatingIfNeeded: r &* 13 &+ i) }
        return p
    }

    /// TCP super-packets from a TUN with offload are cut straight into batch slots (or the
    /// single thread's work slots): every segment is sealed once, in order per peer, and
    /// opens to exactly the packet ``TunOffload/segment`` cuts from the same read,
    /// including super-packets that span two batches and plain packets between them.
    @Test(
        arguments: [
            (PipelineMode.single, TunReading.thread), (.multi(workers: 2), .thread), (.multi(workers: 2), .workers),
            (.multi(workers: 1), .workers),
        ])
    func offloadSuperPacketsAreCutIntoTheSlotsTheyAreSealedIn(mode: PipelineMode, reading: TunReading) throws {
        let peers = 3
        let (table, keys, _) = try table(peers: peers, mode: mode)
        var reads: [[UInt8]] = []
        var expected = [[[UInt8]]](repeating: [], count: peers)
        for r in 0..<60 {
            let peer = r / 2 % peers
            let read = offloadRead(r, peer: peer, payload: [64_000, 9_000, 700, 30_001][r % 4], gso: r % 4 != 2)
            reads.append(read)
            var copy = read
            let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 128 * 2048, alignment: 64)
            defer { out.deallocate() }
            var lengths = [Int](repeating: 0, count: 128)
            let n = copy.withUnsafeMutableBytes { c in
                lengths.withUnsafeMutableBufferPointer {
                    TunOffload.segment(c, count: read.count, out: out, stride: 2048, offset: 0, maxSegments: 128, lengths: $0.baseAddress!)
                }
            }
            #expect(n > 0)
            for i in 0..<n { expected[peer].append(Array(UnsafeRawBufferPointer(rebasing: out[(i * 2048)..<(i * 2048 + lengths[i])]))) }
        }
        let total = expected.reduce(0) { $0 + $1.count }
        let source = OffloadSource(reads: reads)
        let sink = Sink()
        // A pool of 32: a burst of super-packets to three peers needs more batches than 8.
        let (pipeline, dropped) = try run(
            table, mode, reading, poolSize: 32, sink: sink, total: total,
            PipelineEdges(tunSource: { _, _, _, _ in 0 }, udpSink: { iov, n, _ in sink.take(iov, n) }, offloadSource: { source.read($0, $1) }))
        let got = sink.received.withLock { $0 }
        #expect(got.count + dropped == total, "\(got.count) delivered, \(dropped) dropped")
        #expect(dropped <= total / 100, "dropped \(dropped) of \(total): \(DropReason.allCases.map { "\($0)=\(pipeline.stats.drops($0))" })")
        for p in 0..<peers {
            let opener = try keys[p].withUnsafeBytes { try AEADKey(.aes256gcm, key: $0) }
            // In order: each sealed segment is the next expected one (or a later one, after a
            // counted drop), and its counter is above the last one: no nonce is used twice.
            let mine = got.filter { $0.index == UInt32(100 + p) }
            #expect(zip(mine, mine.dropFirst()).allSatisfy { $0.counter < $1.counter })
            var at = 0
            var skipped = 0
            for m in mine {
                let plain = try opener.open(nonce: m.counter, aad: Array(m.datagram[0..<Header.size]), ciphertext: Array(m.datagram[Header.size...]))
                guard let found = expected[p][at...].firstIndex(of: plain) else {
                    Issue.record("peer \(p): a segment that is not the next one cut from its reads")
                    break
                }
                skipped += found - at
                at = found + 1
            }
            #expect(skipped <= dropped, "peer \(p): \(skipped) segments missing, \(dropped) dropped")
        }
    }

    final class Quiet: ControlPlane {
        func handleControl(_ datagram: UnsafeRawBufferPointer, from: SocketAddress, verified: Bool) {}
        func tick() {}
    }
}
