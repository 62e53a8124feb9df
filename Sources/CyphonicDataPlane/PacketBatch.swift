import CyphonicPosix
import CyphonicWire

/// Up to ``capacity`` packets of one peer travelling together through the pipeline:
/// staged by the reader (arrival order = slot order), sealed or opened by one crypto
/// worker, released in order by whichever thread holds its peer's claim. The slab of buffers is allocated once;
/// a batch is recycled through ``BatchPool`` and never freed while the pipeline runs.
/// Owned by exactly one stage at a time (the queues hand it over), so it needs no lock.
public final class PacketBatch: @unchecked Sendable {
    public enum Direction: Sendable { case outbound, inbound }

    public static let capacity = 64
    /// Bytes per slot: header + the largest inner packet we accept + tag, rounded up.
    public static let slotSize = 2048
    /// Where the inner packet starts in a slot (after the CYPHONIC header).
    public static let payloadOffset = Header.size

    public let slab: UnsafeMutableRawBufferPointer
    // Per-slot fields live in fixed buffers behind `let`s: written once per packet, they
    // need no copy-on-write or dynamic exclusivity checks (a stored `var` array would).
    /// Bytes used in each slot: the inner packet (outbound, before sealing) or the
    /// datagram (inbound, before opening); after crypto, the result.
    public let lengths = UnsafeMutablePointer<Int>.allocate(capacity: PacketBatch.capacity)
    /// Counter (nonce) of each slot's capsule.
    public let counters = UnsafeMutablePointer<UInt64>.allocate(capacity: PacketBatch.capacity)
    /// Whether each slot authenticated (inbound) or sealed (outbound).
    public let ok = UnsafeMutablePointer<Bool>.allocate(capacity: PacketBatch.capacity)
    /// Inbound slots the staging thread already opened (small capsules it looked into
    /// for the priority lane that were not for it): the worker leaves them as they are.
    public let opened = UnsafeMutablePointer<Bool>.allocate(capacity: PacketBatch.capacity)
    public var count = 0
    public var direction = Direction.outbound
    /// The peer and session the batch belongs to.
    public var peer: Peer?
    public var session: DataSession?
    /// When the batch was staged (monotonic seconds): its sojourn at release feeds CoDel.
    public var staged = 0.0
    /// Set by the worker under the pipeline's release lock.
    public var done = false
    /// Where an outbound batch goes (captured at staging).
    public var endpoint = SocketAddress()
    /// Where each inbound datagram came from.
    public let sources = UnsafeMutablePointer<SocketAddress>.allocate(capacity: PacketBatch.capacity)
    /// An adopted batch's GRO run (``adopt(segments:segmentSize:total:)``): its first
    /// `runCount` slots are the run's datagrams where they landed, `runStride` bytes
    /// apart; the slots after them follow from `runEnd` on, `slotSize` apart, never over
    /// the run. All 0 in a regular batch (slot `i` at `i * slotSize`).
    public private(set) var runCount = 0
    public private(set) var runStride = 0
    public private(set) var runEnd = 0
    /// The slab served as a landing buffer and holds a GRO run in place.
    public var adopted: Bool { runCount > 0 }

    public init() {
        slab = .allocate(byteCount: PacketBatch.capacity * PacketBatch.slotSize, alignment: 64)
        slab.initializeMemory(as: UInt8.self, repeating: 0)
        sources.initialize(repeating: SocketAddress(), count: PacketBatch.capacity)
        lengths.initialize(repeating: 0, count: PacketBatch.capacity)
        counters.initialize(repeating: 0, count: PacketBatch.capacity)
        ok.initialize(repeating: false, count: PacketBatch.capacity)
        opened.initialize(repeating: false, count: PacketBatch.capacity)
    }

    /// Slot `i`: `slotSize` bytes of the slab. (Always inside it: an adopted run of `s`
    /// datagrams of at most `slotSize` bytes ends by `s * slotSize`, so the
    /// `capacity - s` slots copied in behind it fit, as do the run's own slots.)
    @inline(__always)
    public func slot(_ i: Int) -> UnsafeMutableRawBufferPointer {
        let start = i < runCount ? i * runStride : runEnd + (i - runCount) * PacketBatch.slotSize
        return UnsafeMutableRawBufferPointer(rebasing: slab[start..<(start + PacketBatch.slotSize)])
    }

    /// Whether the batch holds ``capacity`` packets.
    @inline(__always)
    public var isFull: Bool { count == PacketBatch.capacity }

    /// Takes the `segments` datagrams that landed in the slab as one GRO run of
    /// `segmentSize`-byte datagrams (`total` bytes, the last one possibly shorter) as
    /// slots `0..<segments`, in place. The caller has written their counters and sources.
    public func adopt(segments: Int, segmentSize: Int, total: Int) {
        precondition(
            count == 0 && segments > 0 && segments <= PacketBatch.capacity && segmentSize <= PacketBatch.slotSize
                && total <= segments * segmentSize)
        for k in 0..<segments {
            lengths[k] = min(segmentSize, total - k * segmentSize)
            opened[k] = false
        }
        count = segments
        (runCount, runStride, runEnd) = (segments, segmentSize, (total + 63) & ~63)
    }

    /// Clears the batch for reuse (buffers keep their memory).
    public func reset() {
        (runCount, runStride, runEnd) = (0, 0, 0)
        count = 0
        done = false
        peer = nil
        session = nil
        staged = 0
    }

    deinit {
        slab.deallocate()
        sources.deallocate()
        lengths.deallocate()
        counters.deallocate()
        ok.deallocate()
        opened.deallocate()
    }
}

/// The fixed set of batches the pipeline cycles through. `get` blocks when every batch
/// is in flight (backpressure on the TUN side); `tryGet` returns nil instead (the UDP
/// side then drops and counts "queue full"). Bounding the batches in flight bounds the
/// queueing delay, which is what keeps RTT flat under load.
public final class BatchPool: @unchecked Sendable {
    // `@unchecked Sendable`: `free` is touched only with `sync` held.
    private let sync = MutexCondition()
    private var free: [PacketBatch]
    public let size: Int

    public init(size: Int) {
        self.size = size
        free = (0..<size).map { _ in PacketBatch() }
        free.reserveCapacity(size)
    }

    public func get() -> PacketBatch {
        sync.lock()
        defer { sync.unlock() }
        while free.isEmpty { sync.wait() }
        return free.removeLast()
    }

    /// Like ``get()``, but gives up after `milliseconds` (so a stopping pipeline never
    /// waits for batches that will not come back), and takes a batch only while more
    /// than `leaving` stay free (a share kept for the other direction).
    public func get(timeoutMilliseconds milliseconds: Int, leaving: Int = 0) -> PacketBatch? {
        sync.lock()
        defer { sync.unlock() }
        if free.count <= leaving { sync.wait(milliseconds: milliseconds) }
        return free.count > leaving ? free.popLast() : nil
    }

    /// A free batch if more than `leaving` are free, else nil (never waits).
    public func tryGet(leaving: Int = 0) -> PacketBatch? {
        sync.withLock { free.count > leaving ? free.popLast() : nil }
    }

    public func put(_ batch: PacketBatch) {
        batch.reset()
        sync.withLock {
            free.append(batch)
            sync.signal()
        }
    }

    public var available: Int { sync.withLock { free.count } }
}
