import CCyphonicLinux
import CyphonicCore

#if canImport(Glibc)
import Glibc
#endif

/// A UDP socket: the node's single port for signaling and data (DESIGN §2), or a
/// service's listening socket. Batched I/O through `recvmmsg`/`sendmmsg`, with UDP GSO
/// and GRO where the kernel offers them. Blocking calls run on dedicated threads,
/// never on Swift's cooperative pool. Closing is explicit (``close()``) or in `deinit`.
public final class UDPSocket: @unchecked Sendable {
    // `@unchecked Sendable`: the descriptor is an immutable Int32; the kernel serialises
    // concurrent calls on it, and close() is guarded by an atomic-free once flag that
    // only the owner calls.
    public let fd: Int32
    public let family: Int32
    private var closed = false

    /// Opens a socket bound to `endpoint`. An IPv6 wildcard ("::") endpoint with
    /// `dualStack` also receives IPv4 (as mapped addresses, reported as IPv4).
    /// Binding is exclusive by default: a second daemon on the same port fails with
    /// `EADDRINUSE` (see ``PortOwner``) instead of silently sharing its traffic.
    public init(bind endpoint: Endpoint, dualStack: Bool = false, reuseAddress: Bool = false) throws(SystemError) {
        let family = endpoint.address.isIPv4 ? AF_INET : AF_INET6
        let fd = try syscall("socket") { socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        self.family = family
        self.fd = fd
        do {
            var one: Int32 = 1
            if reuseAddress {
                try syscall("setsockopt(SO_REUSEADDR)") {
                    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                }
            }
            if family == AF_INET6 {
                var only: Int32 = dualStack ? 0 : 1
                try syscall("setsockopt(IPV6_V6ONLY)") {
                    setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &only, socklen_t(MemoryLayout<Int32>.size))
                }
            }
            var (storage, length) = endpoint.socketAddress
            try syscall("bind(\(endpoint))") {
                withUnsafePointer(to: &storage) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
                }
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// The bound address (the kernel's choice of port when bound to port 0).
    public func localEndpoint() throws(SystemError) -> Endpoint {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try syscall("getsockname") {
            withUnsafeMutablePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
        }
        guard let e = Endpoint(socketAddress: storage) else { throw SystemError("getsockname", errno: EAFNOSUPPORT) }
        return e
    }

    /// Sets a receive timeout so blocking receives wake up periodically (for shutdown).
    public func setReceiveTimeout(milliseconds: Int) throws(SystemError) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        try syscall("setsockopt(SO_RCVTIMEO)") {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    /// Sets SO_RCVBUF / SO_SNDBUF (the kernel may double or cap the value).
    public func setBufferSizes(receive: Int, send: Int) throws(SystemError) {
        var r = Int32(receive)
        var s = Int32(send)
        try syscall("setsockopt(SO_RCVBUF)") { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &r, 4) }
        try syscall("setsockopt(SO_SNDBUF)") { setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &s, 4) }
    }

    /// Sets SO_RCVBUF; as root SO_RCVBUFFORCE, so `net.core.rmem_max` does not cap it.
    public func setReceiveBufferSize(_ bytes: Int) throws(SystemError) {
        var n = Int32(clamping: bytes)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &n, 4) == 0 { return }
        try syscall("setsockopt(SO_RCVBUF)") { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, 4) }
    }

    /// Asks the kernel to coalesce received datagrams (UDP GRO); false if unsupported.
    @discardableResult
    public func enableGRO() -> Bool { ccy_udp_enable_gro(fd, 1) == 0 }

    /// Sends one datagram.
    public func send(_ bytes: UnsafeRawBufferPointer, to endpoint: Endpoint) throws(SystemError) {
        var (storage, length) = endpoint.socketAddress
        try syscall("sendto(\(endpoint))") {
            withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, length) }
            }
        }
    }

    public func send(_ bytes: [UInt8], to endpoint: Endpoint) throws(SystemError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try send(raw, to: endpoint) } }.get()
    }

    /// Receives one datagram into `buffer`; returns its length and sender.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> (Int, Endpoint) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = try syscall("recvfrom") {
            withUnsafeMutablePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, buffer.baseAddress, buffer.count, 0, $0, &length) }
            }
        }
        guard let from = Endpoint(socketAddress: storage) else { throw SystemError("recvfrom", errno: EAFNOSUPPORT) }
        return (n, from)
    }

    /// Fills `batch` with up to `batch.capacity` datagrams in one `recvmmsg`; blocks
    /// for the first unless `nonBlocking`. Returns how many arrived.
    @discardableResult
    public func receiveBatch(_ batch: DatagramBatch, nonBlocking: Bool = false) throws(SystemError) -> Int {
        batch.reset()
        let n = try syscall("recvmmsg") {
            ccy_recv_batch(fd, batch.entries, UInt32(batch.capacity), nonBlocking ? Int32(MSG_DONTWAIT) : 0)
        }
        batch.count = Int(n)
        return Int(n)
    }

    /// Sends `batch[0..<batch.count]` with `sendmmsg`, looping until all are sent.
    public func sendBatch(_ batch: DatagramBatch) throws(SystemError) {
        var sent = 0
        while sent < batch.count {
            let n = try syscall("sendmmsg") { ccy_send_batch(fd, batch.entries + sent, UInt32(batch.count - sent), 0) }
            sent += Int(n)
        }
    }

    /// Closes the descriptor; later calls fail with EBADF.
    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    deinit { close() }
}
