#if canImport(Glibc)
import Glibc
#endif

/// A value that is only ever read or written under its own mutex, so the box can be
/// shared between threads even when the value is not `Sendable` (SQLite connections,
/// Noise sessions). `@unchecked Sendable`: every access goes through ``withLock(_:)``,
/// and callers must not let references to the value escape the closure to another thread.
public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    /// Allocated, so pthread gets a stable address (never `&` of a stored property,
    /// which Swift may hand over as a temporary copy).
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init(_ value: Value) {
        self.value = value
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
}
