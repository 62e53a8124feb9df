import CCyphonicLinux
import CyphonicCore

/// A fixed set of datagram slots for one `recvmmsg`/`sendmmsg` call: one slab of
/// buffers allocated at creation, reused for every batch (no allocation per packet).
/// Owned by one thread at a time; hand the whole batch between threads, never a slot.
public final class DatagramBatch {
    public let capacity: Int
    public let bufferSize: Int
    private let slab: UnsafeMutableRawBufferPointer
    let entries: UnsafeMutablePointer<ccy_datagram>
    /// Slots in use: filled by a receive, or by the caller before a send.
    public var count = 0

    public init(capacity: Int = 64, bufferSize: Int = 2048) {
        precondition(capacity > 0 && capacity <= 128 && bufferSize > 0, "batch capacity 1...128")
        self.capacity = capacity
        self.bufferSize = bufferSize
        slab = .allocate(byteCount: capacity * bufferSize, alignment: 64)
        slab.initializeMemory(as: UInt8.self, repeating: 0)
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: ccy_datagram(), count: capacity)
        reset()
    }

    /// Restores every slot's buffer pointer and capacity (before a receive).
    public func reset() {
        for i in 0..<capacity {
            entries[i].buffer = slab.baseAddress! + i * bufferSize
            entries[i].length = bufferSize
            entries[i].gso_size = 0
        }
        count = 0
    }

    /// The whole buffer of slot `i` (its capacity).
    public func buffer(_ i: Int) -> UnsafeMutableRawBufferPointer {
        precondition(i >= 0 && i < capacity)
        return UnsafeMutableRawBufferPointer(start: entries[i].buffer, count: bufferSize)
    }

    /// The filled bytes of slot `i`.
    public func payload(_ i: Int) -> UnsafeMutableRawBufferPointer {
        precondition(i >= 0 && i < count)
        return UnsafeMutableRawBufferPointer(start: entries[i].buffer, count: entries[i].length)
    }

    /// Length of slot `i` (received length, or bytes to send).
    public func length(_ i: Int) -> Int { entries[i].length }
    public func setLength(_ i: Int, _ n: Int) {
        precondition(n >= 0 && n <= bufferSize)
        entries[i].length = n
    }

    /// The GRO segment size seen on receive (0 = not coalesced), or the GSO size to send.
    public func segmentSize(_ i: Int) -> Int { Int(entries[i].gso_size) }
    public func setSegmentSize(_ i: Int, _ n: Int) { entries[i].gso_size = UInt16(clamping: n) }

    public func endpoint(_ i: Int) -> Endpoint? { Endpoint(socketAddress: entries[i].address) }
    public func setEndpoint(_ i: Int, _ e: Endpoint) {
        let (storage, length) = e.socketAddress
        entries[i].address = storage
        entries[i].address_length = length
    }

    deinit {
        entries.deallocate()
        slab.deallocate()
    }
}
