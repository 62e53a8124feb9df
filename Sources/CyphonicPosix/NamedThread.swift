import CCyphonicLinux
import Foundation

/// Starts a Foundation thread that carries `name` both as `Thread.name` and as its OS
/// name (what `top -H` and /proc/PID/task/*/comm show; the first 15 bytes), so the
/// daemons' own threads can be told from the runtime's. `stackSize` in bytes, or the
/// default.
@discardableResult
public func startThread(named name: String, stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) -> Thread {
    let thread = Thread {
        ccy_set_thread_name(name)
        body()
    }
    thread.name = name
    if let stackSize { thread.stackSize = stackSize }
    thread.start()
    return thread
}
