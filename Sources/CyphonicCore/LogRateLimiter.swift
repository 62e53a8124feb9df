import Synchronization

/// Lets at most `perSecond` log lines of one kind through per second and counts the
/// rest, so a flood (refused logins or registrations, tunnels asked for again) cannot flood the log. The count of suppressed
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

    /// Like ``admit(now:)``; a line let through after others were held back first calls
    /// `summary` with their count (for a "N lines not logged" line).
    public func admit(now: Int64, summary: (Int) -> Void) -> Bool {
        let a = admit(now: now)
        if a.allowed, a.suppressed > 0 { summary(a.suppressed) }
        return a.allowed
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
