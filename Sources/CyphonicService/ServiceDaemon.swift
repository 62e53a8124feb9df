import ArgumentParser
import CyphonicCore
import CyphonicPosix
import Logging
import Prometheus
import ServiceLifecycle

/// Runs a UDP service (the NMS, the relay) until SIGTERM/SIGINT, the same way for each:
/// `start` binds its sockets, then its control socket opens (one that another instance
/// holds stops this one, as the node does), then `background` work starts (a
/// revocation-list refresher); on the way down in the reverse order; Prometheus metrics
/// over HTTP when `metricsEndpoint` is given.
public func runServiceDaemon(
    program: String, logger: Logger, start: @escaping @Sendable () throws -> Void, stop: @escaping @Sendable () -> Void,
    controlPath: String, control: @escaping @Sendable (String) -> [UInt8],
    background: (start: @Sendable () -> Void, stop: @Sendable () -> Void)? = nil,
    metrics registry: PrometheusCollectorRegistry, metricsEndpoint: Endpoint?
) async throws {
    let socketBox = Locked<ControlSocketServer?>(nil)
    var services: [any Service] = [
        UDPServerService(
            start: {
                try start()
                do {
                    let socket = try ControlSocketServer(path: controlPath, what: program, handle: control)
                    socketBox.withLock { $0 = socket }
                } catch {
                    stop()
                    throw error
                }
                background?.start()
            },
            stop: {
                background?.stop()
                socketBox.withLock { $0?.stop() }
                stop()
            })
    ]
    if let metricsEndpoint {
        services.append(MetricsHTTPService(registry: registry, endpoint: metricsEndpoint, logger: logger, processMetrics: true))
    }
    let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    try await group.run()
    logger.info("\(program): shut down cleanly")
}

/// `--flag` values naming endpoints, for the programs' command lines.
public enum EndpointFlag {
    /// Another host: IP literals or DNS names, resolved now (both families).
    public static func resolved(_ list: [String], _ flag: String) throws -> [Endpoint] {
        try list.flatMap { text -> [Endpoint] in
            do { return try HostPort.resolve(text) } catch { throw ValidationError("--\(flag): \(error)") }
        }
    }
}
