import CCyphonicLinux
import CyphonicCore

#if canImport(Glibc)
import Glibc
#endif

/// A socket address held by value (no allocation), comparable byte for byte.
public struct SocketAddress: Hashable, @unchecked Sendable {
    public var storage = sockaddr_storage()
    public var length: socklen_t = 0

    public init() {}

    public init(_ endpoint: Endpoint) { (storage, length) = endpoint.socketAddress }

    public var endpoint: Endpoint? { length == 0 ? nil : Endpoint(socketAddress: storage) }

    /// Compares the first `length` bytes in place (called per datagram by the GSO sender).
    @inline(__always)
    /// Hashes the bytes that `==` compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(length)
        withUnsafeBytes(of: storage) { hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: $0[0..<min(Int(length), $0.count)])) }
    }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool {
        guard a.length == b.length else { return false }
        return withUnsafeBytes(of: a.storage) { x in
            withUnsafeBytes(of: b.storage) { y in memcmp(x.baseAddress!, y.baseAddress!, Int(a.length)) == 0 }
        }
    }
}

/// The message vector of one `recvmmsg` call, pointing at buffers the caller owns (for
/// example a ``DatagramLanding``), so datagrams are received in place. Sending goes
/// through ``UDPSegmentSender``. Allocated once; owned by one thread at a time.
public final class DatagramVector {
    public let capacity: Int
    let entries: UnsafeMutablePointer<ccy_datagram>

    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= 128)
        self.capacity = capacity
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: ccy_datagram(), count: capacity)
    }

    /// Points entry `i` at `buffer` (receive: capacity; send: bytes to send).
    @inline(__always)
    public func set(_ i: Int, buffer: UnsafeMutableRawPointer, length: Int) {
        entries[i].buffer = buffer
        entries[i].length = length
        entries[i].gso_size = 0
    }

    @inline(__always) public func length(_ i: Int) -> Int { entries[i].length }

    @inline(__always)
    public func address(_ i: Int) -> SocketAddress {
        var a = SocketAddress()
        a.storage = entries[i].address
        a.length = entries[i].address_length
        return a
    }

    deinit { entries.deallocate() }
}

extension UDPSocket {
    /// `recvmmsg` into the first `count` entries of `vector`; returns how many arrived.
    public func receive(into vector: DatagramVector, count: Int, nonBlocking: Bool = false) throws(SystemError) -> Int {
        for i in 0..<count { vector.entries[i].address_length = socklen_t(MemoryLayout<sockaddr_storage>.size) }
        return Int(
            try syscall("recvmmsg") {
                ccy_recv_batch(fd, vector.entries, UInt32(count), nonBlocking ? Int32(MSG_DONTWAIT) : 0)
            })
    }

    /// `nonBlocking`: fail with `EAGAIN` instead of waiting when the send buffer is full
    /// (the control plane's answers to unverified sources must never wait).
    public func send(_ bytes: UnsafeRawBufferPointer, to address: SocketAddress, nonBlocking: Bool = false) throws(SystemError) {
        var a = address
        let flags = nonBlocking ? Int32(MSG_DONTWAIT) : 0
        try syscall("sendto") {
            withUnsafePointer(to: &a.storage) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, flags, $0, a.length) }
            }
        }
    }

    /// Switches the descriptor between blocking and non-blocking mode.
    public func setNonBlocking(_ on: Bool) throws(SystemError) {
        try syscall("fcntl(O_NONBLOCK)") { ccy_set_nonblocking(fd, on ? 1 : 0) }
    }
}

extension TunDevice {
    public func setNonBlocking(_ on: Bool) throws(SystemError) {
        try syscall("fcntl(O_NONBLOCK)") { ccy_set_nonblocking(fd, on ? 1 : 0) }
    }
}

/// Waits until one of `fds` is readable or `timeoutMilliseconds` pass; returns a bit
/// per descriptor (bit i set = fds[i] readable). Retries on EINTR.
public func waitReadable(_ fd0: Int32, _ fd1: Int32 = -1, timeoutMilliseconds: Int32) -> (Bool, Bool) {
    var fds = (pollfd(fd: fd0, events: Int16(POLLIN), revents: 0), pollfd(fd: fd1, events: Int16(POLLIN), revents: 0))
    let n: Int32 = fd1 >= 0 ? 2 : 1
    let r = withUnsafeMutablePointer(to: &fds) { p in
        p.withMemoryRebound(to: pollfd.self, capacity: 2) { poll($0, nfds_t(n), timeoutMilliseconds) }
    }
    guard r > 0 else { return (false, false) }
    return (fds.0.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0, fds.1.revents & Int16(POLLIN) != 0)
}
