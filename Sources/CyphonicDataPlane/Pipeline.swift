import CyphonicCore
import CyphonicPosix
import CyphonicWire
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// The data plane (DESIGN §2, paper Fig. 3). Stages, and which run in parallel:
//
//   1. TUN reader      (1 thread, or by default the crypto workers in turn; sequential)  reads a burst of packets (no lock held), routes each by
//                      destination virtual IP to its peer, stamps the session's next
//                      counter (= arrival order), and stages them in per-session batches.
//   2. UDP receiver    (1 thread, sequential)  recvmmsg a burst of datagrams; capsules go
//                      to per-session batches in arrival order; anything else is copied
//                      into the bounded control inbox (never handled on this thread).
//   3. Crypto workers  (N threads, parallel)   take whole batches from one shared queue
//                      and seal or open every packet in place, each with its own cipher
//                      contexts; batches may finish in any order.
//   4. In-order release (by whichever worker finishes a peer's oldest batch; one at a
//                      time per peer and direction)  releases that peer's finished
//                      batches strictly in staging order: outbound as UDP GSO sends,
//                      inbound after the replay check and the inner-source check,
//                      written to the TUN.
//   5. Control         (1 thread)              handshakes from the control inbox (behind the
//                      handshake guard's cookies and limits), and timers: keepalive,
//                      rekey, handshake retry, idle teardown (the ControlPlane's tick).
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
// thread count is 2 + N (3 + N with a TUN reader thread) whatever the number of peers.
// At a hub (one node, many busy peers): pure ACKs and pings take the priority lane
// (sealed or opened by the staging thread and sent or delivered ahead of the peer's
// queued batches; PriorityLane.swift); each direction leaves a quarter of the pool to
// the other; a peer holds at most its fair share of the inbound batches
// (`inboundBatch(for:)`); and CoDel per peer and direction drops a bulk packet now and
// then when its batches keep waiting (`controlDelay`).
//
// `--pipeline single` runs stages 1–4 on one thread (the conventional design).
// `tunReading: .workers` folds stage 1 into stage 3: the crypto workers take turns
// reading and staging the TUN and seal what they read (Pipeline+ReadingWorkers.swift).

/// What the data plane hands to the node's control plane.
public protocol ControlPlane: AnyObject, Sendable {
    /// A datagram that is not a capsule (handshake messages, cookie replies, hole
    /// punching), on the control thread: the receiving thread only queues it
    /// (``ControlInbox``), so handshake work never runs on a data thread.
    /// `verified`: it came from the authenticated endpoint of a peer with a session.
    func handleControl(_ datagram: UnsafeRawBufferPointer, from: SocketAddress, verified: Bool)
    /// Housekeeping, every ~250 ms, on the control thread (between control datagrams).
    func tick()
    /// The first authenticated packet on an initiator's new session arrived (the peer
    /// holds it): called once per session, on the data thread that saw it; keep it short.
    func sessionConfirmed(_ session: DataSession, of peer: Peer)
}

extension ControlPlane {
    public func sessionConfirmed(_ session: DataSession, of peer: Peer) {}
}

/// Which pipeline design runs.
public enum PipelineMode: Sendable, Equatable, CustomStringConvertible {
    /// The conventional design: one thread does everything.
    case single
    /// The paper's design with `workers` crypto threads.
    case multi(workers: Int)

    /// Cipher contexts a session needs: one per packet-crypto thread plus one for control.
    /// Multi: workers 0..<N, then the TUN reader thread (unused when the workers read the
    /// TUN: each seals its priority-lane packets on its own), the UDP receiver (fast path),
    /// then control.
    public var keySlots: Int {
        switch self {
        case .single: return 2
        case .multi(let workers): return workers + 3
        }
    }

    public var description: String {
        switch self {
        case .single: return "single"
        case .multi(let workers): return "multi (\(workers) crypto workers)"
        }
    }
}

/// Who reads and stages the TUN in the multi-threaded design.
public enum TunReading: String, Sendable, CaseIterable, CustomStringConvertible {
    /// A TUN reader thread reads and stages; the crypto workers seal (the paper's Fig. 3).
    case thread
    /// The crypto workers take turns reading and staging a burst, and each seals what it
    /// read (Pipeline+ReadingWorkers.swift): no packet crosses to another core to be
    /// sealed. Same staging, counters, priority lane and in-order release.
    case workers

    public var description: String { rawValue }
}

/// In-process edges for benchmarking the pipeline's own stages (`cyphonic-bench
/// pipeline`): packets come from `tunSource` instead of TUN reads, and sealed datagrams
/// go to `udpSink` instead of UDP sends. Staging, the crypto workers and the in-order
/// release run unchanged between them. Never set in the daemon.
public struct PipelineEdges: Sendable {
    /// Writes up to `count` packets into `slots` (one per `stride` bytes, at offset 0) and
    /// their lengths into `lengths`; returns how many (0: nothing now). Called where the
    /// TUN would be read: by the TUN reader thread, or by the worker holding the TUN turn
    /// (one at a time; the turn orders their memory).
    public var tunSource: @Sendable (_ slots: UnsafeMutableRawPointer, _ stride: Int, _ lengths: UnsafeMutablePointer<Int>, _ count: Int) -> Int
    /// Receives each run of sealed datagrams where they would be sent (the run, its
    /// length, the destination), in send order; called by whichever thread releases.
    public var udpSink: @Sendable (UnsafePointer<iovec>, Int, SocketAddress) -> Void
    /// When set, stands for a TUN with offload instead of `tunSource`: writes one read (a
    /// vnet header, then a packet or a TCP super-packet) of up to `capacity` bytes at
    /// `buffer` and returns its length (0: nothing now), as `read(2)` on such a TUN would.
    public var offloadSource: (@Sendable (_ buffer: UnsafeMutableRawPointer, _ capacity: Int) -> Int)?

    public init(
        tunSource: @escaping @Sendable (UnsafeMutableRawPointer, Int, UnsafeMutablePointer<Int>, Int) -> Int,
        udpSink: @escaping @Sendable (UnsafePointer<iovec>, Int, SocketAddress) -> Void,
        offloadSource: (@Sendable (UnsafeMutableRawPointer, Int) -> Int)? = nil
    ) {
        self.tunSource = tunSource
        self.udpSink = udpSink
        self.offloadSource = offloadSource
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
    let control: any ControlPlane
    let pool: BatchPool
    /// Control datagrams on their way from the receiving thread to the control thread:
    /// those from peers' authenticated endpoints (rekeys) in their own queue, taken
    /// first, so a flood from other sources cannot crowd them out.
    public let inbox: ControlInbox
    public let verifiedInbox: ControlInbox
    let cryptoQueue: WorkQueue<PacketBatch>
    let board = MutexCondition()
    let running = Atomic<Bool>(false)
    /// Held by the crypto worker reading the TUN (``TunReading/workers`` only).
    let tunTurn = Atomic<Bool>(false)
    /// The turn's holder is staging a burst it read: it gives the turn back within
    /// microseconds, so another worker waits for it awake instead of sleeping.
    let tunStaging = Atomic<Bool>(false)
    /// Who reads the TUN in the multi-threaded design; set before ``start()``.
    public var tunReading: TunReading = .workers
    /// Peers holding inbound batches (their fair share is the inbound batches divided by this).
    let activeInbound = Atomic<Int>(0)
    let threads = DispatchGroup()
    /// The TUN's MTU.
    public let mtu: Int
    /// UDP GSO on send and GRO on receive (falls back to plain datagrams where refused).
    public let udpOffload: Bool
    /// Whether the socket accepted UDP_GRO (set by `start()`).
    public private(set) var groEnabled = false
    /// In-process source and sink instead of the TUN reads and UDP sends (benchmarks
    /// only); set before ``start()``.
    public var edges: PipelineEdges?
    /// Largest inner packet accepted from the TUN: the MTU, or what a slot can seal.
    var maxPayload: Int { min(mtu, PacketBatch.slotSize - Header.size - 16) }

    /// `poolSize` bounds the batches in flight (and so the queueing delay).
    public init(
        tun: TunDevice, socket: UDPSocket, peers: PeerTable, control: any ControlPlane, mode: PipelineMode,
        mtu: Int = 1420, poolSize: Int = 128, udpOffload: Bool = true, stats: DataPlaneStats = DataPlaneStats()
    ) {
        self.tun = tun
        self.socket = socket
        self.peers = peers
        self.control = control
        self.mode = mode
        self.mtu = mtu
        self.udpOffload = udpOffload
        self.stats = stats
        pool = BatchPool(size: min(poolSize, Self.maxPoolSize))
        cryptoQueue = WorkQueue(capacity: 512)
        inbox = ControlInbox(capacity: 1024)
        verifiedInbox = ControlInbox(capacity: 256)
    }

    /// The most batches in flight: everything in flight on both ends must fit in a
    /// session's replay window (see `DataSession.replay`).
    public static let maxPoolSize = 128

    /// Batches each direction leaves free for the other: a bulk transfer one way cannot
    /// take every batch and so starve the other way (its ACKs, echo replies). The TUN
    /// reader's first spare batch may come from this reserve, so inbound bulk can delay
    /// outbound by at most the time until a batch comes back.
    var directionReserve: Int { max(2, pool.size / 4) }

    /// Crypto workers (0 for the single-threaded design).
    var workerCount: Int {
        if case .multi(let workers) = mode { return workers }
        return 0
    }

    /// The design that runs, for logs and `status`: the mode, and who reads the TUN.
    public var design: String {
        if case .multi = mode, tunReading == .workers { return "\(mode), the workers read the TUN" }
        return mode.description
    }

    /// OS threads the pipeline runs (constant in the number of peers).
    public var threadCount: Int {
        switch mode {
        case .single: return 2
        case .multi(let workers): return (tunReading == .workers ? 2 : 3) + workers
        }
    }

    public func start() throws {
        try tun.setNonBlocking(true)
        groEnabled = udpOffload && socket.enableGRO()
        running.store(true, ordering: .releasing)
        switch mode {
        case .single:
            spawn(ThreadName.single) { self.singleLoop() }
        case .multi(let workers):
            spawn(ThreadName.udpReceiver) { self.udpReceiverLoop() }
            switch tunReading {
            case .thread:
                spawn(ThreadName.tunReader) { self.tunReaderLoop() }
                for w in 0..<workers { spawn(ThreadName.crypto + "\(w)") { self.workerLoop(keyIndex: w) } }
            case .workers:
                for w in 0..<workers { spawn(ThreadName.crypto + "\(w)") { self.readingWorkerLoop(keyIndex: w) } }
            }
        }
        spawn(ThreadName.control) {
            // Control datagrams in arrival order (verified sources first), timers every 250 ms.
            var lastTick = 0.0
            while self.running.load(ordering: .acquiring) {
                self.verifiedInbox.drain(waitMilliseconds: 0) { bytes, from in
                    self.control.handleControl(bytes, from: from, verified: true)
                }
                self.inbox.drain(waitMilliseconds: self.verifiedInbox.queued > 0 ? 0 : 20) { bytes, from in
                    self.control.handleControl(bytes, from: from, verified: false)
                }
                let now = monotonicSeconds()
                if now - lastTick >= 0.25 {
                    self.control.tick()
                    lastTick = now
                }
            }
        }
    }

    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        cryptoQueue.close()
        threads.wait()
    }

    /// The OS names of the pipeline's threads (`top -H`, /proc/PID/task/*/comm).
    public enum ThreadName {
        public static let single = "cy-single"
        public static let tunReader = "cy-tun-reader"
        public static let udpReceiver = "cy-udp-receiver"
        /// Followed by the worker's number.
        public static let crypto = "cy-crypto-"
        public static let control = "cy-control"

        /// Whether an OS thread name is one of the pipeline's.
        public static func isPipeline(_ name: String) -> Bool {
            let n = name.trimmingCharacters(in: .whitespacesAndNewlines)
            return n == single || n == tunReader || n == udpReceiver || n == control || n.hasPrefix(crypto)
        }
    }

    func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) {
        threads.enter()
        startThread(named: name, stackSize: 1 << 20) { [threads] in
            body()
            threads.leave()
        }
    }

    /// A pipeline thread's own sender and TUN writer (sending to the benchmark sink when set).
    func makeOutput() -> ThreadOutput {
        let out = ThreadOutput(socket: socket, segmentation: udpOffload, tun: tun)
        out.sender.divert = edges?.udpSink
        return out
    }

    @inline(__always) var isRunning: Bool { running.load(ordering: .relaxed) }

    /// Queues a control datagram for the control thread; call with the peer table
    /// locked (to tell a peer's authenticated endpoint from any other source).
    @inline(__always)
    func queueControlLocked(_ datagram: UnsafeRawBufferPointer, from: SocketAddress) {
        let queued = peers.isPeerEndpointLocked(from) ? verifiedInbox.push(datagram, from: from) : inbox.push(datagram, from: from)
        if !queued { stats.drop(.controlQueueFull) }
    }
}
