import CyphonicPosix
import Dispatch
import Synchronization

/// Threads of their own for work that waits on the database (GCD's global queues run
/// about one task per core at a time, so blocking waits there would run one by one):
/// jobs run in the order given, at most `maxQueued` wait; ``stop()`` ends the threads
/// after the jobs already queued.
final class BlockingWorkers: Sendable {
    /// A FIFO as two stacks (taking from the front of one array would move every job
    /// behind it: quadratic when hundreds wait).
    private struct Jobs {
        var incoming: [@Sendable () -> Void] = []
        var outgoing: [@Sendable () -> Void] = []
        var running = true
        var count: Int { incoming.count + outgoing.count }

        mutating func take() -> (@Sendable () -> Void)? {
            if outgoing.isEmpty {
                outgoing = incoming.reversed()
                incoming.removeAll(keepingCapacity: true)
            }
            return outgoing.popLast()
        }
    }
    private let jobs = Mutex(Jobs())
    private let ready = DispatchSemaphore(value: 0)
    private let finished = DispatchGroup()
    private let count: Int
    let maxQueued: Int

    init(count: Int, maxQueued: Int, name: String) {
        self.count = count
        self.maxQueued = maxQueued
        for i in 0..<count {
            finished.enter()
            startThread(named: "\(name)-\(i)") { [self] in
                defer { finished.leave() }
                while true {
                    ready.wait()
                    let next = jobs.withLock { j -> (@Sendable () -> Void)?? in
                        if let job = j.take() { return .some(job) }
                        return j.running ? .some(nil) : .none
                    }
                    guard let job = next else { return }
                    job?()
                }
            }
        }
    }

    /// Queues `job`; false (nothing queued) when `maxQueued` jobs already wait.
    func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        let queued = jobs.withLock { j -> Bool in
            guard j.running, j.count < maxQueued else { return false }
            j.incoming.append(job)
            return true
        }
        if queued { ready.signal() }
        return queued
    }

    /// Ends the threads after the queued jobs and waits for them (at most `seconds`): no
    /// job is left running while the process exits.
    func stop(waiting seconds: Double = 35) {
        jobs.withLock { $0.running = false }
        for _ in 0..<count { ready.signal() }
        _ = finished.wait(timeout: .now() + seconds)
    }
}
