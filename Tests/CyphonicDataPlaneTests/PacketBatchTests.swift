import Testing

@testable import CyphonicDataPlane

/// A batch's slot layout: regular slots of `slotSize`; an adopted GRO run in place
/// (slot `k` at `k * segmentSize`, the last one shorter), later packets copied in behind
/// it, never over it; ``PacketBatch/reset()`` gives the regular layout back.
@Suite struct PacketBatchTests {
    @Test func regularSlotsFollowEachOther() {
        let b = PacketBatch()
        #expect(!b.adopted && !b.isFull)
        for i in 0..<PacketBatch.capacity {
            #expect(!b.isFull)
            #expect(b.slot(i).baseAddress == b.slab.baseAddress! + i * PacketBatch.slotSize)
            #expect(b.slot(i).count == PacketBatch.slotSize)
            b.count = i + 1
        }
        #expect(b.isFull)
    }

    @Test func anAdoptedRunStaysWhereItLandedAndCopiesGoBehindIt() {
        let b = PacketBatch()
        // A GRO run of 27 datagrams of 1452 bytes, the last one 700 bytes.
        let size = 1452
        let total = 26 * size + 700
        for k in 0..<27 { b.slab[k * size] = UInt8(k) }
        b.adopt(segments: 27, segmentSize: size, total: total)
        #expect(b.adopted && b.count == 27)
        for k in 0..<27 {
            #expect(b.slot(k).baseAddress == b.slab.baseAddress! + k * size)
            #expect(b.slot(k)[0] == UInt8(k), "the datagram is read where it landed")
            #expect(b.lengths[k] == (k == 26 ? 700 : size))
            #expect(!b.opened[k])
        }
        // Copied packets start past the run, 64-byte aligned, a whole slot each.
        var previousEnd = total
        for j in b.count..<PacketBatch.capacity {
            let start = b.slot(j).baseAddress! - b.slab.baseAddress!
            #expect(start >= previousEnd && start % 64 == 0)
            #expect(b.slot(j).count == PacketBatch.slotSize && start + PacketBatch.slotSize <= b.slab.count)
            previousEnd = start + PacketBatch.slotSize
            b.count = j + 1
        }
        #expect(b.count == PacketBatch.capacity && b.isFull)
        // Recycled: the regular layout again.
        b.reset()
        #expect(!b.adopted && b.count == 0)
        for i in 0..<PacketBatch.capacity { #expect(b.slot(i).baseAddress == b.slab.baseAddress! + i * PacketBatch.slotSize) }
    }

    @Test func aLargestRunLeavesRoomForTheRestOfTheBatch() {
        // 64 KiB of 1024-byte datagrams: 64 of them, the batch is full at once.
        let full = PacketBatch()
        full.adopt(segments: 64, segmentSize: 1024, total: 65_536)
        #expect(full.isFull)
        // 45 datagrams of 1452 bytes (what fits in one GRO message): 19 more fit behind.
        let b = PacketBatch()
        b.adopt(segments: 45, segmentSize: 1452, total: 45 * 1452)
        var more = 0
        for j in b.count..<PacketBatch.capacity {
            #expect(b.slot(j).baseAddress! + PacketBatch.slotSize <= b.slab.baseAddress! + b.slab.count)
            b.count = j + 1
            more += 1
        }
        #expect(more == 19 && b.isFull)
    }
}
