import CCyphonicLinux
import CyphonicCore

#if canImport(Glibc)
import Glibc
#endif

/// Sends datagrams with UDP generic segmentation offload: consecutive datagrams to the
/// same address with the same length (the last of a run may be shorter) are handed to
/// the kernel as one `sendmsg` with `UDP_SEGMENT`, so a run of up to 64 datagrams costs
/// one pass through the UDP/IP stack instead of one each — on this machine the per-packet
/// stack, not the crypto, bounds throughput (docs/platform.md: ~1.39 M vs
/// ~0.14 M datagrams/s).
///
/// Guarantees: datagrams leave in the order they were appended, each exactly as given
/// (the receiver sees the same datagram boundaries with or without GSO); nothing is
/// copied until the kernel does; the buffers must stay valid until ``flush()``. When the
/// kernel refuses GSO, the run is resent as plain datagrams with `sendmmsg` (which the
/// kernel may fragment), and the sender remembers: after `EMSGSIZE` (a segment larger
/// than the path MTU allows) runs of that segment size or larger go out plain; after
/// `EIO`/`EINVAL`/`EOPNOTSUPP` (the route's device cannot segment or checksum) GSO is
/// off for good. Owned by one thread; allocates only at creation.
public final class UDPSegmentSender {
    /// Datagrams per GSO send (the kernel's UDP_MAX_SEGMENTS is 64 or more).
    public static let maxSegments = 64
    /// Payload bytes per GSO send (one IP packet: 65,535 minus IP and UDP headers).
    public static let maxBytes = 65_000

    public let socket: UDPSocket
    /// Whether runs go out as GSO sends (false after the kernel refused one, or if disabled).
    public private(set) var segmentation: Bool
    /// Send system calls made and datagrams sent (for tests and statistics).
    public private(set) var calls = 0
    public private(set) var datagrams = 0
    /// Times the kernel refused a GSO send (each lowered ``segmentLimit`` or ended GSO).
    public private(set) var refusals = 0
    /// Largest segment size still sent with GSO (lowered after `EMSGSIZE`).
    public private(set) var segmentLimit = Int.max

    private let iov: UnsafeMutablePointer<iovec>
    private var count = 0
    private var segmentSize = 0
    private var bytes = 0
    private var closed = false
    private var address = SocketAddress()
    /// An in-process sink instead of the kernel, for benchmarks of the code in front of
    /// it (`cyphonic-bench pipeline`): each run is handed over as it would be sent (the
    /// datagrams, their count, the destination), in the same order. Nil in the daemons.
    public var divert: ((UnsafePointer<iovec>, Int, SocketAddress) -> Void)?

    public init(socket: UDPSocket, segmentation: Bool = true) {
        self.socket = socket
        self.segmentation = segmentation
        iov = .allocate(capacity: Self.maxSegments)
        iov.initialize(repeating: iovec(), count: Self.maxSegments)
    }

    deinit { iov.deallocate() }

    /// Queues one datagram; sends the pending run first when this one cannot join it.
    /// A failed send of the pending run is thrown (its datagrams are lost, counted by the caller).
    @inline(__always)
    public func append(_ buffer: UnsafeRawPointer, length: Int, to destination: SocketAddress) throws(SystemError) {
        if count > 0 {
            let joins =
                count < Self.maxSegments && destination == address
                && (!segmentation || (!closed && length <= segmentSize && bytes + length <= Self.maxBytes))
            if !joins { try flush() }
        }
        if count == 0 {
            address = destination
            segmentSize = length
            bytes = 0
            closed = false
        }
        iov[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer), iov_len: length)
        count += 1
        bytes += length
        // A shorter datagram ends a GSO run (only the last segment may be short).
        if length < segmentSize { closed = true }
    }

    /// Sends whatever is pending.
    public func flush() throws(SystemError) {
        guard count > 0 else { return }
        let n = count
        count = 0
        var a = address
        if let divert {
            divert(iov, n, a)
            calls += 1
            datagrams += n
            return
        }
        if segmentation && n > 1 && segmentSize <= segmentLimit {
            let r = withUnsafePointer(to: &a.storage) { ccy_send_segments(socket.fd, $0, a.length, iov, UInt32(n), UInt16(segmentSize)) }
            if r == 0 {
                calls += 1
                datagrams += n
                return
            }
            let error = errno
            switch error {
            case EMSGSIZE:
                segmentLimit = segmentSize - 1  // the path MTU is smaller: this size goes out plain (fragmented)
            case EIO, EINVAL, EOPNOTSUPP, ENOPROTOOPT:
                segmentation = false  // the kernel or the route cannot segment: plain datagrams from now on
            default:
                throw SystemError("sendmsg(UDP_SEGMENT)", errno: error)
            }
            refusals += 1
        }
        let r = withUnsafePointer(to: &a.storage) { ccy_send_segments(socket.fd, $0, a.length, iov, UInt32(n), 0) }
        guard r == 0 else { throw SystemError("sendmmsg", errno: errno) }
        calls += 1
        datagrams += n
    }
}
