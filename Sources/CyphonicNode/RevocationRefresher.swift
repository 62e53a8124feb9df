import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicPKI
import Foundation
import Logging

/// Fetches the CA's revocation list from the AS at start and then every
/// `crlRefreshSeconds` (and sooner when the list in force is past its nextUpdate), on
/// its own thread (a fetch blocks for up to a few seconds and must never hold up the
/// control thread), and hands every newer, CA-signed list to the ``TunnelManager``,
/// which refuses listed certificates and ends their sessions. Failures are logged and
/// retried at the next interval; the list in force stays. `Sendable`.
public final class RevocationRefresher: Sendable {
    private let client: ASClient
    private let key: X25519PrivateKey
    private let manager: TunnelManager
    private let interval: Double
    private let logger: Logger
    private let state = MutexCondition()
    private let flags = Locked((stopped: false, running: false, lastSuccess: 0.0, failures: 0))

    public init(client: ASClient, key: X25519PrivateKey, manager: TunnelManager, intervalSeconds: Double, logger: Logger) {
        self.client = client
        self.key = key
        self.manager = manager
        interval = intervalSeconds
        self.logger = logger
    }

    /// Seconds since the last successful fetch (nil before the first).
    public var secondsSinceSuccess: Double? {
        let last = flags.withLock { $0.lastSuccess }
        return last == 0 ? nil : monotonicSeconds() - last
    }

    public func start() {
        flags.withLock { $0.running = true }
        let thread = Thread { [self] in
            while !flags.withLock({ $0.stopped }) {
                fetchOnce()
                state.withLock { if !flags.withLock({ $0.stopped }) { state.wait(milliseconds: Int(interval * 1000)) } }
            }
            flags.withLock { $0.running = false }
            state.withLock { state.broadcast() }
        }
        thread.name = "cyphonic-crl"
        thread.start()
    }

    /// One fetch; returns the list's number, or nil when it failed.
    @discardableResult
    public func fetchOnce() -> UInt64? {
        do {
            let crl = try client.revocationList(key: key)
            flags.withLock {
                $0.lastSuccess = monotonicSeconds()
                $0.failures = 0
            }
            manager.offerRevocations(crl)
            return crl.number
        } catch {
            let failures = flags.withLock { f -> Int in
                f.failures += 1
                return f.failures
            }
            // First failure and then every tenth: an unreachable AS is worth a line, not a flood.
            if failures == 1 || failures % 10 == 0 {
                logger.warning("node: cannot fetch the revocation list from the AS at \(client.server) (\(failures) times): \(error)")
            }
            return nil
        }
    }

    /// Stops the thread (waits for a fetch in progress to end).
    public func stop() {
        flags.withLock { $0.stopped = true }
        state.withLock {
            state.broadcast()
            while flags.withLock({ $0.running }) { state.wait(milliseconds: 200) }
        }
    }
}
