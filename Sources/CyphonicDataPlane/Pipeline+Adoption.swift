import CyphonicCore
import CyphonicPosix

// The UDP receiver's copy-free hand-off (stage 2, see Pipeline.swift). With UDP GRO
// the kernel hands over a run of one sender's same-sized datagrams as one message; the
// receiver lands every message in a batch of its own, and when the run is bulk
// capsules of one session it takes that batch as it is — the datagrams stay where they
// landed, a worker opens them there — and lends the landing a fresh batch for the next
// receive. Anything else is copied as before: into batches (mixed sessions, small
// capsules for the priority lane, a session's later runs in the burst) or into the
// control inbox (handshakes and other control messages).
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
    /// batch per run, and no more of the pool held). The landing gets a batch from the
    /// pool in its place. Returns nil when the message does not qualify or no batch is
    /// free; the message is then still in the landing for the caller to copy (the
    /// holder's counters and sources may have been written: they are scratch until a
    /// run is adopted). Call with `peers` locked.
    func adopt(
        message i: Int, of landing: DatagramLanding, holders: inout [PacketBatch], staged: inout [PacketBatch],
        from: SocketAddress
    ) -> (PacketBatch, UInt32)? {
        let segments = landing.segments(i)
        let size = landing.segmentSize(i)
        guard segments >= Self.adoptionMinimum, segments <= PacketBatch.capacity, size <= PacketBatch.slotSize else { return nil }
        let lastLength = landing.segment(i, segments - 1).count
        // The cheap checks first, on the first datagram: its session, and whether that
        // session already has a batch in this burst (the usual case for a second run).
        let head = landing.segment(i, 0)
        guard lastLength > PriorityLane.maxCapsule, case .capsule(let index, let counter) = classify(head, length: head.count),
            let (peer, session) = peers.sessionLocked(index: index), !staged.contains(where: { $0.session === session })
        else { return nil }
        let holder = holders[i]
        holder.counters[0] = counter
        holder.sources[0] = from
        for k in 1..<segments {
            let datagram = landing.segment(i, k)
            guard case .capsule(let other, let counter) = classify(datagram, length: datagram.count), other == index else { return nil }
            holder.counters[k] = counter
            holder.sources[k] = from
        }
        guard let replacement = inboundBatch(for: peer, counting: false) else { return nil }
        holders[i] = replacement
        landing.lend(replacement.slab.baseAddress!, to: i)
        holder.adopt(segments: segments, segmentSize: size, total: (segments - 1) * size + lastLength)
        holder.staged = monotonicSeconds()
        holder.direction = .inbound
        holder.peer = peer
        holder.session = session
        staged.append(holder)
        stats.udpRunsNotCopied.add()
        return (holder, index)
    }
}
