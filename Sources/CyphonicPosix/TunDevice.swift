import CCyphonicLinux

#if canImport(Glibc)
import Glibc
#endif

/// A Linux TUN interface (layer 3, no packet information header). With `vnetHeader`
/// each packet is preceded by a 10-byte `virtio_net_hdr` carrying TSO/checksum
/// metadata, which is how TUN offload is turned on. The interface disappears when the
/// descriptor is closed. Reads and writes block: call them from a dedicated thread.
public final class TunDevice: @unchecked Sendable {
    // `@unchecked Sendable`: fd and name are immutable; the kernel serialises I/O.
    public let fd: Int32
    public let name: String
    public let vnetHeader: Bool
    public static let vnetHeaderSize = 10
    private var closed = false

    /// Creates (or attaches to) interface `name`; needs CAP_NET_ADMIN.
    public init(name: String, vnetHeader: Bool = false) throws(SystemError) {
        guard name.utf8.count < 16 else { throw SystemError("TUNSETIFF(\(name))", errno: ENAMETOOLONG) }
        var out = [CChar](repeating: 0, count: 16)
        let fd = ccy_tun_open(name, vnetHeader ? 1 : 0, &out)
        guard fd >= 0 else {
            let e = Glibc.errno
            throw SystemError(
                e == EPERM || e == EACCES
                    ? "creating the TUN interface \(name) needs root or CAP_NET_ADMIN (and /dev/net/tun); TUNSETIFF" : "TUNSETIFF(\(name))",
                errno: e)
        }
        self.fd = fd
        self.vnetHeader = vnetHeader
        self.name = String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if vnetHeader {
            guard ccy_tun_set_vnet_hdr_size(fd, Int32(Self.vnetHeaderSize)) == 0 else {
                let e = Glibc.errno
                Glibc.close(fd)
                throw SystemError("TUNSETVNETHDRSZ", errno: e)
            }
        }
    }

    /// Wraps a descriptor that is already open (closed with this object), e.g. a TUN
    /// passed in by a supervisor, or a stand-in for benchmarks and tests.
    public init(adopting fd: Int32, name: String, vnetHeader: Bool = false) {
        self.fd = fd
        self.name = name
        self.vnetHeader = vnetHeader
    }

    /// Enables TCP segmentation offload (and checksum offload) so the kernel can hand
    /// over up-to-64 KiB TCP segments; needs `vnetHeader`.
    public func enableOffload(tso: Bool = true, uso: Bool = false) throws(SystemError) {
        var flags = UInt32(CCY_TUN_F_CSUM)
        if tso { flags |= UInt32(CCY_TUN_F_TSO4 | CCY_TUN_F_TSO6) }
        if uso { flags |= UInt32(CCY_TUN_F_USO4 | CCY_TUN_F_USO6) }
        try syscall("TUNSETOFFLOAD") { ccy_tun_set_offload(fd, flags) }
    }

    /// Reads one packet (with its vnet header when enabled); returns its length.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try syscall("read(\(name))") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Waits up to `timeoutMilliseconds` for a packet; returns false on timeout.
    public func waitReadable(timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return try syscall("poll(\(name))") { poll(&p, 1, timeoutMilliseconds) } > 0
    }

    /// Writes one packet.
    public func write(_ packet: UnsafeRawBufferPointer) throws(SystemError) {
        try syscall("write(\(name))") { Glibc.write(fd, packet.baseAddress, packet.count) }
    }

    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    deinit { close() }
}
