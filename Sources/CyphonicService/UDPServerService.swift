import ServiceLifecycle

/// Adapts a thread-based server (start binds and spawns receive threads, stop joins
/// them) to swift-service-lifecycle: started in `run()`, stopped on graceful shutdown.
public struct UDPServerService: Service {
    let start: @Sendable () throws -> Void
    let stop: @Sendable () -> Void

    public init(start: @escaping @Sendable () throws -> Void, stop: @escaping @Sendable () -> Void) {
        self.start = start
        self.stop = stop
    }

    public func run() async throws {
        try start()
        try? await gracefulShutdown()
        stop()
    }
}
