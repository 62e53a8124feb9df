import CyphonicCore
import CyphonicDataPlane
import CyphonicPosix
import Foundation

/// What `cyphonic-node status` prints (JSON over the control socket).
public struct NodeStatus: Codable, Sendable {
    public struct PeerStatus: Codable, Sendable {
        public var fqdn: String
        public var addresses: [String]
        public var endpoint: String?
        public var route: String
        public var handshakeAgeSeconds: Double?
        public var txPackets: UInt64
        public var txBytes: UInt64
        public var rxPackets: UInt64
        public var rxBytes: UInt64
        public var reorderWaits: UInt64
        public var handshakes: UInt64
    }
    public var fqdn: String
    public var addresses: [String]
    public var pipeline: String
    public var threads: Int
    public var osThreads: Int
    public var peers: [PeerStatus]
    public var drops: [String: UInt64]
    public var reorderWaits: UInt64
    public var handshakesCompleted: UInt64
    public var handshakesRefused: UInt64
    public var badControlDatagrams: UInt64
    /// UDP I/O of the data plane: how many datagrams each system call carried (GSO on
    /// send, GRO on receive; ratios well above 1 mean the offloads work).
    public var udp: UDPStatus = UDPStatus()
    /// TUN writes of the data plane and the packets they carried (coalesced TCP runs).
    public var tun: TunStatus = TunStatus()
    /// Packets that overtook their peer's queued bulk (multi pipeline's priority lane).
    public var priorityLane: PriorityLaneStatus = PriorityLaneStatus()
    /// The defences at work (docs/operations.md, "Security figures").
    public var security: SecurityStatus = SecurityStatus()

    public struct SecurityStatus: Codable, Sendable {
        /// Cookie replies sent to unverified sources (a flood shows here, not in CPU).
        public var cookiesSent: UInt64 = 0
        /// Initiations dropped by the per-source or total handshake limits.
        public var handshakesThrottled: UInt64 = 0
        /// Whether every source must show a cookie right now.
        public var underLoad = false
        /// Handshakes refused because another peer with a session owns the virtual IPs.
        public var addressConflicts: UInt64 = 0
        /// Peers whose sessions ended on revocation or expiry.
        public var peersRevoked: UInt64 = 0
        /// Handshake message 3 resent because the responder had not confirmed it.
        public var message3Retransmits: UInt64 = 0
        /// The revocation list in force (its number), and seconds since the last fetch.
        public var revocationList: UInt64?
        public var revocationListAgeSeconds: Double?
    }

    public struct PriorityLaneStatus: Codable, Sendable {
        public var sent: UInt64 = 0
        public var delivered: UInt64 = 0
    }

    public struct TunStatus: Codable, Sendable {
        public var offload = false
        public var writes: UInt64 = 0
        public var packetsWritten: UInt64 = 0
    }

    public struct UDPStatus: Codable, Sendable {
        /// GSO configured, and how often the kernel refused a GSO send (path MTU too
        /// small, no checksum offload): those runs went out as plain datagrams.
        public var gso = false
        public var gsoRefused: UInt64 = 0
        public var gro = false
        public var sendCalls: UInt64 = 0
        public var datagramsSent: UInt64 = 0
        public var messagesReceived: UInt64 = 0
        public var datagramsReceived: UInt64 = 0
    }
}

/// Serves ``NodeStatus`` as JSON to every connection on a Unix socket, on its own thread.
final class StatusServer: @unchecked Sendable {
    // `@unchecked Sendable`: fd and path are immutable; the thread only reads `snapshot`.
    let path: String
    let fd: Int32
    private let snapshot: @Sendable () -> NodeStatus
    private let done = DispatchSemaphore(value: 0)

    init(path: String, snapshot: @escaping @Sendable () -> NodeStatus) throws {
        self.path = path
        self.snapshot = snapshot
        // A socket file that answers belongs to a running daemon: never take it over.
        // One that refuses is left from a daemon that died: replace it.
        guard var addr = Self.unixAddress(path) else { throw SystemError("bind(\(path))", errno: ENAMETOOLONG) }
        if access(path, F_OK) == 0 {
            if Self.accepts(path: path) {
                throw InUseError(
                    what: "control socket \(path)", owner: PortOwner.unix(path: path),
                    hint: "another cyphonic-node is running; stop it, or give this one another `control` path")
            }
            unlink(path)
        }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket(AF_UNIX)", errno: errno) }
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0, listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw SystemError("bind(\(path))", errno: e)
        }
        chmod(path, 0o600)
        let thread = Thread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { break }
                var data = (try? JSONEncoder().encode(snapshot())) ?? Data()
                data.append(0x0a)
                // MSG_NOSIGNAL: a client that hangs up early must not kill the daemon (SIGPIPE).
                data.withUnsafeBytes { _ = send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(client)
            }
            done.signal()
        }
        thread.name = "cyphonic-status"
        thread.start()
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        done.wait()
        unlink(path)
    }

    /// The socket address of `path`; nil when the path does not fit `sun_path`.
    static func unixAddress(_ path: String) -> sockaddr_un? {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes + [0]) }
        return addr
    }

    /// A stream socket connected to the Unix socket at `path`, or nil with `errno` set.
    static func connectUnix(path: String) -> Int32? {
        guard var addr = unixAddress(path) else {
            errno = ENAMETOOLONG
            return nil
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else {
            let e = errno
            close(fd)
            errno = e
            return nil
        }
        return fd
    }

    /// Whether a process listens on the Unix socket at `path` (a connect succeeds): any
    /// daemon, of whatever version, whose status we need not understand.
    static func accepts(path: String) -> Bool {
        guard let fd = connectUnix(path: path) else { return false }
        close(fd)
        return true
    }

    /// Reads the status from a running daemon's socket.
    static func query(path: String) throws -> NodeStatus {
        guard let fd = connectUnix(path: path) else { throw SystemError("connect(\(path))", errno: errno) }
        defer { close(fd) }
        var out = Data()
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return try JSONDecoder().decode(NodeStatus.self, from: out)
    }
}

/// OS threads of this process (from /proc), to show that it does not grow with peers.
func osThreadCount() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("Threads:") {
        return Int(line.split(separator: "\t").last?.trimmingCharacters(in: .whitespaces) ?? "") ?? 0
    }
    return 0
}
