import CyphonicCore
import CyphonicPosix
import CyphonicWire
import Foundation
import Synchronization

// Stage 1 of the pipeline (see Pipeline.swift): the TUN reader.
extension Pipeline {
    // MARK: stage 1 — TUN reader

    /// What a received datagram's header says.
    enum Received {
        case bad
        case control
        case capsule(index: UInt32, counter: UInt64)
    }

    /// Reads a received datagram's header with the wire codec
    /// (``Header/capsuleFields(_:)``, the checks of ``Header/decode(_:)``): capsules need
    /// a valid header and room for the tag; any other type goes to the control plane,
    /// which decodes it in full.
    @inline(__always)
    func classify(_ slot: UnsafeMutableRawBufferPointer, length: Int) -> Received {
        guard length >= Header.size, slot[0] == CyphonicVersion.protocolVersion else { return .bad }
        guard slot[1] == MessageType.capsule.rawValue else { return .control }
        guard length >= Header.size + 16,
            let (index, counter) = Header.capsuleFields(UnsafeRawBufferPointer(rebasing: slot[0..<Header.size]))
        else { return .bad }
        return .capsule(index: index, counter: counter)
    }

    /// Where the run that starts at plain packet `k` of the burst ends: the plain packets
    /// after it to the same destination that the tunnel can carry, `room` packets in all
    /// at most; with `laneBreaks`, a packet the priority lane takes ends the run (it goes
    /// ahead of bulk). Staging works in runs: one route lookup and one counter reservation
    /// each (a super-packet is a run of its own).
    @inline(__always)
    func runEnd(_ buffers: TunBurst, from k: Int, burst: Int, room: Int, laneBreaks: Bool) -> Int {
        let first = buffers.packet(k)
        var end = k + 1
        while end < burst, end - k < room {
            let p = buffers.packet(end)
            guard buffers.cuts[end] == nil, p.count <= maxPayload, Self.sameDestination(p, first),
                !laneBreaks || p.count > PriorityLane.maxBytes || !PriorityLane.takes(p)
            else { break }
            end += 1
        }
        return end
    }

    /// One TUN-reading thread's memory, allocated once: the burst it reads into, and the
    /// batches it stages that burst into (taken from the pool as the burst needs them).
    final class TunStager {
        let buffers: TunBurst
        /// Partial batches of the current burst, one per session.
        var staged: [PacketBatch] = []
        /// Full batches of the current burst, in staging order.
        var full: [PacketBatch] = []
        /// Batches taken from the pool and not yet staged into.
        var spares: [PacketBatch] = []
        /// Slots for the burst's priority-lane packets, sealed under the table lock and
        /// sent (to the endpoint kept in `sources`) right after it, before its batches.
        let priority = PacketBatch()

        init(slots: Int) {
            buffers = TunBurst(slots: slots)
            staged.reserveCapacity(64)
            full.reserveCapacity(64)
            spares.reserveCapacity(8)
        }

        /// The burst's batches in staging order (per session: full ones, then the partial
        /// one), handed to `body`; the lists are empty afterwards.
        @inline(__always)
        func drain(_ body: (PacketBatch) -> Void) {
            for b in full { body(b) }
            for b in staged { body(b) }
            full.removeAll(keepingCapacity: true)
            staged.removeAll(keepingCapacity: true)
        }

        /// `b` now holds `count` packets; a full batch moves from `staged` to `full`.
        @inline(__always)
        func filled(_ b: PacketBatch, count: Int) {
            b.count = count
            if count == PacketBatch.capacity {
                full.append(b)
                staged.removeAll { $0 === b }
            }
        }
    }

    /// Batches a burst of `burst` packets needs at least (more if it touches several peers).
    @inline(__always)
    func batchesFor(_ burst: Int) -> Int { (burst + PacketBatch.capacity - 1) / PacketBatch.capacity }

    func tunReaderLoop() {
        // Packets are read with no lock held (a syscall each), then routed and staged
        // under one short hold of the peer-table lock per burst.
        let stager = TunStager(slots: landingSlots)
        let out = makeOutput()
        let fastKey = workerCount
        while isRunning {
            // Hold one spare batch before reading (blocking here is backpressure), and after
            // reading as many as the burst fills (no lock held while waiting). Holding no
            // more between bursts leaves the batches to the inbound direction meanwhile.
            // The first spare may come from the reserve the inbound direction leaves (so
            // inbound bulk never blocks the TUN); further ones leave that reserve to inbound.
            while stager.spares.isEmpty, isRunning, let b = pool.get(timeoutMilliseconds: 100) { stager.spares.append(b) }
            guard !stager.spares.isEmpty else { continue }
            guard edges != nil || waitReadable(tun.fd, timeoutMilliseconds: 100).0 else { continue }
            let burst = readTunBurst(stager.buffers)
            guard burst > 0 else { continue }
            while stager.spares.count < batchesFor(stager.buffers.segments), isRunning,
                let b = pool.get(timeoutMilliseconds: 100, leaving: directionReserve)
            { stager.spares.append(b) }
            stageTunBurst(stager, burst: burst, keyIndex: fastKey, out: out)
            stager.drain { submit($0, fastKeyIndex: fastKey, out: out) }
        }
        for b in stager.spares { pool.put(b) }
    }

    /// Routes the `burst` packets in `stager.buffers` and stages them into batches (left in
    /// `stager.full` and `stager.staged`, counters stamped in arrival order), under one
    /// hold of the peer-table lock; pure ACKs and pings are sealed on `keyIndex` and sent
    /// through `out` at once (the priority lane). Packets go in runs to one destination
    /// (the segments of one offload read share it): one route lookup per run, and the
    /// batch and session held in `let`s for the run, so no reference counting per packet
    /// on objects the workers touch.
    func stageTunBurst(_ stager: TunStager, burst: Int, keyIndex: Int, out: ThreadOutput) {
        let buffers = stager.buffers
        let priority = stager.priority
        var prioritized = 0
        let calls = out.sender.calls
        let now = monotonicSeconds()
        peers.lock()
        var k = 0
        while k < burst {
            let packet = buffers.packet(k)
            let n = packet.count
            if let cut = buffers.cuts[k] {
                stageSuperPacket(packet, cut, stager)
                k += 1
                continue
            }
            guard n <= maxPayload else {
                stats.drop(.tooLarge)
                k += 1
                continue
            }
            guard let peer = peers.routeLocked(packet: packet), let current = peer.current, let endpoint = peer.endpoint else {
                stats.drop(.noRoute)
                peers.missLocked(packet: packet)
                k += 1
                continue
            }
            // Priority lane: ACKs and pings are sealed now and sent before this burst's batches.
            if n <= PriorityLane.maxBytes, prioritized < PacketBatch.capacity, PriorityLane.takes(packet) {
                k += 1
                let slot = priority.slot(prioritized)
                UnsafeMutableRawBufferPointer(rebasing: slot[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + n)])
                    .copyMemory(from: packet)
                guard let sealed = current.seal(slot: slot, length: n, counter: current.nextCounter(), keyIndex: keyIndex) else {
                    continue
                }
                priority.lengths[prioritized] = sealed
                priority.sources[prioritized] = endpoint
                peer.stats.txPackets.add()
                peer.stats.txBytes.add(UInt64(sealed))
                current.lastSent = now
                prioritized += 1
                continue
            }
            guard let b = outboundBatch(for: current, of: peer, stager) else {
                stats.drop(.queueFull)
                k += 1
                continue
            }
            b.endpoint = endpoint
            // The run: this packet and those after it to the same destination, up to a
            // full batch (a pure ACK or ping among them ends it: it takes the lane). Its
            // counters are taken at once: one atomic add per run, not per packet (each
            // one also waited for the copies before it to reach the cache).
            let first = b.count
            let end = runEnd(buffers, from: k, burst: burst, room: PacketBatch.capacity - first, laneBreaks: true)
            var counter = current.nextCounters(end - k)
            var i = first
            for j in k..<end {
                let p = buffers.packet(j)
                UnsafeMutableRawBufferPointer(rebasing: b.slot(i)[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + p.count)])
                    .copyMemory(from: p)
                b.lengths[i] = p.count
                b.counters[i] = counter
                counter &+= 1
                i += 1
            }
            k = end
            stager.filled(b, count: i)
        }
        peers.unlock()
        guard prioritized > 0 else { return }
        do {
            for i in 0..<prioritized {
                try out.sender.append(priority.slot(i).baseAddress!, length: priority.lengths[i], to: priority.sources[i])
            }
            try out.sender.flush()
        } catch { stats.drop(.queueFull) }
        countSends(out, callsBefore: calls, datagrams: prioritized)
        stats.prioritySent.add(UInt64(prioritized))
    }

    /// The batch of this burst that `session`'s next packets go into: its partial one, or
    /// a spare. A burst that touches more peers than the reserved spares cover takes
    /// whatever else the pool has free: no drop while a batch is free.
    @inline(__always)
    func outboundBatch(for session: DataSession, of peer: Peer, _ stager: TunStager) -> PacketBatch? {
        stagedBatch(
            for: session, of: peer, .outbound, in: &stager.staged,
            from: { stager.spares.popLast() ?? pool.tryGet(leaving: directionReserve) })
    }

    /// Stages one offload super-packet (under the peer-table lock, like the rest of the
    /// burst): routed once by its headers, its counters reserved per batch it fills, and
    /// each segment cut straight into the batch slot where it will be sealed.
    @inline(__always)
    func stageSuperPacket(_ packet: UnsafeRawBufferPointer, _ cut: TunOffload.Cut, _ stager: TunStager) {
        guard let peer = peers.routeLocked(packet: packet), let current = peer.current, let endpoint = peer.endpoint else {
            stats.drop(.noRoute, UInt64(cut.segments))
            peers.missLocked(packet: packet)
            return
        }
        var s = 0
        while s < cut.segments {
            guard let b = outboundBatch(for: current, of: peer, stager) else {
                stats.drop(.queueFull, UInt64(cut.segments - s))
                return
            }
            b.endpoint = endpoint
            let first = b.count
            let end = first + min(PacketBatch.capacity - first, cut.segments - s)
            var counter = current.nextCounters(end - first)
            for i in first..<end {
                b.lengths[i] = TunOffload.writeSegment(
                    s, of: cut, from: packet, into: UnsafeMutableRawBufferPointer(rebasing: b.slot(i)[PacketBatch.payloadOffset...]))
                b.counters[i] = counter
                counter &+= 1
                s += 1
            }
            stager.filled(b, count: end)
        }
    }
}
