import Foundation

/// Who holds a local UDP port or a Unix socket path, for error messages that name the
/// process ("port 30000 is in use by pid 4242 (cyphonic-node)"). Reads /proc/net/udp,
/// /proc/net/udp6 and /proc/net/unix for the socket inode and /proc/PID/fd for its owner.
/// Best effort: nil when the owner is not visible (another namespace, no permission).
public enum PortOwner {
    /// The owner of UDP `port` in this network namespace, as "pid N (name)".
    public static func udp(port: UInt16) -> String? {
        var inodes = Set<String>()
        for table in ["/proc/net/udp", "/proc/net/udp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count > 9, let colon = f[1].lastIndex(of: ":"),
                    UInt16(f[1][f[1].index(after: colon)...], radix: 16) == port
                else { continue }
                inodes.insert(String(f[9]))
            }
        }
        return owner(ofInodes: inodes)
    }

    /// The owner of the Unix socket bound at `path`.
    public static func unix(path: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8) else { return nil }
        var inodes = Set<String>()
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 8, f[7] == path { inodes.insert(String(f[6])) }
        }
        return owner(ofInodes: inodes)
    }

    private static func owner(ofInodes inodes: Set<String>) -> String? {
        guard !inodes.isEmpty, let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for pid in pids where pid.allSatisfy(\.isNumber) {
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            for fd in fds {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                    target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast()))
                else { continue }
                let name =
                    (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                return "pid \(pid) (\(name))"
            }
        }
        return nil
    }
}
