import CyphonicCore
import CyphonicPosix
import CyphonicWire
import Foundation
import Synchronization

// The data plane (DESIGN §2, paper Fig. 3). Stages, and which run in parallel:
//
//   1. TUN reader      (1 thread, sequential)  reads a burst of packets (no lock held), routes each by
//                      destination virtual IP to its peer, stamps the session's next
//                      counter (= arrival order), and stages them in per-session batches.
//   2. UDP receiver    (1 thread, sequential)  recvmmsg a burst of datagrams; capsules go
//                      to per-session batches in arrival order, handshakes to the
//                      control plane.
//   3. Crypto workers  (N threads, parallel)   take whole batches from one shared queue
//                      and seal or open every packet in place, each with its own cipher
//                      contexts; batches may finish in any order.
//   4. In-order release (by whichever worker finishes a peer's oldest batch; one at a
//                      time per peer and direction)  releases that peer's finished
//                      batches strictly in staging order: outbound as UDP GSO sends,
//                      inbound after the replay check and the inner-source check,
//                      written to the TUN.
//   5. Control         (1 thread)              timers: keepalive, rekey, handshake retry,
//                      idle teardown (the ControlPlane's tick).
//
// Ordering rule: each batch is appended to its peer's FIFO *and* to the crypto queue.
// A worker that finishes a batch marks it done; if the batch is now at the head of its
// peer's FIFO and no thread is releasing that peer's direction, the worker claims the
// direction and releases every finished batch from the head, then re-checks (under the
// same lock) for batches finished meanwhile. So there is no releaser thread to wake:
// one hand-off per batch. Order is kept per peer, so a slow peer never holds back
// another, and a packet that fails to decrypt is marked and released as a drop, so it
// never blocks those behind it.
// Fast path: when a peer has nothing in flight in a direction, the staging thread seals
// or opens a small batch and releases it itself (no hand-off; order trivially kept).
// Batches (up to 64 packets) cross threads, never single packets; all buffers come
// from a fixed pool of batches, so there is no allocation per packet, and the OS
// thread count is 3 + N whatever the number of peers.
//
// `--pipeline single` runs stages 1–4 on one thread (the conventional design).

/// What the data plane hands to the node's control plane.
public protocol ControlPlane: AnyObject, Sendable {
    /// A datagram that is not a capsule (handshake messages, hole punching), on the receiving thread.
    func handleControl(_ datagram: UnsafeRawBufferPointer, from: SocketAddress)
    /// Housekeeping, every ~250 ms, on the control thread.
    func tick()
}

/// Which pipeline design runs.
public enum PipelineMode: Sendable, Equatable, CustomStringConvertible {
    /// The conventional design: one thread does everything.
    case single
    /// The paper's design with `workers` crypto threads.
    case multi(workers: Int)

    /// Cipher contexts a session needs: one per packet-crypto thread plus one for control.
    /// Multi: workers 0..<N, then the TUN reader and the UDP receiver (fast path), then control.
    public var keySlots: Int {
        switch self {
        case .single: return 2
        case let .multi(workers): return workers + 3
        }
    }

    public var description: String {
        switch self {
        case .single: return "single"
        case let .multi(workers): return "multi (\(workers) crypto workers)"
        }
    }
}

/// Runs the data plane between one TUN device and one UDP socket. `start()` spawns the
/// threads; `stop()` joins them. `@unchecked Sendable`: mutable state is confined to
/// its thread or guarded by `board` (see the stage list above).
public final class Pipeline: @unchecked Sendable {
    public let tun: TunDevice
    public let socket: UDPSocket
    public let peers: PeerTable
    public let stats: DataPlaneStats
    public let mode: PipelineMode
    private let control: any ControlPlane
    let pool: BatchPool
    private let cryptoQueue: WorkQueue<PacketBatch>
    private let board = MutexCondition()
    private let running = Atomic<Bool>(false)
    private let threads = DispatchGroup()
    /// The TUN's MTU.
    public let mtu: Int
    /// UDP GSO on send and GRO on receive (falls back to plain datagrams where refused).
    public let udpOffload: Bool
    /// Whether the socket accepted UDP_GRO (set by `start()`).
    public private(set) var groEnabled = false
    /// Largest inner packet accepted from the TUN: the MTU, or what a slot can seal.
    private var maxPayload: Int { min(mtu, PacketBatch.slotSize - Header.size - 16) }

    /// `poolSize` bounds the batches in flight (and so the queueing delay).
    public init(tun: TunDevice, socket: UDPSocket, peers: PeerTable, control: any ControlPlane, mode: PipelineMode,
                mtu: Int = 1420, poolSize: Int = 128, udpOffload: Bool = true, stats: DataPlaneStats = DataPlaneStats()) {
        self.tun = tun
        self.socket = socket
        self.peers = peers
        self.control = control
        self.mode = mode
        self.mtu = mtu
        self.udpOffload = udpOffload
        self.stats = stats
        pool = BatchPool(size: min(poolSize, 512))
        cryptoQueue = WorkQueue(capacity: 512)
    }

    /// Crypto workers (0 for the single-threaded design).
    var workerCount: Int {
        if case let .multi(workers) = mode { return workers }
        return 0
    }

    /// OS threads the pipeline runs (constant in the number of peers).
    public var threadCount: Int {
        switch mode {
        case .single: return 2
        case let .multi(workers): return 3 + workers
        }
    }

    public func start() throws {
        try tun.setNonBlocking(true)
        groEnabled = udpOffload && socket.enableGRO()
        running.store(true, ordering: .releasing)
        switch mode {
        case .single:
            spawn("cyphonic-single") { self.singleLoop() }
        case let .multi(workers):
            spawn("cyphonic-tun-reader") { self.tunReaderLoop() }
            spawn("cyphonic-udp-receiver") { self.udpReceiverLoop() }
            for w in 0..<workers { spawn("cyphonic-crypto-\(w)") { self.workerLoop(keyIndex: w) } }
        }
        spawn("cyphonic-control") {
            while self.running.load(ordering: .acquiring) {
                self.control.tick()
                usleep(250_000)
            }
        }
    }

    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        cryptoQueue.close()
        threads.wait()
    }

    private func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) {
        threads.enter()
        let t = Thread { [threads] in
            body()
            threads.leave()
        }
        t.name = name
        t.stackSize = 1 << 20
        t.start()
    }

    @inline(__always) private var isRunning: Bool { running.load(ordering: .relaxed) }

    // MARK: stage 1 — TUN reader

    /// What a received datagram's header says.
    private enum Received {
        case bad
        case control
        case capsule(index: UInt32, counter: UInt64)
    }

    /// Reads a received datagram's header with the wire codec (``Header/decode(_:)``):
    /// capsules need a valid header and room for the tag; any other type goes to the
    /// control plane, which decodes it in full.
    @inline(__always)
    private func classify(_ slot: UnsafeMutableRawBufferPointer, length: Int) -> Received {
        guard length >= Header.size, slot[0] == CyphonicVersion.protocolVersion else { return .bad }
        guard slot[1] == MessageType.capsule.rawValue else { return .control }
        guard length >= Header.size + 16,
              let header = try? Header.decode(UnsafeRawBufferPointer(rebasing: slot[0..<Header.size]))
        else { return .bad }
        return .capsule(index: header.receiverIndex, counter: header.counter)
    }

    /// Slots a TUN burst may fill: with offload one read can become up to 122 segments.
    private var landingSlots: Int { tun.vnetHeader ? 256 : PacketBatch.capacity }

    /// The memory one TUN-reading thread reads bursts into, allocated once: landing
    /// slots (one packet each, at offset 0), their lengths, and the 64 KiB read area
    /// for offload super-packets.
    final class TunBurst {
        let slots: Int
        let landing: UnsafeMutableRawBufferPointer
        let scratch: UnsafeMutableRawBufferPointer
        let lengths: UnsafeMutablePointer<Int>

        init(slots: Int) {
            self.slots = slots
            landing = .allocate(byteCount: slots * PacketBatch.slotSize, alignment: 64)
            scratch = .allocate(byteCount: 65_536 + TunOffload.headerSize, alignment: 64)
            lengths = .allocate(capacity: slots)
        }

        /// The `k`-th packet of the last burst.
        @inline(__always)
        func packet(_ k: Int) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: landing[(k * PacketBatch.slotSize)..<(k * PacketBatch.slotSize + lengths[k])])
        }

        deinit {
            landing.deallocate()
            scratch.deallocate()
            lengths.deallocate()
        }
    }

    /// Reads a burst from the TUN into `buffers` with no lock held: up to 64 reads, or
    /// with offload super-packets cut into segments. Returns how many packets.
    private func readTunBurst(_ buffers: TunBurst) -> Int {
        let landing = buffers.landing, lengths = buffers.lengths, scratch = buffers.scratch
        var burst = 0
        if tun.vnetHeader {
            var reads = 0
            while burst < buffers.slots - 128, reads < PacketBatch.capacity {
                let n = read(tun.fd, scratch.baseAddress, scratch.count)
                if n <= 0 { break }
                reads += 1
                let out = UnsafeMutableRawBufferPointer(rebasing: landing[(burst * PacketBatch.slotSize)...])
                let k = TunOffload.segment(scratch, count: n, out: out, stride: PacketBatch.slotSize, offset: 0,
                                           maxSegments: buffers.slots - burst, lengths: lengths + burst)
                if k == 0 { stats.drop(.badHeader) }
                burst += k
            }
        } else {
            while burst < PacketBatch.capacity {
                let n = read(tun.fd, landing.baseAddress! + burst * PacketBatch.slotSize, PacketBatch.slotSize)
                if n <= 0 { break }
                lengths[burst] = n
                burst += 1
            }
        }
        return burst
    }

    private func tunReaderLoop() {
        // Packets are read with no lock held (a syscall each), then routed and staged
        // under one short hold of the peer-table lock per burst.
        let buffers = TunBurst(slots: landingSlots)
        var staged: [PacketBatch] = []
        staged.reserveCapacity(64)
        var full: [PacketBatch] = []
        full.reserveCapacity(64)
        var spares: [PacketBatch] = []
        spares.reserveCapacity(8)
        let out = ThreadOutput(socket: socket, segmentation: udpOffload, tun: tun)
        let fastKey = workerCount
        while isRunning {
            // Hold spare batches before taking the table lock (blocking here is backpressure).
            while spares.count < buffers.slots / PacketBatch.capacity + 1 { spares.append(pool.get()) }
            guard waitReadable(tun.fd, timeoutMilliseconds: 100).0 else { continue }
            let burst = readTunBurst(buffers)
            guard burst > 0 else { continue }
            // The batch and session of the previous packet: the segments of one offload
            // read share a destination, so most packets skip the route lookup (and the
            // reference counting on objects other threads touch too).
            var last: PacketBatch? = nil
            var lastSession: DataSession? = nil
            peers.lock()
            for k in 0..<burst {
                let packet = buffers.packet(k), n = packet.count
                guard n <= maxPayload else {
                    stats.drop(.tooLarge)
                    last = nil
                    continue
                }
                let b: PacketBatch, session: DataSession
                if let l = last, let s = lastSession, Self.sameDestination(packet, buffers.packet(k - 1)) {
                    (b, session) = (l, s)
                } else {
                    guard let peer = peers.routeLocked(packet: packet), let current = peer.current, let endpoint = peer.endpoint else {
                        stats.drop(.noRoute)
                        last = nil
                        continue
                    }
                    guard let fresh = stagedBatch(for: current, of: peer, .outbound, in: &staged, from: { spares.popLast() }) else {
                        stats.drop(.queueFull)
                        last = nil
                        continue
                    }
                    fresh.endpoint = endpoint
                    (b, session) = (fresh, current)
                    (last, lastSession) = (fresh, current)
                }
                let i = b.count
                UnsafeMutableRawBufferPointer(rebasing: b.slot(i)[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + n)])
                    .copyMemory(from: packet)
                b.lengths[i] = n
                b.counters[i] = session.nextCounter()
                b.count = i + 1
                if b.count == PacketBatch.capacity {
                    full.append(b)
                    staged.removeAll { $0 === b }
                    last = nil
                }
            }
            peers.unlock()
            for b in full { submit(b, fastKeyIndex: fastKey, out: out) }
            for b in staged { submit(b, fastKeyIndex: fastKey, out: out) }
            full.removeAll(keepingCapacity: true)
            staged.removeAll(keepingCapacity: true)
        }
        for b in spares { pool.put(b) }
    }

    // MARK: stage 2 — UDP receiver

    private struct ControlDatagram {
        var length = 0
        var from = SocketAddress()
    }

    /// Landing memory for one receiving thread: 64 KiB per message with GRO (a
    /// coalesced run of datagrams), one slot's worth without.
    private func makeLanding() -> DatagramLanding {
        DatagramLanding(messages: PacketBatch.capacity, bufferSize: groEnabled ? DatagramLanding.gro : PacketBatch.slotSize)
    }

    private func udpReceiverLoop() {
        let landing = makeLanding()
        let controlBuffers = UnsafeMutableRawBufferPointer.allocate(byteCount: 8 * 2048, alignment: 16)
        defer { controlBuffers.deallocate() }
        var controls = [ControlDatagram](repeating: ControlDatagram(), count: 8)
        var staged: [PacketBatch] = []
        staged.reserveCapacity(64)
        let out = ThreadOutput(socket: socket, segmentation: udpOffload, tun: tun)
        let fastKey = workerCount + 1
        while isRunning {
            guard waitReadable(socket.fd, timeoutMilliseconds: 100).0 else { continue }
            let n: Int
            // With GRO a message can hold 64 datagrams (a batch): take no more than the free batches.
            do { n = try landing.receive(from: socket, limit: groEnabled ? pool.available : .max) } catch { continue }
            countReceived(landing, messages: n)
            var controlCount = 0
            // The batch of the previous capsule: a GRO message is a run of one sender's
            // datagrams, so most capsules skip the session lookup.
            var lastIndex: UInt32 = 0
            var last: PacketBatch? = nil
            peers.lock()
            for i in 0..<n {
                let from = landing.source(i)
                for k in 0..<landing.segments(i) {
                    let datagram = landing.segment(i, k), length = datagram.count
                    let index: UInt32, counter: UInt64
                    switch classify(datagram, length: length) {
                    case .bad:
                        stats.drop(.badHeader)
                        continue
                    case .control:
                        if controlCount < controls.count, length <= 2048 {
                            UnsafeMutableRawBufferPointer(rebasing: controlBuffers[(controlCount * 2048)..<(controlCount * 2048 + length)])
                                .copyMemory(from: UnsafeRawBufferPointer(datagram))
                            controls[controlCount] = ControlDatagram(length: length, from: from)
                            controlCount += 1
                        } else {
                            stats.drop(.queueFull)
                        }
                        continue
                    case let .capsule(i, c):
                        (index, counter) = (i, c)
                    }
                    guard length <= PacketBatch.slotSize else {
                        stats.drop(.tooLarge)
                        continue
                    }
                    let b: PacketBatch
                    if let l = last, index == lastIndex {
                        b = l
                    } else {
                        guard let (peer, session) = peers.sessionLocked(index: index) else {
                            stats.drop(.unknownSession)
                            continue
                        }
                        guard let fresh = stagedBatch(for: session, of: peer, .inbound, in: &staged, from: { pool.tryGet() }) else {
                            stats.drop(.queueFull)
                            continue
                        }
                        (b, last, lastIndex) = (fresh, fresh, index)
                    }
                    let j = b.count
                    UnsafeMutableRawBufferPointer(rebasing: b.slot(j)[0..<length]).copyMemory(from: UnsafeRawBufferPointer(datagram))
                    b.lengths[j] = length
                    b.counters[j] = counter
                    b.sources[j] = from
                    b.count = j + 1
                    if b.count == PacketBatch.capacity {
                        submit(b, fastKeyIndex: fastKey, out: out)
                        staged.removeAll { $0 === b }
                        last = nil
                    }
                }
            }
            peers.unlock()
            for b in staged { submit(b, fastKeyIndex: fastKey, out: out) }
            staged.removeAll(keepingCapacity: true)
            for c in 0..<controlCount {
                control.handleControl(UnsafeRawBufferPointer(rebasing: controlBuffers[(c * 2048)..<(c * 2048 + controls[c].length)]),
                                      from: controls[c].from)
            }
        }
    }

    /// Whether two IP packets have the same destination address (hence the same route).
    @inline(__always)
    static func sameDestination(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count >= 20, b.count >= 20, a[0] >> 4 == b[0] >> 4 else { return false }
        switch a[0] >> 4 {
        case 4:
            return a.loadUnaligned(fromByteOffset: 16, as: UInt32.self) == b.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
        case 6:
            return a.count >= 40 && b.count >= 40 &&
                a.loadUnaligned(fromByteOffset: 24, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 24, as: UInt64.self) &&
                a.loadUnaligned(fromByteOffset: 32, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 32, as: UInt64.self)
        default:
            return false
        }
    }

    /// The batch being staged for `session`, or a new one taken from `source` (nil when
    /// none is left). Linear search: a burst touches few sessions.
    @inline(__always)
    private func stagedBatch(for session: DataSession, of peer: Peer, _ direction: PacketBatch.Direction,
                             in staged: inout [PacketBatch], from source: () -> PacketBatch?) -> PacketBatch? {
        for b in staged where b.session === session { return b }
        guard let b = source() else { return nil }
        b.direction = direction
        b.peer = peer
        b.session = session
        staged.append(b)
        return b
    }

    /// Batches this small take the fast path when nothing of their peer is in flight.
    static let fastPathLimit = 16

    /// Hands a staged batch on. Fast path: when the peer has nothing in flight in this
    /// direction (empty FIFO, nobody releasing it), the staging thread seals or opens
    /// and releases the batch itself — order is trivially kept and a lone packet pays
    /// no thread hand-offs. Otherwise: to the peer's FIFO and the crypto queue.
    /// `out` is the calling thread's own sender, TUN writer and scratch list.
    private func submit(_ b: PacketBatch, fastKeyIndex: Int, out: ThreadOutput) {
        guard let peer = b.peer else {
            pool.put(b)
            return
        }
        let outbound = b.direction == .outbound
        let inline: Bool = b.count <= Self.fastPathLimit && board.withLock {
            let idle = outbound ? (peer.outbound.count == 0 && !peer.sending) : (peer.inbound.count == 0 && !peer.delivering)
            // Claim the direction so no worker releases a later batch meanwhile.
            if idle { if outbound { peer.sending = true } else { peer.delivering = true } }
            return idle
        }
        if inline {
            crypt(b, keyIndex: fastKeyIndex)
            if outbound { send(b, out: out) } else { deliver(b, out: out) }
            pool.put(b)
            // Give the direction back, releasing any batch that finished meanwhile.
            board.lock()
            if outbound { peer.sending = false } else { peer.delivering = false }
            let more = claimReleasable(peer, outbound: outbound, into: &out.released)
            board.unlock()
            if more { releaseClaimed(peer, outbound: outbound, out: out) }
            return
        }
        let queued: Bool = board.withLock {
            b.direction == .outbound ? peer.outbound.append(b) : peer.inbound.append(b)
        }
        guard queued else {
            stats.drop(.queueFull, UInt64(b.count))
            pool.put(b)
            return
        }
        cryptoQueue.push(b)
    }

    // MARK: stage 3 — crypto workers, which also release

    private func workerLoop(keyIndex: Int) {
        let out = ThreadOutput(socket: socket, segmentation: udpOffload, tun: tun)
        while let b = cryptoQueue.pop() {
            crypt(b, keyIndex: keyIndex)
            guard let peer = b.peer else {
                pool.put(b)
                continue
            }
            let outbound = b.direction == .outbound
            board.lock()
            b.done = true
            let claimed = claimReleasable(peer, outbound: outbound, into: &out.released)
            if !claimed, (outbound ? peer.outbound.first : peer.inbound.first)?.done == false {
                // Finished behind an unfinished batch: it waits (whoever finishes the head releases both).
                stats.reorderWaits.add()
                peer.stats.reorderWaits.add()
            }
            board.unlock()
            if claimed { releaseClaimed(peer, outbound: outbound, out: out) }
        }
    }

    /// Seals or opens every packet of `b` in place.
    @inline(__always)
    private func crypt(_ b: PacketBatch, keyIndex: Int) {
        guard let session = b.session else { return }
        for i in 0..<b.count {
            let slot = b.slot(i)
            if b.direction == .outbound {
                if let n = session.seal(slot: slot, length: b.lengths[i], counter: b.counters[i], keyIndex: keyIndex) {
                    b.lengths[i] = n
                    b.ok[i] = true
                } else {
                    b.ok[i] = false
                }
            } else {
                if let n = session.open(slot: slot, length: b.lengths[i], counter: b.counters[i], keyIndex: keyIndex) {
                    b.lengths[i] = n
                    b.ok[i] = true
                } else {
                    b.ok[i] = false
                }
            }
        }
    }

    // MARK: stage 4 — in-order release

    /// Takes the finished batches at the head of `peer`'s FIFO in one direction and
    /// claims that direction, so that one thread at a time releases it (in FIFO order).
    /// Returns false, taking nothing, when another thread holds the direction or the
    /// head is not finished. Call with `board` held.
    @inline(__always)
    private func claimReleasable(_ peer: Peer, outbound: Bool, into released: inout [PacketBatch]) -> Bool {
        if outbound {
            guard !peer.sending, peer.outbound.first?.done == true else { return false }
            while let h = peer.outbound.first, h.done { released.append(peer.outbound.removeFirst()!) }
            peer.sending = true
        } else {
            guard !peer.delivering, peer.inbound.first?.done == true else { return false }
            while let h = peer.inbound.first, h.done { released.append(peer.inbound.removeFirst()!) }
            peer.delivering = true
        }
        return true
    }

    /// Sends or delivers the claimed batches (no lock held), then goes on with batches
    /// that finished meanwhile; gives the direction back when none is left. Because the
    /// claim is dropped and re-taken under one hold of `board`, a batch finished by
    /// another worker is never stranded.
    private func releaseClaimed(_ peer: Peer, outbound: Bool, out: ThreadOutput) {
        while true {
            for b in out.released {
                if outbound { send(b, out: out) } else { deliver(b, out: out) }
                pool.put(b)
            }
            out.released.removeAll(keepingCapacity: true)
            board.lock()
            if outbound { peer.sending = false } else { peer.delivering = false }
            let more = claimReleasable(peer, outbound: outbound, into: &out.released)
            board.unlock()
            if !more { return }
        }
    }

    /// Sends a sealed batch: runs of equal-sized datagrams as UDP GSO sends.
    @inline(__always)
    private func send(_ b: PacketBatch, out: ThreadOutput) {
        let sender = out.sender
        var n = 0
        var bytes = 0
        let calls = sender.calls
        defer { countSends(out, callsBefore: calls, datagrams: n) }
        do {
            for i in 0..<b.count where b.ok[i] {
                try sender.append(b.slot(i).baseAddress!, length: b.lengths[i], to: b.endpoint)
                bytes += b.lengths[i]
                n += 1
            }
            try sender.flush()
        } catch {
            stats.drop(.queueFull, UInt64(n))
            return
        }
        guard n > 0 else { return }
        b.peer?.stats.txPackets.add(UInt64(n))
        b.peer?.stats.txBytes.add(UInt64(bytes))
        b.session?.lastSent = monotonicSeconds()
    }

    @inline(__always)
    private func countSends(_ out: ThreadOutput, callsBefore: Int, datagrams: Int) {
        stats.udpSendCalls.add(UInt64(out.sender.calls - callsBefore))
        stats.udpDatagramsSent.add(UInt64(datagrams))
        if out.sender.refusals != out.gsoRefusalsCounted {
            stats.udpGSORefused.add(UInt64(out.sender.refusals - out.gsoRefusalsCounted))
            out.gsoRefusalsCounted = out.sender.refusals
        }
    }

    @inline(__always)
    private func countReceived(_ landing: DatagramLanding, messages: Int) {
        var datagrams = 0
        for i in 0..<messages { datagrams += landing.segments(i) }
        stats.udpMessagesReceived.add(UInt64(messages))
        stats.udpDatagramsReceived.add(UInt64(datagrams))
    }

    /// Releases an opened batch: replay check, inner-source check, TUN write.
    @inline(__always)
    private func deliver(_ b: PacketBatch, out: ThreadOutput) {
        guard let session = b.session, let peer = b.peer else { return }
        var lastSource: SocketAddress? = nil
        for i in 0..<b.count {
            guard b.ok[i] else {
                stats.drop(.authenticationFailed)
                continue
            }
            guard session.replay.accept(b.counters[i]) else {
                stats.drop(.replay)
                continue
            }
            lastSource = b.sources[i]
            let length = b.lengths[i]
            peer.stats.rxPackets.add()
            peer.stats.rxBytes.add(UInt64(length))
            guard length > 0 else { continue }  // keepalive
            let slot = b.slot(i)
            let packet = UnsafeRawBufferPointer(rebasing: slot[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + length)])
            guard PeerTable.sourceBelongs(packet, to: peer) else {
                stats.drop(.badInnerSource)
                continue
            }
            out.writeTun(slot, length)
        }
        out.flushTun(counting: stats)
        if let source = lastSource {
            session.lastReceived = monotonicSeconds()
            // Only the thread holding this peer's inbound claim touches lastSource.
            if source != peer.lastSource {
                peer.lastSource = source
                roam(peer, to: source)
            }
        }
    }

    /// Follows a peer to the address its authenticated packets come from (roaming).
    @inline(__always)
    private func roam(_ peer: Peer, to source: SocketAddress) {
        peers.lock()
        if peer.endpoint != source { peers.setEndpointLocked(peer, source) }
        peers.unlock()
    }

    // MARK: --pipeline single

    private func singleLoop() {
        let work = PacketBatch()
        let out = ThreadOutput(socket: socket, segmentation: udpOffload, tun: tun)
        let sender = out.sender
        let landing = makeLanding()
        let buffers = TunBurst(slots: landingSlots)
        var received = [Received](repeating: .bad, count: PacketBatch.capacity)
        var owners = [(Peer, DataSession)?](repeating: nil, count: PacketBatch.capacity)
        while isRunning {
            let (tunReady, udpReady) = waitReadable(tun.fd, socket.fd, timeoutMilliseconds: 100)
            if tunReady {
                // Read a burst, then seal and send it in groups of up to 64.
                let burst = readTunBurst(buffers)
                let now = monotonicSeconds()
                var k = 0
                while k < burst {
                    var n = 0
                    let calls = sender.calls
                    peers.lock()
                    while k < burst, n < PacketBatch.capacity {
                        let packet = buffers.packet(k), len = packet.count
                        k += 1
                        guard len <= maxPayload else { stats.drop(.tooLarge); continue }
                        guard let peer = peers.routeLocked(packet: packet), let session = peer.current, let endpoint = peer.endpoint else {
                            stats.drop(.noRoute)
                            continue
                        }
                        let slot = work.slot(n)
                        UnsafeMutableRawBufferPointer(rebasing: slot[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + len)])
                            .copyMemory(from: packet)
                        guard let sealed = session.seal(slot: slot, length: len, counter: session.nextCounter(), keyIndex: 0) else { continue }
                        do { try sender.append(slot.baseAddress!, length: sealed, to: endpoint) } catch { stats.drop(.queueFull) }
                        peer.stats.txPackets.add()
                        peer.stats.txBytes.add(UInt64(sealed))
                        session.lastSent = now
                        n += 1
                    }
                    peers.unlock()
                    // The work slots are reused by the next group: send before refilling them.
                    do { try sender.flush() } catch { stats.drop(.queueFull) }
                    countSends(out, callsBefore: calls, datagrams: n)
                }
            }
            if udpReady {
                guard let n = try? landing.receive(from: socket) else { continue }
                countReceived(landing, messages: n)
                let now = monotonicSeconds()
                for i in 0..<n {
                    let source = landing.source(i), segments = landing.segments(i)
                    var first = 0
                    while first < segments {
                        // Classify up to 64 datagrams and find their sessions under one hold of the table lock.
                        let chunk = min(PacketBatch.capacity, segments - first)
                        peers.lock()
                        for k in 0..<chunk {
                            let datagram = landing.segment(i, first + k)
                            received[k] = classify(datagram, length: datagram.count)
                            if case let .capsule(index, _) = received[k] { owners[k] = peers.sessionLocked(index: index) }
                        }
                        peers.unlock()
                        for k in 0..<chunk {
                            let datagram = landing.segment(i, first + k), length = datagram.count
                            let counter: UInt64
                            switch received[k] {
                            case .bad:
                                stats.drop(.badHeader)
                                continue
                            case .control:
                                control.handleControl(UnsafeRawBufferPointer(datagram), from: source)
                                continue
                            case let .capsule(_, c):
                                counter = c
                            }
                            guard let (peer, session) = owners[k] else { stats.drop(.unknownSession); continue }
                            owners[k] = nil
                            guard session.replay.mightAccept(counter) else { stats.drop(.replay); continue }
                            guard let plain = session.open(slot: datagram, length: length, counter: counter, keyIndex: 0) else {
                                stats.drop(.authenticationFailed)
                                continue
                            }
                            guard session.replay.accept(counter) else { stats.drop(.replay); continue }
                            session.lastReceived = now
                            peer.stats.rxPackets.add()
                            peer.stats.rxBytes.add(UInt64(plain))
                            if peer.endpoint != source { roam(peer, to: source) }
                            guard plain > 0 else { continue }
                            let packet = UnsafeRawBufferPointer(rebasing: datagram[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + plain)])
                            guard PeerTable.sourceBelongs(packet, to: peer) else { stats.drop(.badInnerSource); continue }
                            out.writeTun(datagram, plain)
                        }
                        first += chunk
                    }
                }
                // The landing area is reused by the next receive: write what is held.
                out.flushTun(counting: stats)
            }
        }
    }

    /// Seals and sends an empty capsule (keepalive) on the control thread's key.
    public func sendKeepalive(to peer: Peer) {
        peers.lock()
        let session = peer.current, endpoint = peer.endpoint
        peers.unlock()
        guard let session, let endpoint else { return }
        var buffer = [UInt8](repeating: 0, count: Header.size + 16)
        let n = buffer.withUnsafeMutableBytes { slot in
            session.seal(slot: slot, length: 0, counter: session.nextCounter(), keyIndex: session.controlKeyIndex)
        }
        guard let n else { return }
        try? buffer.withUnsafeBytes { try socket.send(UnsafeRawBufferPointer(rebasing: $0[0..<n]), to: endpoint) }
        session.lastSent = monotonicSeconds()
    }
}
