import ArgumentParser
import CyphonicCore
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import CyphonicSignaling
import CyphonicTRS
import Foundation
import Logging
import ServiceLifecycle

/// `trs-relay serve`: the relay until SIGTERM/SIGINT.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Relay tunnels over UDP until SIGTERM/SIGINT.")

    @Option(help: "Directory with the bundle from `as-server service add trs NAME --out DIR` (NAME.key, NAME.pem, ca.pem).")
    var bundle: String
    @Option(help: "The service name in the bundle (default: the only one there).") var name: String?
    @Option(help: "UDP endpoint to relay on (repeatable; one socket per address, so answers leave from the address asked).")
    var listen: [String] = ["0.0.0.0:4503", "[::]:4503"]
    @Option(help: "HTTP endpoint for Prometheus metrics (/metrics); \"\" turns it off.") var metrics = "127.0.0.1:9454"
    @Option(help: "Unix socket for `trs-relay status`.") var control = "/run/trs-relay.sock"
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"
    @Option(help: "Seconds between a node's refreshes of its relay requests.") var refresh = 10
    @Option(name: .customLong("session-idle"), help: "Seconds without a packet after which a relay session ends.") var sessionIdle = 120
    @Option(name: .customLong("node-idle"), help: "Seconds without a word after which a node's signaling session ends.") var nodeIdle = 60
    @Option(name: .customLong("max-sessions"), help: "Relay sessions, at most.") var maxSessions = 100_000
    @Option(name: .customLong("max-sessions-per-node"), help: "Relay sessions one node may take part in, at most.") var maxSessionsPerNode = 256
    @Option(name: .customLong("max-nodes"), help: "Nodes with a signaling session, at most.") var maxNodes = 100_000
    @Option(name: .customLong("max-pending-handshakes"), help: "Handshakes waiting for message 3, at most.") var maxPendingHandshakes = 10_000
    @Option(name: .customLong("packets-per-second"), help: "Datagrams one end of a session may send per second (burst: a tenth of it).")
    var packetsPerSecond = 400_000
    @Option(name: .customLong("handshake-load-threshold"), help: "Initiations per second above which every source must repeat a cookie.")
    var handshakeLoadThreshold = 40
    @Option(name: .customLong("handshakes-per-source"), help: "Handshakes one source (IPv4 address, IPv6 /64) may start per second (burst 4x).")
    var handshakesPerSource = 4.0
    @Option(name: .customLong("handshakes-per-second"), help: "Handshakes per second in total, at most.") var handshakesPerSecond = 500.0
    @Option(name: .customLong("socket-buffer"), help: "Receive and send buffer of each UDP socket in bytes (0: the kernel's default).")
    var socketBuffer = 8 << 20
    @Option(name: .customLong("as"), help: "AS endpoint to fetch the revocation list from (HOST:PORT); without it only --crl applies.")
    var asEndpoint: String?
    @Option(help: "A CA-signed revocation list (PEM) to start with.") var crl: String?
    @Option(name: .customLong("crl-refresh"), help: "Seconds between revocation-list fetches from the AS.") var crlRefresh = 60.0
    @Flag(name: .customLong("no-offloads"), help: "Turn off UDP GRO/GSO (one datagram per batch slot and send).") var noOffloads = false

    func settings() throws -> TRSSettings {
        var s = TRSSettings()
        s.listen = try EndpointFlag.literal(listen, "listen")
        guard !s.listen.isEmpty else { throw ValidationError("--listen: give at least one endpoint") }
        guard (1...3600).contains(refresh) else { throw ValidationError("--refresh: \(refresh) must be 1...3600 seconds") }
        guard (5...86_400).contains(sessionIdle) else { throw ValidationError("--session-idle: \(sessionIdle) must be 5...86400 seconds") }
        guard nodeIdle >= 2 * refresh, nodeIdle <= 86_400 else {
            throw ValidationError("--node-idle: \(nodeIdle) must be at least twice --refresh (\(2 * refresh)) and at most 86400")
        }
        guard maxSessions > 0, maxSessionsPerNode > 0, maxNodes > 0, maxPendingHandshakes > 0 else {
            throw ValidationError("--max-sessions, --max-sessions-per-node, --max-nodes, --max-pending-handshakes must be positive")
        }
        guard packetsPerSecond >= 100 else { throw ValidationError("--packets-per-second: \(packetsPerSecond) must be at least 100") }
        guard handshakeLoadThreshold >= 0 else { throw ValidationError("--handshake-load-threshold: must be >= 0") }
        guard handshakesPerSource > 0 else { throw ValidationError("--handshakes-per-source: must be positive") }
        guard handshakesPerSecond >= 1 else { throw ValidationError("--handshakes-per-second: must be >= 1") }
        guard (0...(256 << 20)).contains(socketBuffer) else { throw ValidationError("--socket-buffer: must be 0...268435456") }
        s.refreshSeconds = refresh
        s.sessionIdleSeconds = sessionIdle
        s.nodeIdleSeconds = nodeIdle
        s.maxSessions = maxSessions
        s.maxSessionsPerNode = maxSessionsPerNode
        s.maxNodes = maxNodes
        s.maxPendingHandshakes = maxPendingHandshakes
        s.packetsPerSecondPerEnd = packetsPerSecond
        s.handshakeGuard.loadThresholdPerSecond = handshakeLoadThreshold
        s.handshakeGuard.perSourcePerSecond = handshakesPerSource
        s.handshakeGuard.perSourceBurst = 4 * handshakesPerSource
        s.handshakeGuard.totalPerSecond = handshakesPerSecond
        s.socketBufferBytes = socketBuffer
        s.offloads = !noOffloads
        return s
    }

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level: \(logLevel) is not a level") }
        let settings = try settings()
        let metricsEndpoint: Endpoint? = metrics.isEmpty ? nil : Endpoint(metrics)
        guard metrics.isEmpty || metricsEndpoint != nil else {
            throw ValidationError("--metrics: \(metrics) is not ADDRESS:PORT or [V6]:PORT (an IP address to bind: names are not resolved here)")
        }
        let identity: TRSIdentity
        do { identity = try TRSIdentity.load(bundle: bundle, name: name) } catch { throw ValidationError("--bundle: \(error)") }
        let asServer: Endpoint? = try asEndpoint.map {
            try EndpointFlag.resolved([$0], "as")[0]
        }
        guard crlRefresh >= 1 else { throw ValidationError("--crl-refresh: must be at least 1 second") }
        var initial: RevocationList?
        if let crl {
            do { initial = try loadRevocationList(crl, issuedBy: identity.ca) } catch { throw ValidationError("--crl: \(error)") }
        }
        LogSetup.bootstrap(level: level)
        let logger = Logger(label: "trs-relay")
        let trsMetrics = TRSMetrics()
        let server = try TRSServer(identity: identity, settings: settings, metrics: trsMetrics, logger: logger)
        if let initial { try server.applyRevocations(initial) }
        let refresher = asServer.map {
            ASClient(server: $0, caCertificate: identity.ca).revocationRefresher(key: identity.key, every: crlRefresh, logger: logger) { list in
                do { try server.applyRevocations(list) } catch { logger.error("trs: revocation list not applied: \(error)") }
            }
        }
        logger.info("trs-relay: \(identity.name); refresh \(settings.refreshSeconds) s, sessions idle after \(settings.sessionIdleSeconds) s")
        try await runServiceDaemon(
            program: "trs-relay", logger: logger, start: server.start, stop: server.stop, controlPath: control,
            control: { server.control($0) }, background: refresher.map { r in ({ r.start() }, { r.stop() }) },
            metrics: trsMetrics.registry, metricsEndpoint: metricsEndpoint)
    }
}

/// `trs-relay status`: the sessions and counters of a running relay.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a running relay's sessions and counters.")

    @Option(help: "The relay's control socket (serve --control).") var control = "/run/trs-relay.sock"
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let bytes: [UInt8]
        do { bytes = try ControlSocketServer.request(path: control, "status") } catch {
            throw PlainError("no trs-relay answers at \(control) (is it running? give its serve --control path with --control)")
        }
        if json {
            print(String(decoding: bytes, as: UTF8.self), terminator: "")
            return
        }
        let s = try JSONDecoder().decode(TRSStatus.self, from: Data(bytes))
        print(
            "trs \(s.name) on \(s.listen.joined(separator: " ")): \(s.sessions) session(s), \(s.boundEnds) end(s) bound, \(s.nodes) node(s) connected"
        )
        print(
            "  relayed \(s.relayedPackets) datagrams, \(s.relayedBytes) bytes"
                + (s.packetsByFamily.isEmpty
                    ? "" : " (\(s.packetsByFamily.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))")
        )
        if !s.refused.isEmpty { print("  refused: \(s.refused.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))") }
        if !s.dropped.isEmpty { print("  dropped: \(s.dropped.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))") }
    }
}
