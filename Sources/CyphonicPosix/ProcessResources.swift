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
    /// Of those, anonymous pages (RssAnon): the heap, stacks and buffers the process
    /// made itself. The rest are pages of mapped files: the program's own text and the
    /// shared libraries, clean and shared with the page cache. (Optional: absent in the
    /// status of a daemon that predates it.)
    public var residentAnonymousBytes: UInt64?
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
        let memory = memoryAndThreads()
        let m = ccy_malloc_statistics()
        return ProcessResources(
            residentBytes: memory?.residentBytes ?? 0, residentAnonymousBytes: memory?.anonymousBytes, threads: memory?.threads ?? 0,
            cpuSeconds: cpuSeconds(), mallocInUseBytes: m.in_use,
            mallocHeldBytes: m.arena + m.mmapped, mallocFreeBytes: m.free)
    }

    /// Resident bytes (VmRSS), the anonymous part of them (RssAnon) and OS threads of
    /// process `pid` (this one by default), from /proc/PID/status; nil when it cannot be
    /// read (no such process).
    public static func memoryAndThreads(of pid: Int32? = nil) -> (residentBytes: UInt64, anonymousBytes: UInt64, threads: Int)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid.map(String.init) ?? "self")/status", encoding: .utf8) else {
            return nil
        }
        var rss: UInt64 = 0
        var anonymous: UInt64 = 0
        var threads = 0
        for line in text.split(separator: "\n") {
            let value = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.map(String.init) ?? ""
            if line.hasPrefix("VmRSS:") { rss = (UInt64(value) ?? 0) * 1024 }
            if line.hasPrefix("RssAnon:") { anonymous = (UInt64(value) ?? 0) * 1024 }
            if line.hasPrefix("Threads:") { threads = Int(value) ?? 0 }
        }
        return (rss, anonymous, threads)
    }

    /// User + system CPU seconds this process has used (getrusage).
    public static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}
