import CyphonicPosix

#if canImport(Glibc)
import Glibc
#endif

/// The memory one TUN-reading thread reads bursts into, allocated once, and what the
/// last burst holds: items, each an ordinary packet or a TCP offload super-packet that
/// staging cuts straight into the batch slots it is sealed in (``TunOffload/Cut``), so
/// a segment's bytes are written once, not cut into a landing area and copied again.
/// Owned by one thread (the TUN reader, the worker holding the TUN turn, or the single
/// thread); no lock.
final class TunBurst {
    /// Packets a burst may become (with offload one read can become up to 122 segments).
    let slots: Int
    /// Where reads land: items at ``starts``, plain reads one per ``PacketBatch/slotSize``.
    let area: UnsafeMutableRawBufferPointer
    /// Per item: where its packet starts in ``area``, and its length (a super-packet whole).
    let starts: UnsafeMutablePointer<Int>
    let lengths: UnsafeMutablePointer<Int>
    /// Per item: how to cut it, or `nil` for an ordinary packet.
    let cuts: UnsafeMutablePointer<TunOffload.Cut?>
    /// Items in the last burst.
    private(set) var items = 0
    /// Packets the last burst becomes once its super-packets are cut.
    private(set) var segments = 0

    /// The largest read of a TUN with offload: a 64 KiB super-packet and its vnet header.
    static let readSize = 65_536 + TunOffload.headerSize

    init(slots: Int) {
        self.slots = slots
        area = .allocate(byteCount: slots * PacketBatch.slotSize, alignment: 64)
        starts = .allocate(capacity: slots)
        lengths = .allocate(capacity: slots)
        cuts = .allocate(capacity: slots)
        cuts.initialize(repeating: nil, count: slots)
    }

    deinit {
        area.deallocate()
        starts.deallocate()
        lengths.deallocate()
        cuts.deinitialize(count: slots)
        cuts.deallocate()
    }

    /// The `k`-th item's packet (a super-packet whole: its headers route it).
    @inline(__always)
    func packet(_ k: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: area.baseAddress! + starts[k], count: lengths[k])
    }

    /// Empties the burst.
    @inline(__always)
    func reset() {
        items = 0
        segments = 0
    }

    /// Adds an item.
    @inline(__always)
    func append(start: Int, length: Int, cut: TunOffload.Cut?) {
        starts[items] = start
        lengths[items] = length
        cuts[items] = cut
        items += 1
        segments += cut?.segments ?? 1
    }

    /// Takes `count` plain packets written one per slot (``PacketBatch/slotSize`` apart,
    /// at offset 0) with their lengths already in ``lengths``.
    func takeSlotted(_ count: Int) {
        for k in 0..<count {
            starts[k] = k * PacketBatch.slotSize
            cuts[k] = nil
        }
        items = count
        segments = count
    }
}

extension Pipeline {
    /// Slots a TUN burst may fill: with offload one read can become up to 122 segments.
    var landingSlots: Int { offloadReads ? 256 : PacketBatch.capacity }

    /// Whether TUN reads come with a vnet header (offload super-packets possible).
    var offloadReads: Bool { edges.map { $0.offloadSource != nil } ?? tun.vnetHeader }

    /// Reads a burst from the TUN into `buffers` with no lock held: up to 64 reads, or
    /// with offload as many as leave room for a full read and 128 more segments.
    /// Returns how many items (``TunBurst/segments``: how many packets they become).
    func readTunBurst(_ buffers: TunBurst) -> Int {
        buffers.reset()
        let area = buffers.area.baseAddress!
        if let edges, edges.offloadSource == nil {
            buffers.takeSlotted(edges.tunSource(area, PacketBatch.slotSize, buffers.lengths, PacketBatch.capacity))
            return buffers.items
        }
        guard offloadReads else {
            var n = 0
            while n < PacketBatch.capacity {
                let length = read(tun.fd, area + n * PacketBatch.slotSize, PacketBatch.slotSize)
                if length <= 0 { break }
                buffers.lengths[n] = length
                n += 1
            }
            buffers.takeSlotted(n)
            return n
        }
        var used = 0
        var reads = 0
        while buffers.segments < buffers.slots - 128, reads < PacketBatch.capacity, buffers.area.count - used >= TunBurst.readSize {
            let at = area + used
            let n = edges?.offloadSource?(at, TunBurst.readSize) ?? read(tun.fd, at, TunBurst.readSize)
            if n <= 0 { break }
            reads += 1
            // The packet (or super-packet) follows the vnet header, to the end of the read.
            let packet = (start: used + TunOffload.headerSize, length: n - TunOffload.headerSize)
            switch TunOffload.prepare(UnsafeMutableRawBufferPointer(start: at, count: n), count: n) {
            case nil:
                stats.drop(.badHeader)
            case .packet:
                buffers.append(start: packet.start, length: packet.length, cut: nil)
            case .superPacket(let cut):
                if cut.segments > buffers.slots - buffers.segments {
                    stats.drop(.badHeader)
                } else if cut.largest > maxPayload {
                    stats.drop(.tooLarge, UInt64(cut.segments))
                } else {
                    buffers.append(start: packet.start, length: packet.length, cut: cut)
                }
            }
            used += (n + 63) & ~63
        }
        return buffers.items
    }
}
