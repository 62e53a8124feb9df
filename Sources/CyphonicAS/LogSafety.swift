import Synchronization

/// Makes attacker-supplied text (login names) safe to put in a log line: every byte
/// outside printable ASCII `!`…`~`, and the backslash and double quote, is written as
/// `\xNN`, so a value can neither break a line, inject terminal escapes, nor look like
/// another field; the input is cut to `limit` bytes (the cut is marked with `…+N`).
public enum LogText {
    public static func escaped(_ text: String, limit: Int = 64) -> String {
        let bytes = Array(text.utf8)
        var out = ""
        out.reserveCapacity(min(bytes.count, limit) + 8)
        for b in bytes.prefix(max(0, limit)) {
            if b > 0x20, b < 0x7f, b != UInt8(ascii: "\\"), b != UInt8(ascii: "\"") {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out += "\\x" + String(b, radix: 16, uppercase: false).leftPadded(to: 2)
            }
        }
        if bytes.count > limit { out += "…+\(bytes.count - limit)" }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// Lets at most `perSecond` log lines of one kind through per second and counts the
/// rest, so a flood of refused logins cannot flood the log. The count of suppressed
/// lines is handed back with the next line let through, or by ``takeSuppressed(now:)``
/// (housekeeping) once the second has passed. `Sendable`.
public final class LogRateLimiter: Sendable {
    public let perSecond: Int
    private let state = Mutex<(second: Int64, count: Int, suppressed: Int)>((Int64.min, 0, 0))

    public init(perSecond: Int = 10) { self.perSecond = max(1, perSecond) }

    /// Whether to log a line at `now`; `suppressed` is how many lines were held back
    /// since the last one let through (report it with this line).
    public func admit(now: Int64) -> (allowed: Bool, suppressed: Int) {
        state.withLock { s in
            if now != s.second {
                s.second = now
                s.count = 0
            }
            guard s.count < perSecond else {
                s.suppressed += 1
                return (false, 0)
            }
            s.count += 1
            defer { s.suppressed = 0 }
            return (true, s.suppressed)
        }
    }

    /// The lines held back in seconds before `now`, reset to zero; nil if none.
    public func takeSuppressed(now: Int64) -> Int? {
        state.withLock { s in
            guard s.suppressed > 0, now != s.second else { return nil }
            defer { s.suppressed = 0 }
            return s.suppressed
        }
    }
}
