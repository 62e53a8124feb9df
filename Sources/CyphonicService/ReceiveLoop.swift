import CyphonicCore
import CyphonicPosix
import Foundation
import Synchronization

/// Runs a blocking UDP receive loop on a dedicated OS thread (never on Swift's
/// cooperative pool), handing each datagram to `handle` on that thread. The socket's
/// receive timeout bounds how long ``stop()`` waits; `tick` runs after every timeout
/// or datagram for housekeeping. `Sendable`.
public final class ReceiveLoop: Sendable {
    public let socket: UDPSocket
    private let state = LoopState()

    /// Shared between the owner and the thread (an `Atomic` cannot be captured itself).
    final class LoopState: Sendable {
        let running = Atomic<Bool>(true)
        let finished = DispatchSemaphore(value: 0)
    }

    public init(
        socket: UDPSocket, name: String, bufferSize: Int = 65_536,
        handle: @escaping @Sendable (UnsafeRawBufferPointer, Endpoint, UDPSocket) -> Void,
        tick: @escaping @Sendable () -> Void = {}
    ) throws {
        self.socket = socket
        try socket.setReceiveTimeout(milliseconds: 200)
        startThread(named: name) { [state, socket] in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
            defer {
                buffer.deallocate()
                state.finished.signal()
            }
            while state.running.load(ordering: .acquiring) {
                do {
                    let (n, from) = try socket.receive(into: buffer)
                    handle(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), from, socket)
                } catch let error as SystemError where error.wouldBlock {
                    // receive timeout: fall through to housekeeping
                } catch {
                    if !state.running.load(ordering: .acquiring) { break }
                }
                tick()
            }
        }
    }

    /// Stops the loop and waits for its thread to finish.
    public func stop() {
        if state.running.exchange(false, ordering: .acquiringAndReleasing) { state.finished.wait() }
    }
}
