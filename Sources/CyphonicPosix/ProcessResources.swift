import CCyphonicLinux
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What this process uses right now, for metrics and status: resident memory and OS
/// threads (from /proc/self/status), CPU time (getrusage), and glibc's malloc statistics
/// (mallinfo2): memory allocated and in use, against memory malloc holds (retains) from
/// the OS. Every figure is read fresh on each call; nothing is cached.
public struct ProcessResources: Sendable, Equatable, Codable {
    /// Resident set size (VmRSS), bytes.
    public var residentBytes: UInt64
    /// OS threads (Threads:).
    public var threads: Int
    /// User + system CPU seconds since the process started.
    public var cpuSeconds: Double
    /// Bytes allocated with malloc and not yet freed (what the program holds).
    public var mallocInUseBytes: UInt64
    /// Bytes malloc has from the OS (arenas + mmapped chunks): in use plus retained free.
    public var mallocHeldBytes: UInt64
    /// Of those, free bytes malloc keeps in its arenas instead of returning them.
    public var mallocFreeBytes: UInt64

    public static func current() -> ProcessResources {
        var rss: UInt64 = 0
        var threads = 0
        if let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) {
            for line in text.split(separator: "\n") {
                if line.hasPrefix("VmRSS:") {
                    rss = (UInt64(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
                } else if line.hasPrefix("Threads:") {
                    threads = Int(line.split(separator: "\t").last?.trimmingCharacters(in: .whitespaces) ?? "") ?? 0
                }
            }
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu =
            Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        let m = ccy_malloc_statistics()
        return ProcessResources(
            residentBytes: rss, threads: threads, cpuSeconds: cpu, mallocInUseBytes: m.in_use, mallocHeldBytes: m.arena + m.mmapped,
            mallocFreeBytes: m.free)
    }
}

/// Names the calling thread as `top -H` and /proc/PID/task/*/comm show it (first 15 bytes).
public func setCurrentThreadName(_ name: String) { ccy_set_thread_name(name) }
