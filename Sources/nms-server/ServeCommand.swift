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
        commandName: "serve", abstract: "Serve registrations, NAT probes and tunnel directions over UDP until SIGTERM/SIGINT.")

    @Option(
        help: "Directory with the bundle from `as-server service add nms NAME --out DIR` (NAME.key, NAME.pem, NAME.sign.key, NAME.sign.pem, ca.pem).")
    var bundle: String
    @Option(help: "The service name in the bundle (default: the only one there).") var name: String?
    @Option(help: "UDP endpoint for signaling (repeatable; bind each address to answer from the one asked).")
    var listen: [String] = ["0.0.0.0:4502", "[::]:4502"]
    @Option(name: .customLong("probe-listen"), help: "UDP endpoint for NAT-behaviour probes (repeatable).")
    var probeListen: [String] = ["0.0.0.0:4512", "[::]:4512"]
    @Option(help: "HTTP endpoint for Prometheus metrics (/metrics); \"\" turns it off.") var metrics = "127.0.0.1:9453"
    @Option(help: "Unix socket for `nms-server status`.") var control = "/run/nms-server.sock"
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"
    @Option(name: .customLong("as"), help: "AS endpoint to fetch the revocation list from (HOST:PORT); without it only --crl applies.")
    var asEndpoint: String?
    @Option(help: "A CA-signed revocation list (PEM) to start with.") var crl: String?
    @Option(name: .customLong("crl-refresh"), help: "Seconds between revocation-list fetches from the AS.") var crlRefresh = 60.0
    @Option(help: "Seconds between a node's keepalives.") var keepalive = 5
    @Option(name: .customLong("expire-after"), help: "Keepalive intervals without a word after which a registration expires.")
    var expireAfter = 3
    @Option(name: .customLong("direction-timeout"), help: "Milliseconds the responder has to confirm a direction.")
    var directionTimeout = 2000
    @Option(name: .customLong("authorization-lifetime"), help: "Seconds a route authorization stays valid.") var authorizationLifetime = 300
    @Option(help: "Let nodes of group A reach nodes of group B: A:B (repeatable; * is any group).") var allow: [String] = []
    @Option(help: "File of A:B rules, one per line (# comments).") var policy: String?
    @Option(help: "TRS endpoint for relayed routes (repeatable; each node gets the first of its family).") var relay: [String] = []
    @Option(
        name: .customLong("relay-authorization-lifetime"),
        help: "Seconds an authorization of a route that may use the relay stays valid (the relay checks it at every bind, also after it restarted).")
    var relayAuthorizationLifetime = 86_400
    @Option(name: .customLong("max-nodes"), help: "Registered nodes, at most.") var maxNodes = 1_000_000
    @Option(name: .customLong("max-pending-handshakes"), help: "Handshakes waiting for message 3, at most.") var maxPendingHandshakes = 10_000
    @Option(name: .customLong("max-pending-directions"), help: "Directions waiting for their responder, at most.")
    var maxPendingDirections = 100_000
    @Option(name: .customLong("max-pending-directions-per-node"), help: "Directions in progress for one initiator, at most.")
    var maxPendingDirectionsPerNode = 64
    @Option(name: .customLong("handshake-load-threshold"), help: "Initiations per second above which every source must repeat a cookie.")
    var handshakeLoadThreshold = 40
    @Option(name: .customLong("handshakes-per-source"), help: "Handshakes one source (IPv4 address, IPv6 /64) may start per second (burst 4x).")
    var handshakesPerSource = 4.0
    @Option(name: .customLong("handshakes-per-second"), help: "Handshakes per second in total, at most.") var handshakesPerSecond = 500.0
    @Option(help: "Registrations checked at once: 4 x this (0: one per CPU).") var workers = 0
    @Option(name: .customLong("receive-threads"), help: "Threads receiving on each signaling socket (0: one per CPU but one, left to the signer).")
    var receiveThreads = 0
    @Option(name: .customLong("udp-receive-buffer"), help: "Receive buffer of each UDP socket in bytes (0: the kernel's default).")
    var udpReceiveBuffer = 4 << 20

    func settings() throws -> NMSSettings {
        var s = NMSSettings()
        s.listen = try EndpointFlag.literal(listen, "listen")
        s.probeListen = try EndpointFlag.literal(probeListen, "probe-listen")
        s.relays = try EndpointFlag.resolved(relay, "relay")
        guard !s.listen.isEmpty else { throw ValidationError("--listen: give at least one endpoint") }
        guard !s.probeListen.isEmpty else { throw ValidationError("--probe-listen: give at least one endpoint") }
        guard (1...3600).contains(keepalive) else { throw ValidationError("--keepalive: \(keepalive) must be 1...3600 seconds") }
        guard (2...100).contains(expireAfter) else { throw ValidationError("--expire-after: \(expireAfter) must be 2...100 intervals") }
        guard (50...60_000).contains(directionTimeout) else { throw ValidationError("--direction-timeout: must be 50...60000 ms") }
        guard (10...86_400).contains(authorizationLifetime) else { throw ValidationError("--authorization-lifetime: must be 10...86400 s") }
        guard maxNodes > 0, maxPendingHandshakes > 0, maxPendingDirections > 0 else {
            throw ValidationError("--max-nodes, --max-pending-handshakes, --max-pending-directions must be positive")
        }
        guard handshakeLoadThreshold >= 0 else { throw ValidationError("--handshake-load-threshold: must be >= 0") }
        guard handshakesPerSource > 0 else { throw ValidationError("--handshakes-per-source: must be positive") }
        guard handshakesPerSecond >= 1 else { throw ValidationError("--handshakes-per-second: must be >= 1") }
        guard (0...256).contains(workers) else { throw ValidationError("--workers: must be 0...256") }
        guard crlRefresh >= 1 else { throw ValidationError("--crl-refresh: must be at least 1 second") }
        s.keepAliveSeconds = keepalive
        s.expireAfterIntervals = expireAfter
        s.directionTimeoutMilliseconds = directionTimeout
        s.authorizationSeconds = authorizationLifetime
        guard (60...(30 * 86_400)).contains(relayAuthorizationLifetime) else {
            throw ValidationError("--relay-authorization-lifetime: must be 60...2592000 s")
        }
        s.relayAuthorizationSeconds = relayAuthorizationLifetime
        s.maxNodes = maxNodes
        s.maxPendingHandshakes = maxPendingHandshakes
        s.maxPendingDirections = maxPendingDirections
        guard maxPendingDirectionsPerNode > 0 else { throw ValidationError("--max-pending-directions-per-node: must be positive") }
        s.maxPendingDirectionsPerNode = maxPendingDirectionsPerNode
        s.handshakeGuard.loadThresholdPerSecond = handshakeLoadThreshold
        s.handshakeGuard.perSourcePerSecond = handshakesPerSource
        s.handshakeGuard.perSourceBurst = 4 * handshakesPerSource
        s.handshakeGuard.totalPerSecond = handshakesPerSecond
        s.workers = workers
        guard (0...64).contains(receiveThreads) else { throw ValidationError("--receive-threads: must be 0...64") }
        s.receiveThreads = receiveThreads
        guard (0...(256 << 20)).contains(udpReceiveBuffer) else { throw ValidationError("--udp-receive-buffer: must be 0...268435456") }
        s.receiveBufferBytes = udpReceiveBuffer
        var rules = try allow.map {
            guard let r = AccessPolicy.Rule($0) else { throw ValidationError("--allow: \($0) is not GROUP_A:GROUP_B") }
            return r
        }
        if let policy {
            guard let text = try? String(contentsOfFile: policy, encoding: .utf8) else { throw ValidationError("--policy: cannot read \(policy)") }
            do { rules += try AccessPolicy.parse(file: text) } catch { throw ValidationError("--policy: \(policy): \(error)") }
        }
        s.policy = AccessPolicy(rules: rules)
        return s
    }

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level: \(logLevel) is not a level") }
        let settings = try settings()
        let metricsEndpoint: Endpoint? = metrics.isEmpty ? nil : Endpoint(metrics)
        guard metrics.isEmpty || metricsEndpoint != nil else {
            throw ValidationError("--metrics: \(metrics) is not ADDRESS:PORT or [V6]:PORT (an IP address to bind: names are not resolved here)")
        }
        let asServer: Endpoint? = try asEndpoint.map {
            try EndpointFlag.resolved([$0], "as")[0]
        }
        let identity: NMSIdentity
        do { identity = try NMSIdentity.load(bundle: bundle, name: name) } catch { throw ValidationError("--bundle: \(error)") }
        var revocations: RevocationList?
        if let crl {
            do { revocations = try loadRevocationList(crl, issuedBy: identity.ca) } catch { throw ValidationError("--crl: \(error)") }
        }
        LogSetup.bootstrap(level: level)
        let logger = Logger(label: "nms-server")
        let nmsMetrics = NMSMetrics()
        let server = try NMSServer(identity: identity, settings: settings, revocations: revocations, metrics: nmsMetrics, logger: logger)
        let refresher = asServer.map {
            ASClient(server: $0, caCertificate: identity.ca).revocationRefresher(key: identity.key, every: crlRefresh, logger: logger) { list in
                do { try server.applyRevocations(list) } catch { logger.error("nms: revocation list not applied: \(error)") }
            }
        }
        logger.info(
            "nms-server: \(identity.name); keepalive \(settings.keepAliveSeconds) s, policy \(settings.policy.rules.isEmpty ? "same group only" : settings.policy.rules.map(\.description).joined(separator: " ")), relays \(settings.relays.isEmpty ? "none" : settings.relays.map(\.description).joined(separator: " "))"
        )
        try await runServiceDaemon(
            program: "nms-server", logger: logger, start: server.start, stop: server.stop, controlPath: control,
            control: { server.control($0) }, background: refresher.map { r in ({ r.start() }, { r.stop() }) },
            metrics: nmsMetrics.registry, metricsEndpoint: metricsEndpoint)
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
