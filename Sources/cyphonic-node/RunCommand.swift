import ArgumentParser
import CyphonicCore
import CyphonicDataPlane
import CyphonicNode
import CyphonicService
import Foundation
import Logging
import ServiceLifecycle

/// `cyphonic-node run`: the tunnel daemon until SIGTERM/SIGINT.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the node daemon: TUN, encrypted tunnels to peers, the multi-threaded pipeline (needs CAP_NET_ADMIN).",
        discussion: "Every config key is documented in docs/operations.md; examples/node.json is a complete example.")

    @Option(help: "Config file (JSON).") var config: String
    @Option(help: "Override the config's pipeline: multi or single.") var pipeline: String?
    @Option(help: "Override the number of crypto workers (0 = one per CPU).") var workers: Int?
    @Option(name: .customLong("tun-reading"), help: "Override who reads the TUN in multi: thread or workers.") var tunReading: String?
    @Option(name: .customLong("log-level"), help: "Override the config's log level.") var logLevel: String?
    @Flag(name: .customLong("check"), help: "Validate the config and exit.") var check = false

    func validate() throws {
        if let pipeline, pipeline != "multi", pipeline != "single" { throw ValidationError("--pipeline: \(pipeline) must be multi or single") }
        if let workers, !(0...64).contains(workers) { throw ValidationError("--workers: \(workers) must be 0...64") }
        if let tunReading, TunReading(rawValue: tunReading) == nil {
            throw ValidationError("--tun-reading: \(tunReading) must be thread or workers")
        }
        if let logLevel, !NodeConfig.logLevels.contains(logLevel) {
            throw ValidationError("--log-level: \(logLevel) is not a level: \(NodeConfig.logLevels.joined(separator: ", "))")
        }
    }

    func run() async throws {
        var cfg = try NodeConfig.load(path: config)
        if let pipeline { cfg.pipeline = pipeline }
        if let workers { cfg.workers = workers }
        if let tunReading { cfg.tunReading = tunReading }
        if let logLevel { cfg.logLevel = logLevel }
        try cfg.validate()
        let notes = try cfg.checkForRun()
        guard let level = Logger.Level(rawValue: cfg.logLevel) else { throw PlainError("logLevel: \(cfg.logLevel) is not a level") }
        if check {
            print("config ok: \(config)" + notes.map { "\n  note: \($0)" }.joined())
            return
        }
        LogSetup.bootstrap(level: level)
        let logger = Logger(label: "cyphonic-node")
        for note in notes { logger.warning("node: \(note)") }
        let daemon = NodeDaemon(config: cfg, logger: logger)
        var services: [any Service] = [UDPServerService(start: daemon.start, stop: daemon.stop)]
        if let metrics = Endpoint(cfg.metrics) {
            services.append(MetricsHTTPService(registry: daemon.registry, endpoint: metrics, logger: logger))
        }
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
        logger.info("cyphonic-node: shut down cleanly")
    }
}

/// `cyphonic-node forget NAME`: ends the tunnel with NAME (its next lookup sets it up again).
struct ForgetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget", abstract: "End the tunnel with a peer on both sides; the next lookup of its name sets it up again.")

    @Option(help: "The daemon's control socket (config key `control`; default from --tun).") var control: String?
    @Option(help: "The daemon's TUN name, which its default control socket derives from.") var tun = "cyph0"
    @Argument(help: "The peer's FQDN.") var name: String

    func run() throws {
        print(try nodeControl(path: control ?? NodeConfig.defaultControl(tun: tun), "forget \(name)"), terminator: "")
    }
}

/// `cyphonic-node status`: asks a running daemon over its control socket.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract:
            "Show the NMS registration, NAT behaviour, resolver, peers (how each tunnel was made), handshake ages, traffic and drops of a running daemon."
    )

    @Option(help: "The daemon's control socket (config key `control`; default from --tun).") var control: String?
    @Option(help: "The daemon's TUN name, which its default control socket derives from.") var tun = "cyph0"
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let s = try queryNodeStatus(path: control ?? NodeConfig.defaultControl(tun: tun))
        if json {
            let e = JSONEncoder()
            e.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try e.encode(s), as: UTF8.self))
            return
        }
        print("node      \(s.fqdn) \(s.addresses.joined(separator: " "))")
        if let g = s.signaling {
            let since = g.registeredSecondsAgo.map { String(format: " for %.0fs", $0) } ?? ""
            print("nms       \(g.state)\(since) at \(g.nms ?? "-")\(g.state == "registered" ? "" : ": \(g.reason)"); seen as \(g.observed ?? "-")")
            print("nat       IPv4 \(g.natIPv4 ?? "not probed"), IPv6 \(g.natIPv6 ?? "not probed")")
        } else {
            print("nms       none (static peers only)")
        }
        if let r = s.resolver {
            let c = r.counters
            let failures = c.failures.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            print(
                "resolver  \(r.serving ? "serving \(r.listen.joined(separator: " ")) for *.\(r.domain)" : "not serving: \(r.problem ?? "?")"); queries \(c.queries), answered \(c.answered), nxdomain \(c.nxdomain), servfail \(c.servfail)\(failures.isEmpty ? "" : " (\(failures))"), refused \(c.refused), formerr \(c.formerr), forwarded \(c.forwarded)"
            )
        }
        print("pipeline  \(s.pipeline), \(s.threads) pipeline threads, \(s.osThreads) OS threads")
        if let p = s.process {
            let mib = { (b: UInt64) in String(format: "%.1f MiB", Double(b) / 1_048_576) }
            print(
                "memory    resident \(mib(p.residentBytes))\(p.residentAnonymousBytes.map { " (\(mib($0)) anonymous, the rest mapped files)" } ?? ""); malloc: \(mib(p.mallocInUseBytes)) in use, \(mib(p.mallocHeldBytes)) held from the OS (\(mib(p.mallocFreeBytes)) of it free); CPU \(String(format: "%.1f", p.cpuSeconds)) s"
            )
        }
        print("handshakes completed \(s.handshakesCompleted), refused \(s.handshakesRefused); reorder waits \(s.reorderWaits)")
        let u = s.udp
        print(
            "udp: GSO \(u.gso ? (u.gsoRefused > 0 ? "on, refused \(u.gsoRefused) times" : "on") : "off"), GRO \(u.gro ? "on" : "off"); sent \(u.datagramsSent) datagrams in \(u.sendCalls) calls, received \(u.datagramsReceived) in \(u.messagesReceived) messages"
        )
        print("tun: offload \(s.tun.offload ? "on" : "off"); wrote \(s.tun.packetsWritten) packets in \(s.tun.writes) writes")
        print("priority lane (ACKs, pings ahead of bulk): sent \(s.priorityLane.sent), delivered \(s.priorityLane.delivered)")
        let sec = s.security
        print(
            "security: cookies sent \(sec.cookiesSent)\(sec.underLoad ? " (under load: every source needs a cookie)" : ""), throttled \(sec.handshakesThrottled), address conflicts \(sec.addressConflicts), peers revoked \(sec.peersRevoked), message 3 resent \(sec.message3Retransmits); revocation list \(sec.revocationList.map { "#\($0)" } ?? "none")\(sec.revocationListAgeSeconds.map { String(format: ", fetched %.0fs ago", $0) } ?? "")"
        )
        if s.reopen.enabled {
            print(
                "reopen    \(s.reopen.parkedAddresses) address\(s.reopen.parkedAddresses == 1 ? "" : "es") of closed tunnels kept; asked again \(s.reopen.asked), failed \(s.reopen.failed)"
            )
        }
        print("drops     " + s.drops.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        for (reason, count) in s.drops.sorted(by: { $0.key < $1.key }) where count > 0 {
            if let why = NodeStatus.dropExplanations[reason] { print("          \(reason): \(why)") }
        }
        for p in s.peers {
            var age = p.handshakeAgeSeconds.map { String(format: "%.0fs ago", $0) } ?? "no session"
            if p.handshakeAgeSeconds == nil, let n = p.initiationsUnanswered {
                age =
                    n == 0
                    ? "never — none sent yet"
                    : "never — sent \(n) initiation\(n == 1 ? "" : "s"), last \(String(format: "%.0f", p.lastInitiationSecondsAgo ?? 0)) s ago, no answer"
            }
            let path = p.pathID.map { " path \($0)" } ?? ""
            print("peer      \(p.fqdn) [\(p.addresses.joined(separator: " "))] at \(p.endpoint ?? "?") \(p.route)\(path), handshake \(age)")
            print("          tx \(p.txPackets) pkts / \(p.txBytes) B, rx \(p.rxPackets) pkts / \(p.rxBytes) B, reorder waits \(p.reorderWaits)")
        }
    }
}
