import CyphonicCore
import CyphonicPosix
import CyphonicWire
import Foundation
import Synchronization

// Stage 2 of the pipeline (see Pipeline.swift): the UDP receiver, and the staging and
// hand-off both staging threads share.
extension Pipeline {
    // MARK: stage 2 — UDP receiver

    /// Landing memory for the single thread: with GRO 16 messages of 64 KiB (each a
    /// coalesced run of up to 64 datagrams: up to 1024 datagrams per call, 1 MiB
    /// resident), without 64 messages of one slot each. (The multi-threaded receiver
    /// lands GRO messages in batch slabs instead: Pipeline+Adoption.swift.)
    func makeLanding() -> DatagramLanding {
        groEnabled
            ? DatagramLanding(messages: Self.landingMessages, bufferSize: DatagramLanding.gro)
            : DatagramLanding(messages: PacketBatch.capacity, bufferSize: PacketBatch.slotSize)
    }

    func udpReceiverLoop() {
        // With GRO the receiver lands each message in a batch of its own (outside the
        // pool), so a whole run of one session's capsules is handed on without a copy.
        var holders: [PacketBatch] = groEnabled ? (0..<Self.landingMessages).map { _ in PacketBatch() } : []
        let landing =
            groEnabled
            ? DatagramLanding(lent: holders.map { $0.slab.baseAddress! }, bufferSize: DatagramLanding.gro) : makeLanding()
        var staged: [PacketBatch] = []
        staged.reserveCapacity(64)
        var early: [EarlyPacket] = []
        early.reserveCapacity(256)
        let out = makeOutput()
        let fastKey = workerCount + 1
        while isRunning {
            guard waitReadable(socket.fd, timeoutMilliseconds: 100).0 else { continue }
            let n: Int
            // With GRO a message can hold 64 datagrams (a batch): take no more than the free batches.
            do { n = try landing.receive(from: socket, limit: groEnabled ? max(1, pool.available - directionReserve) : .max) } catch {
                continue
            }
            countReceived(landing, messages: n)
            // The batch of the previous capsule: a GRO message is a run of one sender's
            // datagrams, so most capsules skip the session lookup. Held unretained (the
            // batch stays in `staged` until submitted, and the pool never frees one), so a
            // bulk capsule of the same run costs no reference counting on the batch, peer
            // or session — objects whose counts the workers change on the other core.
            var lastIndex: UInt32 = 0
            var last: Unmanaged<PacketBatch>? = nil
            peers.lock()
            for i in 0..<n {
                let from = landing.source(i)
                if !holders.isEmpty, let (b, index) = adopt(message: i, of: landing, holders: &holders, staged: &staged, from: from) {
                    if b.isFull {
                        submit(b, fastKeyIndex: fastKey, out: out)
                        staged.removeAll { $0 === b }
                        last = nil
                    } else {
                        (last, lastIndex) = (Unmanaged.passUnretained(b), index)
                    }
                    continue
                }
                for k in 0..<landing.segments(i) {
                    let datagram = landing.segment(i, k)
                    var length = datagram.count
                    let index: UInt32
                    let counter: UInt64
                    switch classify(datagram, length: length) {
                    case .bad:
                        stats.drop(.badHeader)
                        continue
                    case .control:
                        queueControlLocked(UnsafeRawBufferPointer(datagram), from: from)
                        continue
                    case .capsule(let i, let c):
                        (index, counter) = (i, c)
                    }
                    guard length <= PacketBatch.slotSize else {
                        stats.drop(.tooLarge)
                        continue
                    }
                    // Fast path: a bulk capsule of the previous capsule's session joins its batch.
                    if let l = last, index == lastIndex, length > PriorityLane.maxCapsule {
                        let full = l._withUnsafeGuaranteedRef {
                            stage(datagram, length: length, bytes: length, counter: counter, from: from, opened: false, into: $0)
                        }
                        if full {
                            let b = l.takeUnretainedValue()
                            submit(b, fastKeyIndex: fastKey, out: out)
                            staged.removeAll { $0 === b }
                            last = nil
                        }
                        continue
                    }
                    let peer: Peer
                    let session: DataSession
                    if let l = last, index == lastIndex, let p = l.takeUnretainedValue().peer, let s = l.takeUnretainedValue().session {
                        (peer, session) = (p, s)
                    } else {
                        guard let (p, s) = peers.sessionLocked(index: index) else {
                            stats.drop(.unknownSession)
                            continue
                        }
                        (peer, session) = (p, s)
                    }
                    // Priority lane: a capsule small enough to hold an ACK or a ping is opened
                    // now; if it is one, it is delivered right after this burst, ahead of
                    // the peer's queued batches; if not, it keeps its place (already opened).
                    var opened = false
                    if length <= PriorityLane.maxCapsule {
                        guard let plain = session.open(slot: datagram, length: length, counter: counter, keyIndex: fastKey) else {
                            stats.drop(.authenticationFailed)
                            continue
                        }
                        let inner = UnsafeRawBufferPointer(
                            rebasing: datagram[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + plain)])
                        if datagram[3] & HeaderFlags.control.rawValue == 0, PriorityLane.takes(inner) {
                            early.append(
                                EarlyPacket(
                                    slot: datagram.baseAddress!, length: plain, counter: counter, peer: peer, session: session,
                                    source: from))
                            continue
                        }
                        (length, opened) = (plain, true)
                    }
                    let b: PacketBatch
                    if let l = last, index == lastIndex {
                        b = l.takeUnretainedValue()
                    } else {
                        // Counted as peer_queue_full or queue_full when nil.
                        guard let fresh = stagedBatch(for: session, of: peer, .inbound, in: &staged, from: { inboundBatch(for: peer) })
                        else { continue }
                        (b, last, lastIndex) = (fresh, Unmanaged.passUnretained(fresh), index)
                    }
                    let bytes = opened ? PacketBatch.payloadOffset + length : length
                    if stage(datagram, length: length, bytes: bytes, counter: counter, from: from, opened: opened, into: b) {
                        submit(b, fastKeyIndex: fastKey, out: out)
                        staged.removeAll { $0 === b }
                        last = nil
                    }
                }
            }
            peers.unlock()
            if !early.isEmpty { deliverEarly(&early, out: out) }
            for b in staged { submit(b, fastKeyIndex: fastKey, out: out) }
            staged.removeAll(keepingCapacity: true)
        }
    }

    /// Copies a received capsule (`bytes` of it: all, or header and plaintext when already
    /// opened) into the next slot of `b`; returns whether `b` is now full.
    @inline(__always)
    func stage(
        _ datagram: UnsafeMutableRawBufferPointer, length: Int, bytes: Int, counter: UInt64, from: SocketAddress, opened: Bool,
        into b: PacketBatch
    ) -> Bool {
        // A batch is handed on as soon as it is full, so a slot is always free here.
        let j = b.count
        precondition(j < PacketBatch.capacity, "staged into a full batch")
        UnsafeMutableRawBufferPointer(rebasing: b.slot(j)[0..<bytes]).copyMemory(from: UnsafeRawBufferPointer(rebasing: datagram[0..<bytes]))
        b.lengths[j] = length
        b.counters[j] = counter
        b.sources[j] = from
        b.opened[j] = opened
        b.count = j + 1
        return b.isFull
    }

    /// A priority-lane packet opened in place in the landing area, delivered after the burst.
    struct EarlyPacket {
        let slot: UnsafeMutableRawPointer
        let length: Int
        let counter: UInt64
        let peer: Peer
        let session: DataSession
        let source: SocketAddress
    }

    /// Delivers the burst's priority-lane packets to the TUN (replay and inner-source
    /// checks as in ``deliver(_:out:)``), before the burst's batches are handed on.
    func deliverEarly(_ early: inout [EarlyPacket], out: ThreadOutput) {
        let now = monotonicSeconds()
        var roamChecked: (Peer, SocketAddress)? = nil
        for e in early {
            let (accepted, newest) = e.session.replay.withLock { $0.acceptNewest(e.counter) }
            guard accepted else {
                stats.drop(.replay)
                continue
            }
            if !newest { e.peer.stats.rxOutOfOrder.add() }
            let slot = UnsafeMutableRawBufferPointer(start: e.slot, count: PacketBatch.payloadOffset + e.length)
            e.peer.stats.rxPackets.add()
            e.peer.stats.rxBytes.add(UInt64(e.length))
            guard PeerTable.sourceBelongs(UnsafeRawBufferPointer(rebasing: slot[PacketBatch.payloadOffset...]), to: e.peer) else {
                stats.drop(.badInnerSource)
                continue
            }
            out.writeTun(slot, e.length)
            stats.priorityDelivered.add()
            e.session.lastReceived = now
            if e.session.confirm() { promote(e.session, of: e.peer) }
            if newest, roamChecked.map({ $0.0 !== e.peer || $0.1 != e.source }) ?? true {
                roam(e.peer, to: e.source)
                roamChecked = (e.peer, e.source)
            }
        }
        out.flushTun(counting: stats)
        early.removeAll(keepingCapacity: true)
    }

    /// A batch for `peer`'s inbound packets, if the peer is within its fair share — the
    /// inbound batches divided among the peers that have some in flight — and one is
    /// free beyond the outbound direction's reserve. So one peer's burst cannot take
    /// the batches every other peer needs: under overload each peer loses only its
    /// excess (DESIGN §2). Counts the drop when it returns nil.
    /// `counting: false` leaves the drop uncounted (the caller tries again per packet).
    @inline(__always)
    func inboundBatch(for peer: Peer, counting: Bool = true) -> PacketBatch? {
        let held = peer.inboundBatches.load(ordering: .relaxed)
        let active = activeInbound.load(ordering: .relaxed) + (held == 0 ? 1 : 0)
        guard held < max(1, (pool.size - directionReserve) / max(1, active)) else {
            if counting { stats.drop(.peerQueueFull) }
            return nil
        }
        guard let b = pool.tryGet(leaving: directionReserve) else {
            if counting { stats.drop(.queueFull) }
            return nil
        }
        if peer.inboundBatches.wrappingAdd(1, ordering: .relaxed).oldValue == 0 { activeInbound.wrappingAdd(1, ordering: .relaxed) }
        return b
    }

    /// Returns a batch to the pool, giving back its peer's share (every staged inbound
    /// batch came from ``inboundBatch(for:)`` for the peer it names).
    @inline(__always)
    func recycle(_ b: PacketBatch) {
        if b.direction == .inbound, let holder = b.peer, holder.inboundBatches.wrappingSubtract(1, ordering: .relaxed).oldValue == 1 {
            activeInbound.wrappingSubtract(1, ordering: .relaxed)
        }
        pool.put(b)
    }

    /// Whether two IP packets have the same destination address (hence the same route).
    @inline(__always)
    static func sameDestination(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count >= 20, b.count >= 20, a[0] >> 4 == b[0] >> 4 else { return false }
        switch a[0] >> 4 {
        case 4:
            return a.loadUnaligned(fromByteOffset: 16, as: UInt32.self) == b.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
        case 6:
            return a.count >= 40 && b.count >= 40
                && a.loadUnaligned(fromByteOffset: 24, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
                && a.loadUnaligned(fromByteOffset: 32, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 32, as: UInt64.self)
        default:
            return false
        }
    }

    /// The batch being staged for `session`, or a new one taken from `source` (nil when
    /// none is left). Linear search: a burst touches few sessions.
    @inline(__always)
    func stagedBatch(
        for session: DataSession, of peer: Peer, _ direction: PacketBatch.Direction,
        in staged: inout [PacketBatch], from source: () -> PacketBatch?
    ) -> PacketBatch? {
        for b in staged where b.session === session { return b }
        guard let b = source() else { return nil }
        b.staged = monotonicSeconds()
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
    func submit(_ b: PacketBatch, fastKeyIndex: Int, out: ThreadOutput) {
        guard let peer = b.peer else {
            recycle(b)
            return
        }
        let outbound = b.direction == .outbound
        let inline: Bool =
            b.count <= Self.fastPathLimit
            && board.withLock {
                let idle = outbound ? (peer.outbound.count == 0 && !peer.sending) : (peer.inbound.count == 0 && !peer.delivering)
                // Claim the direction so no worker releases a later batch meanwhile.
                if idle { if outbound { peer.sending = true } else { peer.delivering = true } }
                return idle
            }
        if inline {
            crypt(b, keyIndex: fastKeyIndex)
            if outbound { send(b, out: out) } else { deliver(b, out: out) }
            recycle(b)
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
            recycle(b)
            return
        }
        cryptoQueue.push(b)
    }
}
