import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicService
import CyphonicSignaling
import Logging
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve Login -> Provision over UDP until SIGTERM/SIGINT.",
        discussion: """
            Every flag is also a key of the config file (--config; the flag's name in camelCase, \
            --max-failures is maxFailures; examples/as-server.json); a flag overrides the file. \
            `as-server --check-config FILE` checks a file without starting.
            """)

    @Option(help: "Config file (JSON): every flag below as a key; flags override it.") var config: String?
    @Option(name: .customLong("data-dir"), help: "AS data directory made by `init` (default \(ASServeConfig.defaultDataDir)).") var dataDir: String?
    @Option(help: "UDP endpoint to listen on (repeatable; default 0.0.0.0:4501 and [::]:4501).") var listen: [String] = []
    @Option(help: "HTTP endpoint for Prometheus metrics (/metrics; default \(ASServeConfig.defaultMetrics)); \"\" turns it off.") var metrics: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info (default), notice, warning, error or critical.") var logLevel: String?
    @Option(
        name: .customLong("max-failures"),
        help:
            "Failed logins per source (IPv4 address, IPv6 /64) or, for token logins, per node name before token logins from it are refused (default 5)."
    )
    var maxFailures: Int?
    @Option(name: .customLong("failure-window"), help: "Seconds over which failed logins are counted (and blocked; default 60).")
    var failureWindow: Int?
    @Option(name: .customLong("max-sessions"), help: "Handshakes and sessions kept in memory, at most (default 10000).") var maxSessions: Int?
    @Option(
        name: .customLong("max-password-checks"),
        help: "PBKDF2 token checks per second across all sources, at most; token logins beyond it are answered rateLimited (default 20).")
    var maxPasswordChecks: Int?

    @OptionGroup var handshakeGuard: HandshakeGuardOptions

    /// The flags as a config layer (unset flags leave the file's values).
    var flags: ASServeConfig {
        var c = ASServeConfig()
        c.dataDir = dataDir
        c.listen = listen.isEmpty ? nil : listen
        c.metrics = metrics
        c.logLevel = logLevel
        c.maxFailures = maxFailures
        c.failureWindow = failureWindow
        c.maxSessions = maxSessions
        c.maxPasswordChecks = maxPasswordChecks
        handshakeGuard.apply(to: &c)
        return c
    }

    func run() async throws {
        let launch: ASLaunch
        do { launch = try ASServeConfig.layered(file: config, flags: flags).launch() } catch let e as ConfigFileError {
            throw PlainError(e.namingFlag.description)
        }
        LogSetup.bootstrap(level: launch.logLevel)
        let logger = Logger(label: "as-server")
        let directory = try ASDirectory.open(at: launch.dataDir)
        let authority = try ASAuthority(
            directory: directory,
            limiter: RateLimiter(maxFailures: launch.maxFailures, windowSeconds: Int64(launch.failureWindowSeconds)),
            maxPasswordChecksPerSecond: launch.maxPasswordChecksPerSecond)
        let asMetrics = ASMetrics()
        let server = ASServer(authority: authority, listen: launch.listen, metrics: asMetrics, limits: launch.limits, logger: logger)
        var services: [any Service] = [UDPServerService(start: server.start, stop: server.stop)]
        if let endpoint = launch.metrics {
            services.append(MetricsHTTPService(registry: asMetrics.registry, endpoint: endpoint, logger: logger, processMetrics: true))
        }
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        logger.info("as-server: serving \(directory.settings.domain) from \(launch.dataDir)")
        try await group.run()
        logger.info("as-server: shut down cleanly")
    }
}
