#if canImport(Glibc)
import Glibc
#endif

/// Receive offload towards the TUN (GRO in user space): consecutive TCP segments of one
/// flow, in the order they are released, are written as one `virtio_net_hdr` super-packet
/// (gso_type TCPv4/TCPv6, checksum left partial) with one `writev`, so the kernel runs
/// its TCP receive path and wakes the application once per run instead of once per
/// 1420-byte packet. The inverse of ``TunOffload/segment(_:count:out:stride:offset:maxSegments:lengths:)``.
///
/// Guarantees: packets are written in the order added, and a run holds only segments the
/// kernel's own GRO would merge — same addresses, ports, IP fields, ACK number and TCP
/// options; consecutive sequence numbers and IPv4 ids; equal sizes (the last may be
/// shorter); no flags but ACK (PSH only on the last); at most 64 segments and 64 KiB.
/// Anything else (UDP, ICMP, SYN/FIN/RST, IP options, fragments) is written alone and
/// unchanged. Nothing is copied: the first packet's headers are rewritten in place and
/// the following payloads are gathered with iovecs, so the added buffers — with
/// ``TunOffload/headerSize`` writable bytes in front of each — must stay valid until
/// ``flush()``. Owned by one thread; allocates only at creation.
public final class TunCoalescer {
    public static let maxSegments = 64

    private let sink: (UnsafeMutablePointer<iovec>, Int32) -> Void
    private let iov: UnsafeMutablePointer<iovec>
    /// Writes made and packets they carried (for tests and statistics).
    public private(set) var writes = 0
    public private(set) var packets = 0

    // The pending run: its first packet (headers rewritten at flush), shape and progress.
    private var first: UnsafeMutableRawPointer? = nil
    private var count = 0
    private var total = 0
    private var ipHeader = 0
    private var headers = 0
    private var segmentSize = 0
    private var nextSeq: UInt32 = 0
    private var lastID: UInt16 = 0
    private var closed = false
    private var push = false

    /// `sink` performs the write (`writev` on the TUN descriptor in the pipeline).
    public init(sink: @escaping (UnsafeMutablePointer<iovec>, Int32) -> Void) {
        self.sink = sink
        iov = .allocate(capacity: Self.maxSegments)
        iov.initialize(repeating: iovec(), count: Self.maxSegments)
    }

    deinit { iov.deallocate() }

    /// A TCP segment that may join a run: its header sizes, payload, sequence, id, flags.
    private struct Segment {
        var ipHeader: Int
        var headers: Int
        var payload: Int
        var seq: UInt32
        var id: UInt16
        var flags: UInt8
    }

    /// Parses `p[0..<n]` as a plain TCP segment with data and only ACK (and maybe PSH) set.
    @inline(__always)
    private static func parse(_ p: UnsafeMutableRawPointer, _ n: Int) -> Segment? {
        guard n >= 40 else { return nil }
        let version = p.load(as: UInt8.self) >> 4
        let ipHeader: Int
        if version == 4 {
            guard p.load(as: UInt8.self) == 0x45, p.load(fromByteOffset: 9, as: UInt8.self) == 6,
                Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))) == n,
                UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self)) & 0x3fff == 0  // no fragment
            else { return nil }
            ipHeader = 20
        } else if version == 6 {
            guard n >= 60, p.load(fromByteOffset: 6, as: UInt8.self) == 6,
                Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self))) + 40 == n
            else { return nil }
            ipHeader = 40
        } else {
            return nil
        }
        let tcpHeader = Int(p.load(fromByteOffset: ipHeader + 12, as: UInt8.self) >> 4) * 4
        let flags = p.load(fromByteOffset: ipHeader + 13, as: UInt8.self)
        let headers = ipHeader + tcpHeader
        // ACK required; PSH allowed; FIN, SYN, RST, URG, ECE, CWR end coalescing.
        guard tcpHeader >= 20, headers < n, flags & ~0x08 == 0x10 else { return nil }
        return Segment(
            ipHeader: ipHeader, headers: headers, payload: n - headers,
            seq: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: ipHeader + 4, as: UInt32.self)),
            id: version == 4 ? UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) : 0,
            flags: flags)
    }

    /// Whether segment `s` at `p` continues the pending run.
    @inline(__always)
    private func continues(_ p: UnsafeMutableRawPointer, _ s: Segment) -> Bool {
        guard let f = first, !closed, count < Self.maxSegments, s.ipHeader == ipHeader, s.headers == headers,
            s.seq == nextSeq, s.payload <= segmentSize, total + s.payload <= 65_535
        else { return false }
        if ipHeader == 20 {
            // TOS, flags (DF), TTL, protocol, addresses equal; ids consecutive.
            guard s.id == lastID &+ 1, p.load(fromByteOffset: 1, as: UInt8.self) == f.load(fromByteOffset: 1, as: UInt8.self),
                memcmp(p + 6, f + 6, 4) == 0, memcmp(p + 12, f + 12, 8) == 0
            else { return false }
        } else {
            // Version, traffic class, flow label, next header, hop limit, addresses equal.
            guard memcmp(p, f, 4) == 0, memcmp(p + 6, f + 6, 34) == 0 else { return false }
        }
        // Ports, ACK number, data offset, and every option byte equal (timestamps included).
        let t = ipHeader
        return memcmp(p + t, f + t, 4) == 0 && memcmp(p + t + 8, f + t + 8, 5) == 0 && memcmp(p + t + 20, f + t + 20, headers - t - 20) == 0
    }

    /// Adds the IP packet `packet[0..<length]` (with ``TunOffload/headerSize`` writable
    /// bytes before it). Writes the pending run first when the packet cannot join it.
    @inline(__always)
    public func add(_ packet: UnsafeMutableRawPointer, length: Int) {
        guard let s = Self.parse(packet, length) else {
            flush()
            start(packet, length)
            closed = true
            flush()
            return
        }
        if first != nil && continues(packet, s) {
            iov[count] = iovec(iov_base: packet + s.headers, iov_len: s.payload)
            count += 1
            total += s.payload
            nextSeq = s.seq &+ UInt32(s.payload)
            lastID = s.id
            if s.payload < segmentSize || s.flags & 0x08 != 0 { closed = true }
            if s.flags & 0x08 != 0 { push = true }
            return
        }
        flush()
        start(packet, length)
        ipHeader = s.ipHeader
        headers = s.headers
        segmentSize = s.payload
        nextSeq = s.seq &+ UInt32(s.payload)
        lastID = s.id
        push = s.flags & 0x08 != 0
        closed = push
    }

    private func start(_ packet: UnsafeMutableRawPointer, _ length: Int) {
        first = packet
        count = 1
        total = length
        closed = false
        iov[0] = iovec(iov_base: packet - TunOffload.headerSize, iov_len: length + TunOffload.headerSize)
    }

    /// Writes the pending run, if any.
    public func flush() {
        guard let f = first else { return }
        let h = f - TunOffload.headerSize
        memset(h, 0, TunOffload.headerSize)
        if count > 1 {
            // The merged packet's headers: lengths, PSH of the last segment, IPv4 header
            // checksum; the TCP checksum becomes the pseudo-header sum (partial, completed
            // by the kernel or never needed: each segment was authenticated by its AEAD tag).
            let header = UnsafeMutableRawBufferPointer(start: f, count: headers)
            if ipHeader == 20 {
                header.storeBytes(of: UInt16(total).bigEndian, toByteOffset: 2, as: UInt16.self)
                TunOffload.setIPv4HeaderChecksum(header, headerLength: 20)
            } else {
                header.storeBytes(of: UInt16(total - 40).bigEndian, toByteOffset: 4, as: UInt16.self)
            }
            if push { header[ipHeader + 13] |= 0x08 }
            let sum = TunOffload.pseudoHeaderSum(UnsafeRawBufferPointer(header), v4: ipHeader == 20, tcpLength: total - ipHeader)
            header.storeBytes(of: TunOffload.fold(sum).bigEndian, toByteOffset: ipHeader + 16, as: UInt16.self)
            // virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (little endian).
            h.storeBytes(of: TunOffload.needsChecksum, as: UInt8.self)
            h.storeBytes(of: ipHeader == 20 ? TunOffload.gsoTCPv4 : TunOffload.gsoTCPv6, toByteOffset: 1, as: UInt8.self)
            h.storeBytes(of: UInt16(headers).littleEndian, toByteOffset: 2, as: UInt16.self)
            h.storeBytes(of: UInt16(segmentSize).littleEndian, toByteOffset: 4, as: UInt16.self)
            h.storeBytes(of: UInt16(ipHeader).littleEndian, toByteOffset: 6, as: UInt16.self)
            h.storeBytes(of: UInt16(16).littleEndian, toByteOffset: 8, as: UInt16.self)
        }
        sink(iov, Int32(count))
        writes += 1
        packets += count
        first = nil
        count = 0
    }
}
