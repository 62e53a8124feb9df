import CyphonicCore
import CyphonicPosix
import Synchronization

// The multi-threaded pipeline with `tunReading: .workers` (see Pipeline.swift): there is
// no TUN reader thread; the crypto workers take turns reading the TUN. The worker that
// holds the turn reads a burst, stages it (the same routing, counters and priority lane
// as the TUN reader, ``stageTunBurst(_:burst:keyIndex:out:)``), appends its batches to
// their peers' FIFOs, gives the turn back — waking a sleeping worker to take it — and
// then seals the burst's first batch itself (the others go to the crypto queue).
// So the packet is read, copied and sealed on one core, with no hand-off to another
// core's cache, while the next burst is read and sealed by another worker in parallel.
// Order: only the turn holder stamps counters and appends outbound batches, so each
// peer's FIFO is in counter order, and the in-order release is the one all workers use.
// Each worker reads into its own landing area (kept in its core's cache), and gives its
// spare batches back to the pool with the turn, so the outbound direction holds spares
// for one burst at most, whatever the number of workers. Inbound work from the UDP receiver is taken from the crypto queue
// between turns (after a turn, as many queued batches as it queued, and at least one);
// the holder of an idle TUN waits on the TUN and on that queue at once, so neither
// direction waits for the other.
extension Pipeline {
    func readingWorkerLoop(keyIndex: Int) {
        let out = makeOutput()
        let stager = TunStager(slots: landingSlots)
        while isRunning {
            if tunTurn.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
                // Then the queue's share: the batches this turn queued (with one worker
                // nobody else seals them) and at least one, so inbound is served between turns.
                var credits = tunTurn(stager, keyIndex: keyIndex, out: out)
                while credits > 0, let b = cryptoQueue.tryPop() {
                    cryptAndRelease(b, keyIndex: keyIndex, out: out)
                    credits -= 1
                }
                continue
            }
            // Another worker holds the turn: queued work; else, as the holder gives the turn
            // back within a burst's staging (microseconds), wait for it briefly awake, then
            // sleep until work comes or the holder gives the turn back and nudges.
            if let b = cryptoQueue.tryPop() {
                cryptAndRelease(b, keyIndex: keyIndex, out: out)
                continue
            }
            if tunStaging.load(ordering: .relaxed) {
                let until = monotonicSeconds() + Self.turnSpinSeconds
                while tunTurn.load(ordering: .relaxed), monotonicSeconds() < until {}
                if !tunTurn.load(ordering: .relaxed) { continue }
            }
            if let b = cryptoQueue.pop(waitMilliseconds: 100) { cryptAndRelease(b, keyIndex: keyIndex, out: out) }
        }
        // Stopping: seal or open and release what is still queued (as the workers of the
        // reader-thread design do), so no batch is left in a FIFO.
        while let b = cryptoQueue.tryPop() { cryptAndRelease(b, keyIndex: keyIndex, out: out) }
    }

    /// How long a worker waits awake for the TUN turn before it sleeps.
    static let turnSpinSeconds = 20e-6

    /// Gives the TUN turn back, and the spare batches this worker took for it to the pool
    /// (the memory the holder wrote, such as staged batches and the benchmark source's
    /// state, is visible to the next holder).
    @inline(__always)
    func giveTunTurn(_ stager: TunStager) {
        if !stager.spares.isEmpty {
            for b in stager.spares { pool.put(b) }
            stager.spares.removeAll(keepingCapacity: true)
        }
        tunTurn.store(false, ordering: .releasing)
    }

    /// One turn at the TUN, called with the turn held; gives it back. Returns how many
    /// queued batches the caller should seal or open next (see the loop). A burst that
    /// stages no batch (only priority-lane packets, sent already) keeps the turn for the
    /// next read, unless work is queued: no other worker is woken for nothing to seal.
    func tunTurn(_ stager: TunStager, keyIndex: Int, out: ThreadOutput) -> Int {
        var burst = 0
        while isRunning {
            // One spare before reading: when none is free, every batch is in flight, so
            // help release them instead of reading more (backpressure on the TUN).
            if stager.spares.isEmpty, let b = pool.tryGet() { stager.spares.append(b) }
            burst = stager.spares.isEmpty ? 0 : readTunBurst(stager.buffers)
            guard burst > 0 else { break }
            tunStaging.store(true, ordering: .relaxed)
            defer { tunStaging.store(false, ordering: .relaxed) }
            takeSpares(stager, for: stager.buffers.segments, keyIndex: keyIndex, out: out)
            stageTunBurst(stager, burst: burst, keyIndex: keyIndex, out: out)
            if !stager.full.isEmpty || !stager.staged.isEmpty { break }
            if cryptoQueue.queued > 0 {
                giveTunTurn(stager)
                return 1
            }
        }
        guard burst > 0 else {
            if let b = cryptoQueue.tryPop() {
                giveTunTurn(stager)
                cryptAndRelease(b, keyIndex: keyIndex, out: out)
            } else if stager.spares.isEmpty {
                giveTunTurn(stager)
                if let b = pool.get(timeoutMilliseconds: 1) { pool.put(b) }
            } else if edges == nil {
                // Idle: wait for the TUN or for queued work, still holding the turn (one
                // waiter on the TUN at a time; the other workers sleep on the queue).
                _ = cryptoQueue.waitForItem(orReadable: tun.fd, timeoutMilliseconds: 100)
                giveTunTurn(stager)
            } else {
                // A benchmark source with nothing left: do not spin.
                giveTunTurn(stager)
                if let b = cryptoQueue.pop(waitMilliseconds: 1) { cryptAndRelease(b, keyIndex: keyIndex, out: out) }
            }
            return 0
        }
        // Into the peers' FIFOs in staging order while the turn is held.
        var own: PacketBatch? = nil
        var queued = 0
        stager.drain { b in
            guard let peer = b.peer else {
                recycle(b)
                return
            }
            guard board.withLock({ peer.outbound.append(b) }) else {
                stats.drop(.queueFull, UInt64(b.count))
                recycle(b)
                return
            }
            if own == nil {
                own = b
            } else if cryptoQueue.push(b) {
                queued += 1
            } else {
                // Only once the queue is closed (stopping): release it as a drop, in order.
                b.count = 0
                cryptAndRelease(b, keyIndex: keyIndex, out: out)
            }
        }
        giveTunTurn(stager)
        cryptoQueue.nudge()
        if let own { cryptAndRelease(own, keyIndex: keyIndex, out: out) }
        return max(1, queued)
    }

    /// Takes the batches a burst of `burst` packets needs, leaving the inbound direction its reserve, like the
    /// TUN reader: waiting up to 100 ms for them (backpressure, not drops) — and meanwhile
    /// sealing or opening queued batches, which frees them (with one worker nobody else would).
    func takeSpares(_ stager: TunStager, for burst: Int, keyIndex: Int, out: ThreadOutput) {
        var deadline = 0.0
        while stager.spares.count < batchesFor(burst), isRunning {
            if let b = pool.tryGet(leaving: directionReserve) {
                stager.spares.append(b)
            } else if let b = cryptoQueue.tryPop() {
                cryptAndRelease(b, keyIndex: keyIndex, out: out)
            } else {
                let now = monotonicSeconds()
                if deadline == 0 { deadline = now + 0.1 } else if now > deadline { return }
                if let b = pool.get(timeoutMilliseconds: 1, leaving: directionReserve) { stager.spares.append(b) }
            }
        }
    }
}
