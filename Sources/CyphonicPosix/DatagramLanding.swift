import CCyphonicLinux
import CyphonicCore

/// Where one receiving thread's `recvmmsg` lands, with UDP GRO: each of `messages`
/// buffers holds up to 64 KiB, because with `UDP_GRO` the kernel hands over a run of
/// same-sized datagrams from one sender as one message (and reports their size), which
/// the caller walks segment by segment with ``segment(_:_:)``.
///
/// Guarantees: every datagram the kernel accepted is seen exactly once, with its own
/// boundaries (a coalesced message is cut back at the reported segment size, the last
/// segment possibly shorter); a buffer is never shorter than what GRO can deliver, so
/// nothing is truncated. Memory is allocated once (or lent by the caller, who may swap
/// a message's buffer for another between receives: ``lend(_:to:)``); owned by one thread.
public final class DatagramLanding {
    /// Largest message GRO delivers (one IP packet's payload).
    public static let gro = 65_536
    public let messages: Int
    public let bufferSize: Int
    /// The memory this landing allocated itself (nil when every buffer is lent).
    private let memory: UnsafeMutableRawPointer?
    /// Where each message lands.
    private let buffers: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private let vector: DatagramVector
    /// Messages filled by the last ``receive(from:)``.
    public private(set) var count = 0

    /// `bufferSize` must be ``gro`` when GRO is on; without it one datagram's worth is enough.
    public init(messages: Int = 64, bufferSize: Int = DatagramLanding.gro) {
        precondition(messages > 0 && messages <= 128 && bufferSize > 0)
        self.messages = messages
        self.bufferSize = bufferSize
        let memory = UnsafeMutableRawPointer.allocate(byteCount: messages * bufferSize, alignment: 64)
        self.memory = memory
        buffers = .allocate(capacity: messages)
        for i in 0..<messages { (buffers + i).initialize(to: memory + i * bufferSize) }
        vector = DatagramVector(capacity: messages)
    }

    /// A landing on the caller's buffers, each at least `bufferSize` bytes, which the
    /// caller keeps alive for as long as they are lent (until ``lend(_:to:)`` replaces one,
    /// or the landing is released).
    public init(lent: [UnsafeMutableRawPointer], bufferSize: Int) {
        precondition(!lent.isEmpty && lent.count <= 128 && bufferSize > 0)
        messages = lent.count
        self.bufferSize = bufferSize
        memory = nil
        buffers = .allocate(capacity: lent.count)
        buffers.initialize(from: lent, count: lent.count)
        vector = DatagramVector(capacity: lent.count)
    }

    deinit {
        memory?.deallocate()
        buffers.deallocate()
    }

    /// From the next receive on, message `i` lands in `buffer` (at least ``bufferSize``
    /// bytes, kept alive by the caller): the buffer it used is the caller's again, with
    /// the datagrams it holds, so they can be handed on without a copy. Read what you
    /// need of message `i` first: from now on ``segment(_:_:)`` points into `buffer`.
    @inline(__always)
    public func lend(_ buffer: UnsafeMutableRawPointer, to i: Int) {
        precondition(i >= 0 && i < messages)
        buffers[i] = buffer
    }

    /// One non-blocking `recvmmsg` of at most `limit` messages (default: all buffers);
    /// returns how many arrived (0 if none waited).
    public func receive(from socket: UDPSocket, limit: Int = .max) throws(SystemError) -> Int {
        let want = max(1, min(messages, limit))
        for i in 0..<want { vector.set(i, buffer: buffers[i], length: bufferSize) }
        count = 0
        do {
            count = try socket.receive(into: vector, count: want, nonBlocking: true)
        } catch  where error.wouldBlock {
            return 0
        }
        return count
    }

    /// How many datagrams message `i` holds (1 unless GRO coalesced several).
    @inline(__always)
    public func segments(_ i: Int) -> Int {
        let length = vector.length(i)
        let size = segmentSize(i)
        return size == 0 ? 1 : (length + size - 1) / size
    }

    /// The datagram size of message `i`'s segments (its whole length when not coalesced).
    @inline(__always)
    public func segmentSize(_ i: Int) -> Int {
        let gso = Int(vector.entries[i].gso_size)
        let length = vector.length(i)
        return gso == 0 || gso >= length ? length : gso
    }

    /// Segment `k` of message `i`: one datagram, writable in place.
    @inline(__always)
    public func segment(_ i: Int, _ k: Int) -> UnsafeMutableRawBufferPointer {
        let size = segmentSize(i)
        let length = vector.length(i)
        let start = k * size
        return UnsafeMutableRawBufferPointer(start: buffers[i] + start, count: min(size, length - start))
    }

    /// Who sent message `i`.
    @inline(__always)
    public func source(_ i: Int) -> SocketAddress { vector.address(i) }
}
