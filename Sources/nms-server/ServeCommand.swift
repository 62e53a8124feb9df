import ArgumentParser
import CyphonicCore
import CyphonicNMS
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import CyphonicSignaling
import Foundation
import Logging
import ServiceLifecycle

/// `nms-server serve`: the NMS until SIGTERM/SIGINT.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve registrations, NAT probes and tunnel directions over UDP until SIGTERM/SIGINT.",
        discussion: """
            Every flag is also a key of the config file (--config; the flag's name in camelCase, \
            --max-nodes is maxNodes, the repeatable --relay and --allow are lists; examples/nms-server.json); \
            a flag overrides the file. `nms-server --check-config FILE` checks a file without starting.
            """)

    @Option(help: "Config file (JSON): every flag below as a key; flags override it.") var config: String?
    @Option(
        help: "Directory with the bundle from `as-server service add nms NAME --out DIR` (NAME.key, NAME.pem, NAME.sign.key, NAME.sign.pem, ca.pem).")
    var bundle: String?
    @Option(help: "The service name in the bundle (default: the only one there).") var name: String?
    @Option(help: "UDP endpoint for signaling (repeatable; bind each address to answer from the one asked; default 0.0.0.0:4502 and [::]:4502).")
    var listen: [String] = []
    @Option(name: .customLong("probe-listen"), help: "UDP endpoint for NAT-behaviour probes (repeatable; default 0.0.0.0:4512 and [::]:4512).")
    var probeListen: [String] = []
    @Option(help: "HTTP endpoint for Prometheus metrics (/metrics; default \(NMSConfig.defaultMetrics)); \"\" turns it off.") var metrics: String?
    @Option(help: "Unix socket for `nms-server status` (default \(NMSConfig.defaultControl)).") var control: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info (default), notice, warning, error or critical.") var logLevel: String?
    @Option(help: "Seconds between a node's keepalives (default 5).") var keepalive: Int?
    @Option(name: .customLong("expire-after"), help: "Keepalive intervals without a word after which a registration expires (default 3).")
    var expireAfter: Int?
    @Option(name: .customLong("direction-timeout"), help: "Milliseconds the responder has to confirm a direction (default 2000).")
    var directionTimeout: Int?
    @Option(name: .customLong("authorization-lifetime"), help: "Seconds a route authorization stays valid (default 300).") var authorizationLifetime:
        Int?
    @Option(help: "Let nodes of group A reach nodes of group B: A:B (repeatable; * is any group).") var allow: [String] = []
    @Option(help: "File of A:B rules, one per line (# comments).") var policy: String?
    @Option(
        help: ArgumentHelp(
            "A relay for relayed routes (repeatable): NAME=HOST:PORT[,HOST:PORT] for a trs-relay host by its certificate name, or HOST:PORT.",
            discussion: """
                Each path gets one relay host (the least loaded that serves both ends' IP families; a relay reported \
                down by two nodes is skipped for 30 s) and its authorization names that host, which refuses other \
                paths. Bare HOST:PORT values form one unnamed relay whose paths any relay of the CA accepts.
                """))
    var relay: [String] = []
    @Option(
        help: ArgumentHelp(
            "Share registrations with other NMS replicas in this PostgreSQL database (postgresql://USER@HOST/DB or postgresql://USER@/DB?host=/run/postgresql).",
            discussion: """
                Each replica keeps its own nodes' sessions; directions to a node registered with another replica go \
                through that one (docs/scale.md). Give every replica the same bundle and database, and each node all \
                of their endpoints (as-server init --nms, repeatable).
                """))
    var database: String?
    @Option(help: "This replica's name among those sharing --database (default HOSTNAME/FIRST-LISTEN-ENDPOINT); unique.")
    var replica: String?
    @Option(
        name: .customLong("relay-authorization-lifetime"),
        help:
            "Seconds an authorization of a route that may use the relay stays valid (the relay checks it at every bind, also after it restarted; nodes renew it before it ends; at least 60, default 86400)."
    )
    var relayAuthorizationLifetime: Int?
    @Option(name: .customLong("max-nodes"), help: "Registered nodes, at most (default 1000000).") var maxNodes: Int?
    @Option(name: .customLong("max-pending-handshakes"), help: "Handshakes waiting for message 3, at most (default 10000).") var maxPendingHandshakes:
        Int?
    @Option(name: .customLong("max-pending-directions"), help: "Directions waiting for their responder, at most (default 100000).")
    var maxPendingDirections: Int?
    @Option(name: .customLong("max-pending-directions-per-node"), help: "Directions in progress for one initiator, at most (default 64).")
    var maxPendingDirectionsPerNode: Int?
    @Option(help: "Registrations checked at once: 4 x this (0: one per CPU; default 0).") var workers: Int?
    @Option(
        name: .customLong("receive-threads"),
        help: "Threads receiving on each signaling socket (0: one per CPU but one, left to the signer; default 0).")
    var receiveThreads: Int?
    @Option(name: .customLong("udp-receive-buffer"), help: "Receive buffer of each UDP socket in bytes (0: the kernel's default; default 4194304).")
    var udpReceiveBuffer: Int?

    @OptionGroup var revocation: RevocationOptions
    @OptionGroup var handshakeGuard: HandshakeGuardOptions

    /// The flags as a config layer (unset flags leave the file's values).
    var flags: NMSConfig {
        var c = NMSConfig()
        c.bundle = bundle
        c.name = name
        c.listen = listen.isEmpty ? nil : listen
        c.probeListen = probeListen.isEmpty ? nil : probeListen
        c.metrics = metrics
        c.control = control
        c.logLevel = logLevel
        c.keepalive = keepalive
        c.expireAfter = expireAfter
        c.directionTimeout = directionTimeout
        c.authorizationLifetime = authorizationLifetime
        c.allow = allow.isEmpty ? nil : allow
        c.policy = policy
        c.relay = relay.isEmpty ? nil : relay
        c.database = database
        c.replica = replica
        c.relayAuthorizationLifetime = relayAuthorizationLifetime
        c.maxNodes = maxNodes
        c.maxPendingHandshakes = maxPendingHandshakes
        c.maxPendingDirections = maxPendingDirections
        c.maxPendingDirectionsPerNode = maxPendingDirectionsPerNode
        c.workers = workers
        c.receiveThreads = receiveThreads
        c.udpReceiveBuffer = udpReceiveBuffer
        revocation.apply(to: &c)
        handshakeGuard.apply(to: &c)
        return c
    }

    func run() async throws {
        let launch: NMSLaunch
        do { launch = try NMSConfig.layered(file: config, flags: flags).launch() } catch let e as ConfigFileError {
            throw PlainError(e.namingFlag.description)
        }
        LogSetup.bootstrap(level: launch.logLevel)
        let logger = Logger(label: "nms-server")
        let nmsMetrics = NMSMetrics()
        let settings = launch.settings
        let server = try NMSServer(
            identity: launch.identity, settings: settings, revocations: launch.revocations, metrics: nmsMetrics, logger: logger)
        let refresher = launch.revocationRefresher(logger: logger) { try server.applyRevocations($0) }
        logger.info(
            "nms-server: \(launch.identity.name); keepalive \(settings.keepAliveSeconds) s, policy \(settings.policy.rules.isEmpty ? "same group only" : settings.policy.rules.map(\.description).joined(separator: " ")), relays \(settings.relayHosts.isEmpty ? "none" : settings.relayHosts.map(\.description).joined(separator: " "))"
        )
        try await runServiceDaemon(
            program: "nms-server", logger: logger, start: server.start, stop: server.stop, controlPath: launch.control,
            control: { server.control($0) }, background: refresher.map { r in ({ r.start() }, { r.stop() }) },
            metrics: nmsMetrics.registry, metricsEndpoint: launch.metrics)
    }
}

/// `nms-server status`: the registrations of a running NMS.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show the nodes a running NMS has registered.")

    @Option(help: "The NMS's control socket (serve --control).") var control = "/run/nms-server.sock"
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let bytes: [UInt8]
        do { bytes = try ControlSocketServer.request(path: control, "status") } catch {
            throw PlainError("no nms-server answers at \(control) (is it running? give its serve --control path with --control)")
        }
        if json {
            print(String(decoding: bytes, as: UTF8.self), terminator: "")
            return
        }
        let s = try JSONDecoder().decode(NMSStatus.self, from: Data(bytes))
        print("nms \(s.name): \(s.registered) node(s) registered, \(s.pendingDirections) direction(s) in progress")
        for n in s.nodes {
            print(
                "  \(n.fqdn)  [\(n.virtualIPs.joined(separator: " "))]  group \(n.group ?? "-")  seen \(n.lastSeenSecondsAgo)s ago  signaling \(n.signaling)"
            )
            print("      v4 \(n.ipv4 ?? "-")  v6 \(n.ipv6 ?? "-")  local \(n.local.joined(separator: " "))")
        }
    }
}
