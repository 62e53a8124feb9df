import CyphonicPosix

/// The bounded queue between the data plane's receiving thread and the control
/// thread (issue 8: handshake work off the data thread). The receiver copies each
/// non-capsule datagram (handshakes, cookie replies, hole punching) into a fixed slot
/// and goes on with data; the control thread takes them in arrival order. When the
/// queue is full the datagram is dropped and counted: a flood of handshake messages
/// costs the data thread one copy each and can never stall it.
/// Preallocated: pushing and popping allocate nothing. `@unchecked Sendable`: the ring
/// is touched only with `sync` held.
public final class ControlInbox: @unchecked Sendable {
    /// Largest datagram kept (handshake messages carry a certificate: well below this).
    public static let slotSize = 2048
    public let capacity: Int
    private let sync = MutexCondition()
    private let storage: UnsafeMutableRawBufferPointer
    private var lengths: [Int]
    private var sources: [SocketAddress]
    private var head = 0
    private var count = 0

    public init(capacity: Int = 1024) {
        self.capacity = capacity
        storage = .allocate(byteCount: capacity * Self.slotSize, alignment: 16)
        lengths = [Int](repeating: 0, count: capacity)
        sources = [SocketAddress](repeating: SocketAddress(), count: capacity)
    }

    deinit { storage.deallocate() }

    /// Copies `datagram` in; false (nothing kept) when full or the datagram is too large.
    @discardableResult
    public func push(_ datagram: UnsafeRawBufferPointer, from: SocketAddress) -> Bool {
        guard datagram.count <= Self.slotSize else { return false }
        sync.lock()
        defer { sync.unlock() }
        guard count < capacity else { return false }
        let slot = (head + count) % capacity
        UnsafeMutableRawBufferPointer(rebasing: storage[(slot * Self.slotSize)..<(slot * Self.slotSize + datagram.count)])
            .copyMemory(from: datagram)
        lengths[slot] = datagram.count
        sources[slot] = from
        count += 1
        if count == 1 { sync.signal() }
        return true
    }

    /// Waits up to `milliseconds` for datagrams, then hands each one queued (at most
    /// `limit`) to `body` in arrival order, outside the lock. Returns how many.
    @discardableResult
    public func drain(
        waitMilliseconds milliseconds: Int, limit: Int = 64,
        _ body: (UnsafeRawBufferPointer, SocketAddress) -> Void
    ) -> Int {
        sync.lock()
        if count == 0, milliseconds > 0 { sync.wait(milliseconds: milliseconds) }
        let n = min(count, limit)
        let first = head
        sync.unlock()
        // The n slots from `first` stay ours until we advance `head`: pushes only write
        // slots past head + count.
        for k in 0..<n {
            let slot = (first + k) % capacity
            let source = sync.withLock { sources[slot] }
            body(
                UnsafeRawBufferPointer(rebasing: storage[(slot * Self.slotSize)..<(slot * Self.slotSize + sync.withLock { lengths[slot] })]),
                source)
        }
        sync.withLock {
            head = (head + n) % capacity
            count -= n
        }
        return n
    }

    public var queued: Int { sync.withLock { count } }
}
