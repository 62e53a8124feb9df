#if canImport(Glibc)
import Glibc
#endif

/// A bounded FIFO of objects shared by several producers and consumers (the crypto
/// work queue). Preallocated ring: pushing and popping allocate nothing. `pop` blocks
/// until an item arrives or the queue is closed (then it returns nil).
///
/// For the pipeline whose workers also read the TUN in turn, a consumer can instead
/// wait for an item *or* a readable descriptor (``waitForItem(orReadable:timeoutMilliseconds:)``:
/// the queue wakes it through a pipe), and a consumer asleep in
/// ``pop(waitMilliseconds:)`` can be woken without an item (``nudge()``) to take the
/// TUN turn another worker just gave back. A push wakes a consumer on the condition if
/// one sleeps there, else the descriptor waiter; every consumer checks the queue before
/// it sleeps and after it wakes, so an item never waits for a sleeper while another is
/// awake. If the pipe cannot be made, the descriptor waiter looks every millisecond.
public final class WorkQueue<Item: AnyObject>: @unchecked Sendable {
    // `@unchecked Sendable`: `ring`, `head`, `count`, `closed`, `waiters`, `nudged`,
    // `pollerWaiting` are touched only with `sync` held; `wake` is a
    // non-blocking pipe (read end polled, write end written).
    private let sync = MutexCondition()
    private var ring: [Item?]
    private var head = 0
    private var count = 0
    private var closed = false
    /// Consumers asleep on the condition.
    private var waiters = 0
    /// A nudge not yet taken by a waiting consumer.
    private var nudged = false
    /// A consumer waits in poll(2) on `wakeFD` and a descriptor.
    private var pollerWaiting = false
    private let wake: (read: Int32, write: Int32)

    public init(capacity: Int) {
        ring = [Item?](repeating: nil, count: capacity)
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
        }
        wake = (fds[0], fds[1])
    }

    deinit {
        if wake.read >= 0 { Glibc.close(wake.read) }
        if wake.write >= 0 { Glibc.close(wake.write) }
    }

    /// Items queued now.
    public var queued: Int { sync.withLock { count } }

    /// Appends `item`; returns false if the queue is full or closed.
    @discardableResult
    public func push(_ item: Item) -> Bool {
        sync.lock()
        defer { sync.unlock() }
        guard !closed, count < ring.count else { return false }
        ring[(head + count) % ring.count] = item
        count += 1
        wakeOneLocked()
        return true
    }

    /// Removes the oldest item, waiting for one; nil once closed and empty.
    public func pop() -> Item? {
        sync.lock()
        defer { sync.unlock() }
        while count == 0 {
            if closed { return nil }
            waiters += 1
            sync.wait()
            waiters -= 1
        }
        return takeLocked()
    }

    /// The oldest item if there is one (never waits).
    public func tryPop() -> Item? {
        sync.lock()
        defer { sync.unlock() }
        return count > 0 ? takeLocked() : nil
    }

    /// The oldest item, waiting at most `milliseconds` for one; nil on time-out, on a
    /// ``nudge()``, or once closed and empty.
    public func pop(waitMilliseconds milliseconds: Int) -> Item? {
        sync.lock()
        defer { sync.unlock() }
        if count == 0, !closed, !nudged {
            waiters += 1
            sync.wait(milliseconds: milliseconds)
            waiters -= 1
        }
        if count > 0 { return takeLocked() }
        nudged = false
        return nil
    }

    /// Wakes one consumer asleep in ``pop(waitMilliseconds:)`` without an item (it
    /// returns nil); does nothing when none sleeps (a busy consumer looks for itself).
    public func nudge() {
        sync.lock()
        defer { sync.unlock() }
        guard waiters > 0 else { return }
        nudged = true
        sync.signal()
    }

    /// Returns when an item is queued, `fd` is readable, the queue closes, or after
    /// `milliseconds`: returns whether `fd` is readable. One caller at a time (the
    /// pipeline's TUN-turn holder).
    public func waitForItem(orReadable fd: Int32, timeoutMilliseconds milliseconds: Int32) -> Bool {
        sync.lock()
        guard count == 0, !closed else {
            sync.unlock()
            return false
        }
        pollerWaiting = true
        sync.unlock()
        var fds = (pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0))
        let timeout = wake.read >= 0 ? milliseconds : min(milliseconds, 1)
        let r = withUnsafeMutablePointer(to: &fds) { p in
            p.withMemoryRebound(to: pollfd.self, capacity: 2) { poll($0, 2, timeout) }
        }
        sync.withLock { pollerWaiting = false }
        if fds.1.revents != 0 {
            var drained: (UInt64, UInt64) = (0, 0)
            _ = read(wake.read, &drained, 16)
        }
        return r > 0 && fds.0.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0
    }

    /// Wakes every waiting consumer; later pushes fail.
    public func close() {
        sync.withLock {
            closed = true
            sync.broadcast()
            if pollerWaiting { signalPollerLocked() }
        }
    }

    @inline(__always)
    private func takeLocked() -> Item? {
        let item = ring[head]
        ring[head] = nil
        head = (head + 1) % ring.count
        count -= 1
        return item
    }

    @inline(__always)
    private func wakeOneLocked() {
        if waiters > 0 {
            sync.signal()
        } else if pollerWaiting {
            signalPollerLocked()
        }
    }

    private func signalPollerLocked() {
        pollerWaiting = false
        var one: UInt8 = 1
        _ = write(wake.write, &one, 1)
    }
}
