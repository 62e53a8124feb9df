import CyphonicCore
import CyphonicPosix
import CyphonicWire
import Foundation
import Synchronization

// Stage 2 of the pipeline (see Pipeline.swift): the UDP receiver, and the staging and
// hand-off both staging threads share.
extension Pipeline {
    // MARK: stage 2 — UDP receiver

    /// Landing memory for one receiving thread: 64 KiB per message with GRO (a
    /// coalesced run of datagrams), one slot's worth without.
    func makeLanding() -> DatagramLanding {
        DatagramLanding(messages: PacketBatch.capacity, bufferSize: groEnabled ? DatagramLanding.gro : PacketBatch.slotSize)
    }

    func udpReceiverLoop() {
        let landing = makeLanding()
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
            // The batch of the previous capsule: a GRO message is a run of one sender's
            // datagrams, so most capsules skip the session lookup.
            var lastIndex: UInt32 = 0
            var last: PacketBatch? = nil
            peers.lock()
            for i in 0..<n {
                let from = landing.source(i)
                for k in 0..<landing.segments(i) {
                    let datagram = landing.segment(i, k)
                    let length = datagram.count
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
            pool.put(b)
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
}
