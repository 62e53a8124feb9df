#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex and condition variable at a stable address, for the pipeline's few
/// hand-off points (batches cross threads through these, never single packets).
/// `@unchecked Sendable`: the pthread objects are designed for concurrent use and are
/// never moved after `init`.
public final class MutexCondition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    @inline(__always) public func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) public func unlock() { pthread_mutex_unlock(mutex) }
    /// Waits on the condition; the mutex must be held.
    @inline(__always) public func wait() { pthread_cond_wait(condition, mutex) }
    /// Waits at most `milliseconds`; the mutex must be held.
    public func wait(milliseconds: Int) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var deadline = now
        deadline.tv_sec += milliseconds / 1000
        deadline.tv_nsec += (milliseconds % 1000) * 1_000_000
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        pthread_cond_timedwait(condition, mutex, &deadline)
    }
    @inline(__always) public func signal() { pthread_cond_signal(condition) }
    @inline(__always) public func broadcast() { pthread_cond_broadcast(condition) }

    @inline(__always) public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }
}
