import CyphonicCrypto
import CyphonicPosix
import CyphonicSignaling
import Foundation
import Synchronization

/// Signs route authorizations on its own thread, as many at once as are waiting (up to
/// ``PathAuthorization/maxBatch``) under one Ed25519 signature over their Merkle root:
/// idle, each is signed alone at once; under load the signature's cost is shared, so the
/// NMS answers far more directions than the ~22 000 signatures a second a core makes.
/// Each job's completion runs on the signer thread, in submission order. `Sendable`.
final class BatchSigner: Sendable {
    struct Job: Sendable {
        let authorization: PathAuthorization
        let done: @Sendable (Result<PathAuthorization, any Error>) -> Void
    }

    private let key: Ed25519PrivateKey
    private let metrics: NMSMetrics
    private let queue = Mutex<(jobs: [Job], stopped: Bool, started: Bool)>(([], false, false))
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    init(key: Ed25519PrivateKey, metrics: NMSMetrics) {
        self.key = key
        self.metrics = metrics
    }

    func start() {
        queue.withLock { $0.started = true }
        startThread(named: "nms-signer") { [self] in
            while true {
                wake.wait()
                let (jobs, stopped) = queue.withLock { q -> ([Job], Bool) in
                    // Stopping: every job still queued is answered (with an error).
                    let take = q.stopped ? q.jobs : Array(q.jobs.prefix(PathAuthorization.maxBatch))
                    q.jobs.removeFirst(take.count)
                    return (take, q.stopped)
                }
                if stopped {
                    for job in jobs { job.done(.failure(CancellationError())) }
                    break
                }
                guard !jobs.isEmpty else { continue }
                let result = Result { try PathAuthorization.signBatch(jobs.map(\.authorization), with: key) }
                metrics.signatures.increment()
                metrics.authorizationsSigned.increment(by: Int64(jobs.count))
                for (i, job) in jobs.enumerated() { job.done(result.map { $0[i] }) }
            }
            finished.signal()
        }
    }

    /// Queues `authorization`; `done` gets it signed (or the error).
    func submit(_ authorization: PathAuthorization, _ done: @escaping @Sendable (Result<PathAuthorization, any Error>) -> Void) {
        let accepted = queue.withLock { q -> Bool in
            guard !q.stopped else { return false }
            q.jobs.append(Job(authorization: authorization, done: done))
            return true
        }
        if accepted { wake.signal() } else { done(.failure(CancellationError())) }
    }

    /// Stops the thread (once; later calls return at once).
    func stop() {
        let first = queue.withLock { q -> Bool in
            defer { q.stopped = true }
            return !q.stopped && q.started
        }
        guard first else { return }
        wake.signal()
        finished.wait()
    }
}
