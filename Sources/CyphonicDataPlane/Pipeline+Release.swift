import CyphonicCore
import CyphonicPosix
import CyphonicWire
import Foundation
import Synchronization

// Stages 3 and 4 of the pipeline (see Pipeline.swift): crypto workers, and the
// in-order release that whichever worker finishes a peer's oldest batch performs.
extension Pipeline {
    // MARK: stage 3 — crypto workers, which also release

    func workerLoop(keyIndex: Int) {
        let out = makeOutput()
        while let b = cryptoQueue.pop() { cryptAndRelease(b, keyIndex: keyIndex, out: out) }
    }

    /// Seals or opens a batch that is in its peer's FIFO, marks it done, and releases it
    /// (with the finished ones behind it) if it is now the head and nobody releases that
    /// peer's direction.
    @inline(__always)
    func cryptAndRelease(_ b: PacketBatch, keyIndex: Int, out: ThreadOutput) {
        crypt(b, keyIndex: keyIndex)
        guard let peer = b.peer else {
            recycle(b)
            return
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

    /// Seals or opens every packet of `b` in place.
    @inline(__always)
    func crypt(_ b: PacketBatch, keyIndex: Int) {
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
            } else if b.opened[i] {
                b.ok[i] = true
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
    func claimReleasable(_ peer: Peer, outbound: Bool, into released: inout [PacketBatch]) -> Bool {
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
    func releaseClaimed(_ peer: Peer, outbound: Bool, out: ThreadOutput) {
        while true {
            for b in out.released {
                if outbound { send(b, out: out) } else { deliver(b, out: out) }
                recycle(b)
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
    func send(_ b: PacketBatch, out: ThreadOutput) {
        if let peer = b.peer { controlDelay(b, &peer.outboundDelay) }
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

    /// CoDel on the peer's queue in this direction: when the batch waited too long for
    /// too long, drops one of its bulk packets (never a priority-lane-sized one).
    @inline(__always)
    func controlDelay(_ b: PacketBatch, _ codel: inout CoDel) {
        let now = monotonicSeconds()
        guard b.staged > 0, codel.shouldDrop(sojourn: now - b.staged, now: now) else { return }
        for i in 0..<b.count where b.ok[i] && b.lengths[i] > PriorityLane.maxCapsule {
            b.ok[i] = false
            stats.drop(.queueDelay)
            return
        }
    }

    @inline(__always)
    func countSends(_ out: ThreadOutput, callsBefore: Int, datagrams: Int) {
        stats.udpSendCalls.add(UInt64(out.sender.calls - callsBefore))
        stats.udpDatagramsSent.add(UInt64(datagrams))
        if out.sender.refusals != out.gsoRefusalsCounted {
            stats.udpGSORefused.add(UInt64(out.sender.refusals - out.gsoRefusalsCounted))
            out.gsoRefusalsCounted = out.sender.refusals
        }
    }

    @inline(__always)
    func countReceived(_ landing: DatagramLanding, messages: Int) {
        var datagrams = 0
        for i in 0..<messages { datagrams += landing.segments(i) }
        stats.udpMessagesReceived.add(UInt64(messages))
        stats.udpDatagramsReceived.add(UInt64(datagrams))
    }

    /// Releases an opened batch: replay check, inner-source check, TUN write.
    @inline(__always)
    func deliver(_ b: PacketBatch, out: ThreadOutput) {
        guard let session = b.session, let peer = b.peer else { return }
        // The replay check for the whole batch under one hold of the window's lock.
        var failed: UInt64 = 0
        var replayed: UInt64 = 0
        // The source of the newest packet (the one that moved the window last): roaming
        // follows it only, so a late packet by a slower path never moves the peer back.
        var newestSource: SocketAddress? = nil
        var late: UInt64 = 0
        session.replay.withLock { window in
            for i in 0..<b.count {
                if !b.ok[i] {
                    failed += 1
                    continue
                }
                let (accepted, newest) = window.acceptNewest(b.counters[i])
                if !accepted {
                    b.ok[i] = false
                    replayed += 1
                } else if newest {
                    newestSource = b.sources[i]
                } else {
                    late += 1
                }
            }
        }
        if late > 0 { peer.stats.rxOutOfOrder.add(late) }
        if failed > 0 { stats.drop(.authenticationFailed, failed) }
        if replayed > 0 { stats.drop(.replay, replayed) }
        controlDelay(b, &peer.inboundDelay)
        var received = false
        for i in 0..<b.count where b.ok[i] {
            received = true
            let length = b.lengths[i]
            peer.stats.rxPackets.add()
            peer.stats.rxBytes.add(UInt64(length))
            guard length > 0 else { continue }  // keepalive
            let slot = b.slot(i)
            if slot[3] & HeaderFlags.control.rawValue != 0 {
                handleControlCapsule(slot, length, from: peer)
                continue
            }
            let packet = UnsafeRawBufferPointer(rebasing: slot[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + length)])
            guard PeerTable.sourceBelongs(packet, to: peer) else {
                stats.drop(.badInnerSource)
                continue
            }
            out.writeTun(slot, length)
        }
        out.flushTun(counting: stats)
        if received {
            session.lastReceived = monotonicSeconds()
            if session.confirm() { promote(session, of: peer) }
        }
        if let source = newestSource {
            // Only the thread holding this peer's inbound claim touches lastSource. A roam
            // made elsewhere (the priority lane) changes the generation: check again.
            let generation = peer.roamGeneration.load(ordering: .acquiring)
            if source != peer.lastSource || generation != peer.lastSourceGeneration {
                // A held roam (back to the relay right after a switch) is tried again later.
                if roam(peer, to: source) { peer.lastSource = source }
                peer.lastSourceGeneration = peer.roamGeneration.load(ordering: .acquiring)
            }
        }
    }

    /// An authenticated control capsule (its plaintext a SignalingMessage): a peer's
    /// Finalization ends its sessions at the next tick instead of after the idle timeout.
    func handleControlCapsule(_ slot: UnsafeMutableRawBufferPointer, _ length: Int, from peer: Peer) {
        let plain = UnsafeRawBufferPointer(rebasing: slot[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + length)])
        guard let message = try? SignalingMessage.decode(Array(plain)) else {
            stats.drop(.badHeader)
            return
        }
        if case .finalization = message.body { peer.markFinalized() }
    }

    /// The first authenticated packet on an initiator's new session proves the responder
    /// holds it: from now on it is the one sent on (the old one is still received on).
    func promote(_ session: DataSession, of peer: Peer) {
        peers.lock()
        peers.promoteLocked(session, of: peer)
        peers.unlock()
        control.sessionConfirmed(session, of: peer)
    }

    /// Follows a peer to the address its newest authenticated packets come from (roaming);
    /// false when the move is held (``PeerTable/roamLocked(_:to:now:)``).
    @inline(__always)
    @discardableResult
    func roam(_ peer: Peer, to source: SocketAddress) -> Bool {
        peers.lock()
        defer { peers.unlock() }
        return peers.roamLocked(peer, to: source, now: monotonicSeconds())
    }
}
