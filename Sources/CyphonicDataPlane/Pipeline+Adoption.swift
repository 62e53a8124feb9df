import CyphonicCore
import CyphonicPosix

// The UDP receiver's copy-free hand-off (stage 2, see Pipeline.swift). With UDP GRO
// the kernel hands over a run of one sender's same-sized datagrams as one message; the
// receiver lands every message in a batch of its own, and when the run is bulk
// capsules of one session it takes that batch as it is — the datagrams stay where they
// landed, a worker opens them there — and lends the landing a fresh batch for the next
// receive. Anything else (mixed sessions, small capsules for the priority lane,
// control messages) is copied into batches as before.
extension Pipeline {
    /// Messages per GRO receive (each up to 64 KiB).
    static let landingMessages = 16

    /// Shortest run taken as a batch in place: shorter ones are copied, so that several
    /// can share one batch (fewer hand-offs).
    static let adoptionMinimum = 8

    /// Takes message `i` as a batch without copying, if every datagram in it is a bulk
    /// capsule (too large for the priority lane) of one known session that has no batch
    /// staged yet in this burst. The batch is appended to `staged` and is the session's
    /// batch for the rest of the burst: its later packets are copied in behind the run,
    /// so arrival order is kept and batches fill up as before (fewer hand-offs than a
    /// batch per run, and no more of the pool held). The landing gets a
    /// batch from the pool in its place. Returns nil, having changed nothing the caller
    /// sees, when the message does not qualify or no batch is free. Call with `peers` locked.
    func adopt(
        message i: Int, of landing: DatagramLanding, holders: inout [PacketBatch], staged: inout [PacketBatch],
        from: SocketAddress
    ) -> (PacketBatch, UInt32)? {
        let segments = landing.segments(i)
        let size = landing.segmentSize(i)
        guard segments >= Self.adoptionMinimum, segments <= PacketBatch.capacity, size <= PacketBatch.slotSize,
            landing.segment(i, segments - 1).count > PriorityLane.maxCapsule
        else { return nil }
        let holder = holders[i]
        var first: UInt32? = nil
        for k in 0..<segments {
            let datagram = landing.segment(i, k)
            guard case .capsule(let index, let counter) = classify(datagram, length: datagram.count),
                first == nil || first == index
            else { return nil }
            first = index
            holder.counters[k] = counter
            holder.sources[k] = from
        }
        guard let index = first, let (peer, session) = peers.sessionLocked(index: index),
            !staged.contains(where: { $0.session === session }),
            let replacement = inboundBatch(for: peer, counting: false)
        else { return nil }
        holders[i] = replacement
        landing.lend(replacement.slab.baseAddress!, to: i)
        holder.adopt(segments: segments, segmentSize: size, total: (segments - 1) * size + landing.segment(i, segments - 1).count)
        holder.staged = monotonicSeconds()
        holder.direction = .inbound
        holder.peer = peer
        holder.session = session
        staged.append(holder)
        stats.batchesAdopted.add()
        return (holder, index)
    }
}
