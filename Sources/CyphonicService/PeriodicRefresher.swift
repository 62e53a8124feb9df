import CyphonicCore
import CyphonicPosix
import Foundation
import Logging
import Synchronization

/// Fetches something at start and then every `interval` seconds on its own thread (a
/// fetch blocks for seconds and must never hold up a daemon's other threads), handing
/// each result to `apply`: the node's and the NMS's revocation lists from the AS.
/// Failures are logged (the first, then every tenth) and retried at the next interval;
/// what is in force stays. `Sendable`.
public final class PeriodicRefresher<Value: Sendable>: Sendable {
    private let fetch: @Sendable () throws -> Value
    private let apply: @Sendable (Value) -> Void
    private let interval: Double
    private let what: String
    private let logger: Logger
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let flags = Mutex((stopped: false, started: false, lastSuccess: 0.0, failures: 0))

    /// `what` names the thing in log lines ("the revocation list from the AS at …").
    public init(
        what: String, intervalSeconds: Double, logger: Logger, fetch: @escaping @Sendable () throws -> Value,
        apply: @escaping @Sendable (Value) -> Void
    ) {
        self.what = what
        interval = intervalSeconds
        self.logger = logger
        self.fetch = fetch
        self.apply = apply
    }

    /// Seconds since the last successful fetch (nil before the first).
    public var secondsSinceSuccess: Double? {
        let last = flags.withLock { $0.lastSuccess }
        return last == 0 ? nil : monotonicSeconds() - last
    }

    /// Starts the thread; `delayed`: the first fetch after one interval, not at once.
    public func start(delayed: Bool = false) {
        flags.withLock { $0.started = true }
        startThread(named: "cy-refresher") { [self] in
            if delayed { _ = wake.wait(timeout: .now() + interval) }
            while !flags.withLock({ $0.stopped }) {
                fetchOnce()
                _ = wake.wait(timeout: .now() + interval)
            }
            finished.signal()
        }
    }

    /// One fetch; true when it succeeded (and `apply` ran).
    @discardableResult
    public func fetchOnce() -> Bool {
        do {
            let value = try fetch()
            flags.withLock {
                $0.lastSuccess = monotonicSeconds()
                $0.failures = 0
            }
            apply(value)
            return true
        } catch {
            let failures = flags.withLock { f -> Int in
                f.failures += 1
                return f.failures
            }
            // First failure and then every tenth: an unreachable server is worth a line, not a flood.
            if failures == 1 || failures % 10 == 0 { logger.warning("cannot fetch \(what) (\(failures) times): \(error)") }
            return false
        }
    }

    /// Stops the thread (waits for a fetch in progress to end).
    public func stop() {
        let started = flags.withLock { f -> Bool in
            f.stopped = true
            return f.started
        }
        guard started else { return }
        wake.signal()
        finished.wait()
    }
}
