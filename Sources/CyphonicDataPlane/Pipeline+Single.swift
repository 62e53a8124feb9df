import CyphonicCore
import CyphonicPosix
import CyphonicWire
import Foundation
import Synchronization

// `--pipeline single` (the conventional design: one thread does everything) and the
// keepalive path shared by both designs.
extension Pipeline {
    // MARK: --pipeline single

    func singleLoop() {
        let work = PacketBatch()
        let out = makeOutput()
        let landing = makeLanding()
        let buffers = TunBurst(slots: landingSlots)
        var received = [Received](repeating: .bad, count: PacketBatch.capacity)
        var owners = [(Peer, DataSession)?](repeating: nil, count: PacketBatch.capacity)
        var receivedSinceTun = 0
        while isRunning {
            // A benchmark source stands for a TUN that is always readable (and no UDP input).
            let (tunReady, udpReady) = edges != nil ? (true, false) : waitReadable(tun.fd, socket.fd, timeoutMilliseconds: 100)
            if tunReady {
                receivedSinceTun = 0
                singleTunTurn(buffers, work: work, out: out)
            }
            if udpReady {
                guard let n = try? landing.receive(from: socket) else { continue }
                countReceived(landing, messages: n)
                let now = monotonicSeconds()
                for i in 0..<n {
                    let source = landing.source(i)
                    let segments = landing.segments(i)
                    var first = 0
                    while first < segments {
                        // Classify up to 64 datagrams and find their sessions under one hold of the table lock.
                        let chunk = min(PacketBatch.capacity, segments - first)
                        peers.lock()
                        for k in 0..<chunk {
                            let datagram = landing.segment(i, first + k)
                            received[k] = classify(datagram, length: datagram.count)
                            if case .control = received[k] { queueControlLocked(UnsafeRawBufferPointer(datagram), from: source) }
                            if case .capsule(let index, _) = received[k] { owners[k] = peers.sessionLocked(index: index) }
                        }
                        peers.unlock()
                        for k in 0..<chunk {
                            let datagram = landing.segment(i, first + k)
                            let length = datagram.count
                            receivedSinceTun += length
                            let counter: UInt64
                            switch received[k] {
                            case .bad:
                                stats.drop(.badHeader)
                                continue
                            case .control:
                                // Queued in the pass above, under the table lock.
                                continue
                            case .capsule(_, let c):
                                counter = c
                            }
                            guard let (peer, session) = owners[k] else {
                                stats.drop(.unknownSession)
                                continue
                            }
                            owners[k] = nil
                            guard session.replay.withLock({ $0.mightAccept(counter) }) else {
                                stats.drop(.replay)
                                continue
                            }
                            guard let plain = session.open(slot: datagram, length: length, counter: counter, keyIndex: 0) else {
                                stats.drop(.authenticationFailed)
                                continue
                            }
                            let (accepted, newest) = session.replay.withLock { $0.acceptNewest(counter) }
                            guard accepted else {
                                stats.drop(.replay)
                                continue
                            }
                            if !newest { peer.stats.rxOutOfOrder.add() }
                            session.lastReceived = now
                            if session.confirm() { promote(session, of: peer) }
                            peer.stats.rxPackets.add()
                            peer.stats.rxBytes.add(UInt64(plain))
                            if newest, peer.endpoint != source { roam(peer, to: source) }
                            guard plain > 0 else { continue }
                            if datagram[3] & HeaderFlags.control.rawValue != 0 {
                                handleControlCapsule(datagram, plain, from: peer)
                                continue
                            }
                            let packet = UnsafeRawBufferPointer(rebasing: datagram[PacketBatch.payloadOffset..<(PacketBatch.payloadOffset + plain)])
                            guard PeerTable.sourceBelongs(packet, to: peer) else {
                                stats.drop(.badInnerSource)
                                continue
                            }
                            out.writeTun(datagram, plain)
                        }
                        first += chunk
                        // After every 64 KiB received, whatever the TUN holds goes out (ACKs,
                        // echo replies): a long run of received bulk must not let the TUN
                        // queue overflow. (A run of small datagrams — ACKs at a bulk sender —
                        // is not held up by sending bulk in between.)
                        if receivedSinceTun >= 65_536 {
                            receivedSinceTun = 0
                            singleTunTurn(buffers, work: work, out: out)
                        }
                    }
                }
                // The landing area is reused by the next receive: write what is held.
                out.flushTun(counting: stats)
            }
        }
    }

    /// One TUN turn of the single-threaded loop: reads what the TUN holds (non-blocking),
    /// seals it and sends it in groups of up to 64. Like the multi-threaded TUN reader it
    /// works in runs to one destination (one route lookup and one counter reservation per
    /// run) and cuts offload super-packets straight into the slots it seals them in, so
    /// the two designs differ in threading only.
    func singleTunTurn(_ buffers: TunBurst, work: PacketBatch, out: ThreadOutput) {
        let sender = out.sender
        let burst = readTunBurst(buffers)
        let now = monotonicSeconds()
        var k = 0
        // Segments of super-packet `k` already sent (one can span groups).
        var cutDone = 0
        while k < burst {
            var n = 0
            let calls = sender.calls
            peers.lock()
            while k < burst, n < PacketBatch.capacity {
                let packet = buffers.packet(k)
                let cut = buffers.cuts[k]
                guard cut != nil || packet.count <= maxPayload else {
                    stats.drop(.tooLarge)
                    k += 1
                    continue
                }
                guard let peer = peers.routeLocked(packet: packet), let session = peer.current, let endpoint = peer.endpoint else {
                    stats.drop(.noRoute, UInt64((cut?.segments ?? 1) - cutDone))
                    peers.missLocked(packet: packet)
                    k += 1
                    cutDone = 0
                    continue
                }
                // A run: plain packets to one destination, or the next segments of a super-packet.
                let end =
                    cut.map { min(cutDone + PacketBatch.capacity - n, $0.segments) }
                    ?? runEnd(buffers, from: k, burst: burst, room: PacketBatch.capacity - n, laneBreaks: false)
                let start = cut == nil ? k : cutDone
                var counter = session.nextCounters(end - start)
                var sent = 0
                var bytes = 0
                for j in start..<end {
                    let slot = work.slot(n)
                    let payload = UnsafeMutableRawBufferPointer(rebasing: slot[PacketBatch.payloadOffset...])
                    let length: Int
                    if let cut {
                        length = TunOffload.writeSegment(j, of: cut, from: packet, into: payload)
                    } else {
                        let p = buffers.packet(j)
                        payload.baseAddress!.copyMemory(from: p.baseAddress!, byteCount: p.count)
                        length = p.count
                    }
                    let c = counter
                    counter &+= 1
                    guard let sealed = session.seal(slot: slot, length: length, counter: c, keyIndex: 0) else { continue }
                    do { try sender.append(slot.baseAddress!, length: sealed, to: endpoint) } catch { stats.drop(.queueFull) }
                    sent += 1
                    bytes += sealed
                    n += 1
                }
                peer.stats.txPackets.add(UInt64(sent))
                peer.stats.txBytes.add(UInt64(bytes))
                if sent > 0 { session.lastSent = now }
                if let cut, end < cut.segments {
                    cutDone = end
                } else {
                    k = cut == nil ? end : k + 1
                    cutDone = 0
                }
            }
            peers.unlock()
            // The work slots are reused by the next group: send before refilling them.
            do { try sender.flush() } catch { stats.drop(.queueFull) }
            countSends(out, callsBefore: calls, datagrams: n)
        }
    }

    /// Seals and sends an empty capsule (keepalive) on the control thread's key.
    public func sendKeepalive(to peer: Peer) { sendControlCapsule([], to: peer) }

    /// A keepalive on a given session of `peer` (a responder confirming a new session).
    public func sendKeepalive(to peer: Peer, on session: DataSession) { sendControlCapsule([], to: peer, on: session) }

    /// An authenticated keepalive to `peer` at another address than its endpoint (a
    /// direct path being tried while the tunnel goes through the relay): if it arrives,
    /// the peer's roaming follows it there.
    public func sendKeepalive(to peer: Peer, at endpoint: SocketAddress) { sendControlCapsule([], to: peer, at: endpoint) }

    /// Tells a peer we shut down (an authenticated Finalization), so it ends the
    /// session now instead of after its idle timeout. Call on the stopping thread,
    /// before ``stop()`` (it uses the control key).
    public func sendFinalization(to peer: Peer) {
        guard let message = try? SignalingMessage(transactionID: 0, body: .finalization(.shutdown)).encode() else { return }
        sendControlCapsule(message, to: peer, flags: .control)
    }

    private func sendControlCapsule(
        _ payload: [UInt8], to peer: Peer, flags: HeaderFlags = [], on given: DataSession? = nil, at address: SocketAddress? = nil
    ) {
        peers.lock()
        let session = given ?? peer.current
        let endpoint = address ?? peer.endpoint
        peers.unlock()
        guard let session, let endpoint else { return }
        var buffer = [UInt8](repeating: 0, count: Header.size + payload.count + 16)
        buffer.replaceSubrange(Header.size..<(Header.size + payload.count), with: payload)
        let n = buffer.withUnsafeMutableBytes { slot in
            session.seal(
                slot: slot, length: payload.count, counter: session.nextCounter(), keyIndex: session.controlKeyIndex,
                flags: flags)
        }
        guard let n else { return }
        try? buffer.withUnsafeBytes { try socket.send(UnsafeRawBufferPointer(rebasing: $0[0..<n]), to: endpoint) }
        // A probe of another address is not a keepalive where the peer is.
        if address == nil { session.lastSent = monotonicSeconds() }
    }
}
