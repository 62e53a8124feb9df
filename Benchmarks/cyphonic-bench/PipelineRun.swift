import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicPosix
import CyphonicWire
import Foundation
import Synchronization

/// One pipeline with `peers` sessions, fed by ``BenchSource`` and drained by ``BenchSink``.
struct PipelineRun {
    let design: PipelineDesign
    var mode: PipelineMode { design.mode }
    let size: Int
    let peers: Int
    let pool: Int
    /// Reads come as from a TUN with offload (``BenchSource/read(_:capacity:)``).
    var offload = false

    func measure(seconds: Double) throws -> PipelineMeasurement {
        let table = PeerTable()
        let endpoint = SocketAddress(Endpoint("127.0.0.1:9")!)
        for p in 0..<peers {
            let peer = Peer(
                staticKey: try X25519PrivateKey().publicKey, fqdn: "bench\(p).cyphonic.internal",
                addresses: [BenchSource.address(of: p)], endpoint: nil)
            let session = try DataSession(
                localIndex: UInt32(1 + p), remoteIndex: BenchSink.firstIndex + UInt32(p), isInitiator: true,
                send: try SecureBytes.random(count: 32), receive: try SecureBytes.random(count: 32), algorithm: .aes256gcm,
                threads: mode.keySlots)
            table.withLock {
                _ = table.insertLocked(peer)
                table.installLocked(session, for: peer, endpoint: endpoint)
            }
        }
        let devNull = open("/dev/null", O_RDWR)
        guard devNull >= 0 else { throw SystemError("open(/dev/null)", errno: errno) }
        let socket = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        let pipeline = Pipeline(
            tun: TunDevice(adopting: devNull, name: "bench"), socket: socket, peers: table, control: IdleControl(), mode: mode,
            mtu: 1420, poolSize: pool, udpOffload: true)
        pipeline.tunReading = design.tunReading
        let source = BenchSource(size: size, peers: peers)
        let sink = BenchSink(peers: peers)
        var edges = PipelineEdges(
            tunSource: { slots, stride, lengths, count in source.fill(slots, stride: stride, lengths: lengths, count: count) },
            udpSink: { iov, n, _ in sink.take(iov, n) })
        if offload { edges.offloadSource = { buffer, capacity in source.read(buffer, capacity: capacity) } }
        pipeline.edges = edges
        try pipeline.start()
        defer {
            pipeline.stop()
            socket.close()
        }
        Thread.sleep(forTimeInterval: 0.3)
        let (p0, c0, t0) = (sink.packets.load(ordering: .acquiring), ProcessResources.cpuSeconds(), monotonicSeconds())
        Thread.sleep(forTimeInterval: seconds)
        let (p1, c1, t1) = (sink.packets.load(ordering: .acquiring), ProcessResources.cpuSeconds(), monotonicSeconds())
        let packets = Double(p1 - p0)
        return PipelineMeasurement(
            design: design, size: size, packetsPerSecond: packets / (t1 - t0), cpuMicrosPerPacket: (c1 - c0) / packets * 1e6,
            cpuCores: (c1 - c0) / (t1 - t0), outOfOrder: sink.outOfOrder.load(ordering: .acquiring),
            gaps: sink.gaps.load(ordering: .acquiring), dropped: DropReason.allCases.reduce(0) { $0 + pipeline.stats.drops($1) })
    }
}

/// A control plane with nothing to do (no handshakes in the benchmark).
final class IdleControl: ControlPlane {
    func handleControl(_ datagram: UnsafeRawBufferPointer, from: SocketAddress, verified: Bool) {}
    func tick() {}
}

/// Inner IPv4/UDP packets of one size, a burst of up to 64 to each peer in turn; or, as
/// a TUN with offload reads, one IPv4/TCP super-packet per read (a vnet header, then up
/// to 44 segments' worth of data to cut into packets of that size), to each peer in
/// turn. Called only by the staging thread (the TUN turn orders the workers' calls).
final class BenchSource: @unchecked Sendable {
    private let templates: [[UInt8]]
    private let superPackets: [[UInt8]]
    private var next = 0

    static func address(of peer: Int) -> IPAddress { .v4(198, 18, UInt8(1 + peer / 250), UInt8(1 + peer % 250)) }

    init(size: Int, peers: Int) {
        templates = (0..<peers).map { p in
            var packet = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ p) }
            let dst = BenchSource.address(of: p).bytes
            packet.replaceSubrange(0..<20, with: [0x45, 0, UInt8(size >> 8), UInt8(size & 0xff), 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1] + dst)
            return packet
        }
        // The kernel's TSO: TCP MSS `size - 40`, as much data as 44 such segments carry.
        let mss = max(1, size - 40)
        let data = mss * min(44, 64_000 / mss)
        superPackets = (0..<peers).map { p in
            var read = [UInt8](repeating: 0, count: 10 + 40 + data)
            read[0] = 1  // NEEDS_CSUM
            read[1] = 1  // GSO TCPv4
            read[2] = 40
            read[4] = UInt8(mss & 0xff)
            read[5] = UInt8(mss >> 8)
            read[6] = 20
            read[8] = 16
            let dst = BenchSource.address(of: p).bytes
            read.replaceSubrange(10..<30, with: [0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1] + dst)
            read.replaceSubrange(30..<50, with: [0x13, 0x88, 0xc3, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0, 0, 0, 0, 0, 0])
            for i in 0..<data { read[50 + i] = UInt8(truncatingIfNeeded: i &* 31 &+ p) }
            return read
        }
    }

    /// One read of a TUN with offload: the next peer's super-packet.
    func read(_ buffer: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let read = superPackets[next]
        next = (next + 1) % superPackets.count
        guard read.count <= capacity else { return 0 }
        read.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: read.count) }
        return read.count
    }

    func fill(_ slots: UnsafeMutableRawPointer, stride: Int, lengths: UnsafeMutablePointer<Int>, count: Int) -> Int {
        let template = templates[next]
        next = (next + 1) % templates.count
        let n = min(count, PacketBatch.capacity)
        template.withUnsafeBytes { t in
            for k in 0..<n {
                (slots + k * stride).copyMemory(from: t.baseAddress!, byteCount: t.count)
                lengths[k] = t.count
            }
        }
        return n
    }
}

/// Counts the sealed datagrams and checks their order per session: each counter must be
/// above the last one seen (out of order otherwise); a jump counts as a gap (a drop).
/// Runs of one session come from one releasing thread at a time (the pipeline's claim),
/// so its slot in `last` is never written by two threads at once.
final class BenchSink: @unchecked Sendable {
    static let firstIndex: UInt32 = 1000
    let packets = Atomic<Int>(0)
    let outOfOrder = Atomic<Int>(0)
    let gaps = Atomic<Int>(0)
    private let last: UnsafeMutablePointer<UInt64>
    private let peers: Int

    init(peers: Int) {
        self.peers = peers
        last = .allocate(capacity: peers)
        last.initialize(repeating: .max, count: peers)
    }

    deinit { last.deallocate() }

    func take(_ iov: UnsafePointer<iovec>, _ n: Int) {
        var late = 0
        var jumps = 0
        for i in 0..<n {
            let d = UnsafeRawPointer(iov[i].iov_base!)
            let index = UInt32(bigEndian: d.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            let counter = UInt64(bigEndian: d.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            let p = Int(index &- Self.firstIndex)
            guard p >= 0, p < peers else { continue }
            let previous = last[p]
            if previous != .max, counter <= previous {
                late += 1
                continue
            }
            if previous != .max, counter > previous + 1 { jumps += 1 }
            last[p] = counter
        }
        packets.wrappingAdd(n, ordering: .relaxed)
        if late > 0 { outOfOrder.wrappingAdd(late, ordering: .relaxed) }
        if jumps > 0 { gaps.wrappingAdd(jumps, ordering: .relaxed) }
    }
}
