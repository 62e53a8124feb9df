import CyphonicCore
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Foundation
import Synchronization

/// One relay socket's thread: `recvmmsg` with GRO into a landing area, the whole batch
/// routed under one hold of the table lock, forwards sent in arrival order with GSO
/// (one sender per socket, so a bridged session leaves by the other family's socket),
/// signaling handed to the server after the batch. Allocates at creation only, except
/// for signaling datagrams (copied).
final class RelayThread: Sendable {
    /// Shared between the owner and the thread (an `Atomic` cannot be captured itself).
    final class LoopState: Sendable {
        let running = Atomic<Bool>(true)
        let finished = DispatchSemaphore(value: 0)
    }
    private let state = LoopState()

    init(server: TRSServer, index: Int, sockets: [UDPSocket]) {
        let socket = sockets[index]
        let offloads = server.settings.offloads
        startThread(named: "trs-udp\(index)") { [state] in
            defer { state.finished.signal() }
            let gro = offloads && socket.enableGRO()
            let landing = DatagramLanding(messages: 64, bufferSize: gro ? DatagramLanding.gro : 2048)
            let senders = sockets.map { UDPSegmentSender(socket: $0, segmentation: offloads) }
            let family4 = socket.family == AF_INET
            var work = RelayBatchWork()
            var lastHousekeeping: Int64 = 0
            while state.running.load(ordering: .acquiring) {
                let (ready, _) = waitReadable(socket.fd, timeoutMilliseconds: 200)
                if ready, let n = try? landing.receive(from: socket), n > 0 {
                    server.relay(landing, count: n, socketIndex: index, ipv4: family4, senders: senders, work: &work)
                }
                let now = unixNowSeconds()
                if now != lastHousekeeping, index == 0 || !ready {
                    lastHousekeeping = now
                    server.housekeeping(now: now)
                }
            }
        }
    }

    func stop() {
        if state.running.exchange(false, ordering: .acquiringAndReleasing) { state.finished.wait() }
    }
}

/// Scratch space of one thread's batch (reused, so a batch allocates nothing).
struct RelayBatchWork {
    struct Segment {
        let pointer: UnsafeMutableRawPointer
        let length: Int
        let source: SocketAddress
        let type: MessageType
        let receiverIndex: UInt32
    }
    struct Forward {
        let pointer: UnsafeMutableRawPointer
        let length: Int
        let to: SocketAddress
        let socketIndex: Int
    }
    var segments: [Segment] = []
    var forwards: [Forward] = []
    var drops: [String: UInt64] = [:]
    /// Datagrams and bytes sent per socket in this batch.
    var sent: [UInt64] = []
    var sentBytes: [UInt64] = []

    init() {
        segments.reserveCapacity(4096)
        forwards.reserveCapacity(4096)
    }
}

extension TRSServer {
    /// One received batch: signaling aside, the rest routed under one lock and sent in order.
    func relay(
        _ landing: DatagramLanding, count: Int, socketIndex: Int, ipv4: Bool, senders: [UDPSegmentSender], work: inout RelayBatchWork
    ) {
        work.segments.removeAll(keepingCapacity: true)
        work.forwards.removeAll(keepingCapacity: true)
        var control: [([UInt8], Endpoint)] = []
        for i in 0..<count {
            let source = landing.source(i)
            for k in 0..<landing.segments(i) {
                let seg = landing.segment(i, k)
                guard seg.count >= Header.size, seg[0] == CyphonicVersion.protocolVersion, let type = MessageType(rawValue: seg[1]) else {
                    work.drops["malformed", default: 0] += 1
                    continue
                }
                let receiverIndex = UInt32(bigEndian: seg.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                switch type {
                case .handshakeInitiation, .signaling:
                    if let from = source.endpoint { control.append((Array(seg), from)) }
                    continue
                case .handshakeCompletion where responder.isPending(receiverIndex):
                    if let from = source.endpoint { control.append((Array(seg), from)) }
                    continue
                default:
                    work.segments.append(
                        .init(pointer: seg.baseAddress!, length: seg.count, source: source, type: type, receiverIndex: receiverIndex))
                }
            }
        }
        if !work.segments.isEmpty {
            let now = monotonicSeconds()
            table.withLock { t in
                for s in work.segments {
                    let body = UnsafeRawBufferPointer(start: s.pointer + Header.size, count: s.length - Header.size)
                    switch t.route(source: s.source, type: s.type, receiverIndex: s.receiverIndex, body: body, length: s.length, now: now) {
                    case .forward(let to, let index):
                        work.forwards.append(.init(pointer: s.pointer, length: s.length, to: to, socketIndex: index))
                    case .drop(let reason):
                        work.drops[reason, default: 0] += 1
                    }
                }
            }
        }
        // In arrival order: a sender flushes its run before another destination's starts.
        if work.sent.count != senders.count {
            work.sent = [UInt64](repeating: 0, count: senders.count)
            work.sentBytes = work.sent
        }
        for i in senders.indices {
            work.sent[i] = 0
            work.sentBytes[i] = 0
        }
        for f in work.forwards {
            do {
                try senders[f.socketIndex].append(f.pointer, length: f.length, to: f.to)
                work.sent[f.socketIndex] += 1
                work.sentBytes[f.socketIndex] += UInt64(f.length)
            } catch {
                work.drops["send_failed", default: 0] += 1
            }
        }
        for s in senders {
            do { try s.flush() } catch { work.drops["send_failed", default: 0] += 1 }
        }
        for (i, n) in work.sent.enumerated() where n > 0 {
            let out4 = senders[i].socket.family == AF_INET
            let family = ipv4 == out4 ? (ipv4 ? "ipv4" : "ipv6") : (ipv4 ? "ipv4_to_ipv6" : "ipv6_to_ipv4")
            metrics.relayed(family, packets: n, bytes: work.sentBytes[i])
        }
        for (reason, n) in work.drops { metrics.drop(reason, n) }
        work.drops.removeAll(keepingCapacity: true)
        for (bytes, from) in control { signaling(bytes, from: from, socketIndex: socketIndex) }
    }
}
