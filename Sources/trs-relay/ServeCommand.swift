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
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Relay tunnels over UDP until SIGTERM/SIGINT.",
        discussion: """
            Every flag is also a key of the config file (--config; the flag's name in camelCase, \
            --max-sessions is maxSessions; examples/trs-relay.json); a flag overrides the file. \
            `trs-relay --check-config FILE` checks a file without starting.
            """)

    @Option(help: "Config file (JSON): every flag below as a key; flags override it.") var config: String?
    @Option(help: "Directory with the bundle from `as-server service add trs NAME --out DIR` (NAME.key, NAME.pem, ca.pem).")
    var bundle: String?
    @Option(help: "The service name in the bundle (default: the only one there).") var name: String?
    @Option(
        help:
            "UDP endpoint to relay on (repeatable; one socket per address, so answers leave from the address asked; default 0.0.0.0:4503 and [::]:4503)."
    )
    var listen: [String] = []
    @Option(help: "HTTP endpoint for Prometheus metrics (/metrics; default \(TRSConfig.defaultMetrics)); \"\" turns it off.") var metrics: String?
    @Option(help: "Unix socket for `trs-relay status` (default \(TRSConfig.defaultControl)).") var control: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info (default), notice, warning, error or critical.") var logLevel: String?
    @Option(help: "Seconds between a node's refreshes of its relay requests (default 10).") var refresh: Int?
    @Option(name: .customLong("session-idle"), help: "Seconds without a packet after which a relay session ends (default 120).") var sessionIdle: Int?
    @Option(name: .customLong("node-idle"), help: "Seconds without a word after which a node's signaling session ends (default 60).") var nodeIdle:
        Int?
    @Option(name: .customLong("max-sessions"), help: "Relay sessions, at most (default 100000).") var maxSessions: Int?
    @Option(name: .customLong("max-sessions-per-node"), help: "Relay sessions one node may take part in, at most (default 256).")
    var maxSessionsPerNode: Int?
    @Option(name: .customLong("max-nodes"), help: "Nodes with a signaling session, at most (default 100000).") var maxNodes: Int?
    @Option(name: .customLong("max-pending-handshakes"), help: "Handshakes waiting for message 3, at most (default 10000).") var maxPendingHandshakes:
        Int?
    @Option(
        name: .customLong("packets-per-second"), help: "Datagrams one end of a session may send per second (burst: a tenth of it; default 400000).")
    var packetsPerSecond: Int?
    @Option(
        name: .customLong("socket-buffer"), help: "Receive and send buffer of each UDP socket in bytes (0: the kernel's default; default 8388608).")
    var socketBuffer: Int?
    @Flag(name: .customLong("no-offloads"), help: "Turn off UDP GRO/GSO (one datagram per batch slot and send).") var noOffloads = false
    @Flag(name: .customLong("offloads"), help: "Keep UDP GRO/GSO on, over a config file's noOffloads: true.") var offloads = false

    @OptionGroup var revocation: RevocationOptions
    @OptionGroup var handshakeGuard: HandshakeGuardOptions

    /// The flags as a config layer (unset flags leave the file's values).
    var flags: TRSConfig {
        var c = TRSConfig()
        c.bundle = bundle
        c.name = name
        c.listen = listen.isEmpty ? nil : listen
        c.metrics = metrics
        c.control = control
        c.logLevel = logLevel
        c.refresh = refresh
        c.sessionIdle = sessionIdle
        c.nodeIdle = nodeIdle
        c.maxSessions = maxSessions
        c.maxSessionsPerNode = maxSessionsPerNode
        c.maxNodes = maxNodes
        c.maxPendingHandshakes = maxPendingHandshakes
        c.packetsPerSecond = packetsPerSecond
        c.socketBuffer = socketBuffer
        c.noOffloads = noOffloads ? true : (offloads ? false : nil)
        revocation.apply(to: &c)
        handshakeGuard.apply(to: &c)
        return c
    }

    func validate() throws {
        if noOffloads, offloads { throw ValidationError("--offloads and --no-offloads: give one of them") }
    }

    func run() async throws {
        let launch: TRSLaunch
        do { launch = try TRSConfig.layered(file: config, flags: flags).launch() } catch let e as ConfigFileError {
            throw PlainError(e.namingFlag.description)
        }
        LogSetup.bootstrap(level: launch.logLevel)
        let logger = Logger(label: "trs-relay")
        let trsMetrics = TRSMetrics()
        let server = try TRSServer(identity: launch.identity, settings: launch.settings, metrics: trsMetrics, logger: logger)
        if let initial = launch.revocations { try server.applyRevocations(initial) }
        let refresher = launch.revocationRefresher(logger: logger) { try server.applyRevocations($0) }
        let settings = launch.settings
        logger.info("trs-relay: \(launch.identity.name); refresh \(settings.refreshSeconds) s, sessions idle after \(settings.sessionIdleSeconds) s")
        try await runServiceDaemon(
            program: "trs-relay", logger: logger, start: server.start, stop: server.stop, controlPath: launch.control,
            control: { server.control($0) }, background: refresher.map { r in ({ r.start() }, { r.stop() }) },
            metrics: trsMetrics.registry, metricsEndpoint: launch.metrics)
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
