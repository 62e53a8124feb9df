import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicService
import CyphonicSignaling
import Logging
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve Login -> Provision over UDP until SIGTERM/SIGINT.")

    @OptionGroup var dataDir: DataDirOption
    @Option(help: "UDP endpoint to listen on (repeatable).") var listen: [String] = ["0.0.0.0:4501", "[::]:4501"]
    @Option(help: "HTTP endpoint for Prometheus metrics (/metrics); \"\" turns it off.") var metrics = "127.0.0.1:9451"
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"
    @Option(
        name: .customLong("max-failures"),
        help: "Failed logins per source (IPv4 address, IPv6 /64) or, for token logins, per node name before token logins from it are refused.")
    var maxFailures = 5
    @Option(name: .customLong("failure-window"), help: "Seconds over which failed logins are counted (and blocked).")
    var failureWindow = 60
    @Option(name: .customLong("max-sessions"), help: "Handshakes and sessions kept in memory, at most.") var maxSessions = 10_000
    @Option(
        name: .customLong("max-password-checks"),
        help: "PBKDF2 token checks per second across all sources, at most; token logins beyond it are answered rateLimited.")
    var maxPasswordChecks = 20
    @Option(
        name: .customLong("handshake-load-threshold"),
        help: "Handshake initiations per second above which every source must first repeat a cookie (proving its address).")
    var handshakeLoadThreshold = 40
    @Option(name: .customLong("handshakes-per-source"), help: "Handshakes one source (IPv4 address, IPv6 /64) may start per second (burst 4x).")
    var handshakesPerSource = 4.0
    @Option(name: .customLong("handshakes-per-second"), help: "Handshakes per second in total, at most.")
    var handshakesPerSecond = 500.0

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level: \(logLevel) is not a level") }
        let endpoints = try EndpointFlag.literal(listen, "listen")
        let metricsEndpoint: Endpoint? = metrics.isEmpty ? nil : Endpoint(metrics)
        guard metrics.isEmpty || metricsEndpoint != nil else {
            throw ValidationError("--metrics: \(metrics) is not ADDRESS:PORT or [V6]:PORT (an IP address to bind: names are not resolved here)")
        }
        guard maxFailures > 0 else { throw ValidationError("--max-failures: \(maxFailures) must be positive") }
        guard failureWindow > 0 else { throw ValidationError("--failure-window: \(failureWindow) must be positive") }
        guard maxSessions > 0 else { throw ValidationError("--max-sessions: \(maxSessions) must be positive") }
        guard maxPasswordChecks > 0 else { throw ValidationError("--max-password-checks: \(maxPasswordChecks) must be positive") }
        guard handshakeLoadThreshold >= 0 else { throw ValidationError("--handshake-load-threshold: \(handshakeLoadThreshold) must be >= 0") }
        guard handshakesPerSource > 0 else { throw ValidationError("--handshakes-per-source: \(handshakesPerSource) must be positive") }
        guard handshakesPerSecond >= 1 else { throw ValidationError("--handshakes-per-second: \(handshakesPerSecond) must be >= 1") }
        LogSetup.bootstrap(level: level)
        let logger = Logger(label: "as-server")
        let directory = try ASDirectory.open(at: dataDir.path)
        let authority = try ASAuthority(
            directory: directory,
            limiter: RateLimiter(maxFailures: maxFailures, windowSeconds: Int64(failureWindow)),
            maxPasswordChecksPerSecond: maxPasswordChecks)
        let asMetrics = ASMetrics()
        var limits = ASServerLimits()
        limits.maxPendingHandshakes = maxSessions
        limits.maxSessions = maxSessions
        limits.handshakeGuard.loadThresholdPerSecond = handshakeLoadThreshold
        limits.handshakeGuard.perSourcePerSecond = handshakesPerSource
        limits.handshakeGuard.perSourceBurst = 4 * handshakesPerSource
        limits.handshakeGuard.totalPerSecond = handshakesPerSecond
        let server = ASServer(authority: authority, listen: endpoints, metrics: asMetrics, limits: limits, logger: logger)
        var services: [any Service] = [UDPServerService(start: server.start, stop: server.stop)]
        if let metricsEndpoint { services.append(MetricsHTTPService(registry: asMetrics.registry, endpoint: metricsEndpoint, logger: logger)) }
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        logger.info("as-server: serving \(directory.settings.domain) from \(dataDir.path)")
        try await group.run()
        logger.info("as-server: shut down cleanly")
    }
}
