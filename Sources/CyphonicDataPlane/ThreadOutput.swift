import CyphonicPosix

#if canImport(Glibc)
import Glibc
#endif

/// What one pipeline thread writes with: its UDP GSO sender, its TUN writer (coalescing
/// TCP segments when the TUN has offload), and a scratch list for releasing batches.
/// One per thread, never shared; allocated when the thread starts, so releasing and
/// writing allocate nothing.
final class ThreadOutput {
    let sender: UDPSegmentSender
    private let coalescer: TunCoalescer?
    private let fd: Int32
    var released: [PacketBatch] = []
    /// Writes made without a coalescer (one packet each).
    private var directWrites = 0
    /// GSO refusals of this thread's sender already counted in the statistics.
    var gsoRefusalsCounted = 0

    init(socket: UDPSocket, segmentation: Bool, tun: TunDevice) {
        sender = UDPSegmentSender(socket: socket, segmentation: segmentation)
        fd = tun.fd
        let fd = tun.fd
        coalescer = tun.vnetHeader ? TunCoalescer { iov, count in _ = writev(fd, iov, count) } : nil
        released.reserveCapacity(BatchFIFO.capacity)
    }

    /// Queues the opened packet at `slot[PacketBatch.payloadOffset...]` for the TUN (the
    /// header bytes before it are free for the vnet header); call ``flushTun()`` before
    /// the slot is reused.
    @inline(__always)
    func writeTun(_ slot: UnsafeMutableRawBufferPointer, _ length: Int) {
        let packet = slot.baseAddress! + PacketBatch.payloadOffset
        if let coalescer {
            coalescer.add(packet, length: length)
        } else {
            _ = write(fd, packet, length)
            directWrites += 1
        }
    }

    /// Writes what the coalescer holds, and adds the writes made since the last call
    /// (and the packets they carried) to `stats`.
    @inline(__always)
    func flushTun(counting stats: DataPlaneStats) {
        coalescer?.flush()
        let writes = coalescer?.writes ?? directWrites
        let packets = coalescer?.packets ?? directWrites
        stats.tunWrites.add(UInt64(writes - countedWrites))
        stats.tunPacketsWritten.add(UInt64(packets - countedPackets))
        (countedWrites, countedPackets) = (writes, packets)
    }

    private var countedWrites = 0
    private var countedPackets = 0
}
