import CyphonicCore
import CyphonicPosix
import Foundation

/// A request/answer Unix stream socket for a daemon's local tools (`cyphonic-node
/// status`, `nms-server status`): the client sends one line (a command, at most 1 KiB,
/// within a second; nothing counts as "status"), the daemon answers and closes. Served
/// on one thread, connection by connection (each bounded by the timeouts). The socket
/// file is mode 0600; a live socket at `path` is never taken over. `@unchecked
/// Sendable`: `fd` and `path` are immutable; the thread only calls `handle`.
public final class ControlSocketServer: @unchecked Sendable {
    public let path: String
    let fd: Int32
    private let done = DispatchSemaphore(value: 0)

    /// Binds `path`; `handle` turns a request line into the answer. `what` names the
    /// daemon in the error when another one holds the socket.
    public init(path: String, what: String, handle: @escaping @Sendable (String) -> [UInt8]) throws {
        self.path = path
        guard var addr = Self.unixAddress(path) else { throw SystemError("bind(\(path))", errno: ENAMETOOLONG) }
        if access(path, F_OK) == 0 {
            // Only a socket is ever replaced: a regular file at the path is the operator's.
            var st = stat()
            guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK else {
                throw InUseError(what: "control path \(path)", owner: nil, hint: "it exists and is not a socket; remove it or choose another path")
            }
            if Self.accepts(path: path) {
                throw InUseError(
                    what: "control socket \(path)", owner: PortOwner.unix(path: path),
                    hint: "another \(what) is running; stop it, or give this one another control path")
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
        startThread(named: "cy-control-sock") { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { break }
                Self.setTimeout(client, seconds: 1)
                let request = Self.readLine(client)
                let answer = handle(request)
                // MSG_NOSIGNAL: a client that hangs up early must not kill the daemon (SIGPIPE).
                answer.withUnsafeBytes { _ = send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(client)
            }
            done.signal()
        }
    }

    public func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        done.wait()
        unlink(path)
    }

    /// Sends `line` to the daemon at `path` and returns its whole answer.
    public static func request(path: String, _ line: String, timeoutSeconds: Int = 10) throws -> [UInt8] {
        guard let fd = connectUnix(path: path) else { throw SystemError("connect(\(path))", errno: errno) }
        defer { close(fd) }
        setTimeout(fd, seconds: timeoutSeconds)
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    /// Whether a process listens on the Unix socket at `path` (a connect succeeds).
    public static func accepts(path: String) -> Bool {
        guard let fd = connectUnix(path: path) else { return false }
        close(fd)
        return true
    }

    static func readLine(_ fd: Int32) -> String {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < 1024, read(fd, &byte, 1) == 1, byte != 0x0a { line.append(byte) }
        return String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    static func setTimeout(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
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
}

/// A port or socket another process holds; names it and, where visible, the process.
public struct InUseError: Error, CustomStringConvertible {
    public let what: String
    public let owner: String?
    public let hint: String

    public init(what: String, owner: String?, hint: String) {
        self.what = what
        self.owner = owner
        self.hint = hint
    }

    public var description: String { "\(what) is in use\(owner.map { " by \($0)" } ?? ""): \(hint)" }
}
