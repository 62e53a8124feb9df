import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import CyphonicSignaling
import CyphonicWire
import Foundation
import Logging
import Prometheus

/// The running node: TUN with the node's virtual IPs, the UDP socket, the data-plane
/// pipeline, the tunnel control plane, the status socket and the metrics. `start()`
/// builds and starts everything; `stop()` undoes it (threads joined, TUN closed, the
/// MSS-clamp rules and the status socket removed).
public final class NodeDaemon: @unchecked Sendable {
    // `@unchecked Sendable`: set up in `start()` before any thread runs, then read-only.
    public let config: NodeConfig
    public let registry = PrometheusCollectorRegistry()
    let logger: Logger
    public private(set) var pipeline: Pipeline?
    public private(set) var manager: TunnelManager?
    private var status: ControlSocketServer?
    private var refresher: PeriodicRefresher<RevocationList>?
    private var renewal: PeriodicRefresher<Provision>?
    public internal(set) var signaling: NodeSignaling?
    public internal(set) var resolver: NodeResolver?
    private let stopping = MutexCondition()
    private var stopped = false
    public private(set) var certificate: Certificate?

    public init(config: NodeConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    public var mode: PipelineMode {
        if config.pipeline == "single" { return .single }
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        return .multi(workers: config.workers > 0 ? config.workers : max(1, cpus))
    }

    public func start() throws {
        // A peer or client that hangs up mid-write is an error to handle, never a reason to die.
        signal(SIGPIPE, SIG_IGN)
        try refreshIdentity()
        let key = try KeyFiles.x25519(pem: try readTextFile(config.key!, what: "the node key (config `key`)"))
        let cert = try Certificate(pem: try readTextFile(config.certificate!, what: "the node certificate (config `certificate`)"))
        let ca = try Certificate(pem: try readTextFile(config.ca!, what: "the CA certificate (config `ca`)"))
        let crl = try config.crl.map { try RevocationList(pem: try readTextFile($0, what: "the revocation list (config `crl`)")) }
        let verifier = try CertificateVerifier(trustAnchor: ca, revocations: crl)
        do { try verifier.verify(cert, role: .node) } catch {
            // Start anyway (the operator sees why tunnels fail); peers will refuse it.
            logger.error("node: our own certificate is not acceptable: \(error); peers will refuse our handshakes")
        }
        guard cert.x25519PublicKey == key.publicKey else { throw ConfigFileError.invalid("key", "does not match the certificate") }
        certificate = cert
        let addresses = cert.ipAddresses
        guard let v4 = addresses.first(where: { $0.isIPv4 }) else { throw ConfigFileError.invalid("certificate", "names no virtual IPv4") }
        let v6 = addresses.first { !$0.isIPv4 }

        // The port and the control socket first: a second daemon must fail before it
        // touches the interface of the first.
        let listen = Endpoint(config.listen)!
        let socket = try bindExclusive(listen)
        do {
            status = try ControlSocketServer(path: config.control, what: "cyphonic-node") { [weak self] line in
                self?.control(line) ?? Array("stopping\n".utf8)
            }
        } catch {
            socket.close()
            throw error
        }
        let tun: TunDevice
        do {
            tun = try TunDevice(name: config.tun.name, vnetHeader: config.tun.offload)
            if config.tun.offload { try tun.enableOffload(tso: true, uso: false) }
            try configureInterface(tun.name, v4: v4, v6: v6)
            if config.udpReceiveBuffer > 0 { try socket.setReceiveBufferSize(config.udpReceiveBuffer) }
        } catch {
            status?.stop()
            socket.close()
            throw error
        }
        let peers = PeerTable()
        let mode = self.mode
        let manager = try TunnelManager(
            localKey: key, certificate: cert, verifier: verifier, peers: peers,
            keySlots: mode.keySlots, config: config, logger: logger)
        let pipeline = Pipeline(
            tun: tun, socket: socket, peers: peers, control: manager, mode: mode, mtu: config.tun.mtu,
            poolSize: config.poolSize, udpOffload: config.udpOffload)
        pipeline.tunReading = TunReading(rawValue: config.tunReading) ?? .workers
        manager.pipeline = pipeline
        self.manager = manager
        self.pipeline = pipeline
        let nms = nmsEndpoints()
        if !nms.isEmpty {
            let overlay = [IPPrefix(config.overlay4)!, IPPrefix(config.overlay6)!]
            let signaling = NodeSignaling(
                nms: nms, key: key, certificate: cert, listenPort: (try? socket.localEndpoint())?.port ?? listen.port, overlay: overlay,
                manager: manager, logger: logger)
            manager.signaling = signaling
            self.signaling = signaling
        } else {
            logger.notice("node: no NMS endpoint (config `nms` or an enrolment in stateDir): static peers only, no name lookups")
        }
        try pipeline.start()
        startResolver(certificate: cert)
        // The first renewal check after one interval: start already logged in.
        renewal = startRenewal(key: key, certificate: cert)
        renewal?.start(delayed: true)
        if let asEndpoint = revocationSource() {
            let refresher = ASClient(server: asEndpoint, caCertificate: ca).revocationRefresher(
                key: key, every: config.crlRefreshSeconds, logger: logger, apply: { [manager] in manager.offerRevocations($0) })
            refresher.start()
            self.refresher = refresher
            logger.info("node: revocation list from the AS at \(asEndpoint) every \(Int(config.crlRefreshSeconds)) s")
        } else {
            logger.notice("node: no AS endpoint (config `asEndpoint` or an enrolment in stateDir): revocations only from `crl`")
        }
        startMetrics()
        let udp = (try? socket.localEndpoint())?.description ?? config.listen
        logger.info(
            "node: \(cert.commonName ?? "?") up on \(tun.name) (\(addresses.map(\.description).joined(separator: ", "))), udp \(udp), pipeline \(pipeline.design), \(pipeline.threadCount) threads, UDP GSO \(config.udpOffload ? "on" : "off"), GRO \(pipeline.groEnabled ? "on" : "off")"
        )
    }

    public func stop() {
        let first = stopping.withLock { () -> Bool in
            defer {
                stopped = true
                stopping.broadcast()
            }
            return !stopped
        }
        guard first else { return }
        refresher?.stop()
        renewal?.stop()
        resolver?.stop()
        signaling?.finalize()
        pipeline?.stop()
        // Tell every peer we are gone (authenticated), so its session ends now.
        if let pipeline {
            for peer in pipeline.peers.withLock({ pipeline.peers.peersLocked.filter { $0.current != nil } }) {
                pipeline.sendFinalization(to: peer)
            }
        }
        status?.stop()
        if config.tun.mssClamp { _ = run("/usr/sbin/nft", ["delete", "table", "inet", nftTable]) }
        pipeline?.tun.close()
        pipeline?.socket.close()
        logger.info("node: stopped")
    }

    /// The node's UDP socket; a port another process holds is an error naming it.
    private func bindExclusive(_ listen: Endpoint) throws -> UDPSocket {
        let result = Result { () throws(SystemError) in try UDPSocket(bind: listen, dualStack: true) }
        if case .failure(let e) = result, e.errno == EADDRINUSE {
            throw InUseError(
                what: "UDP port \(listen.port) (listen \(config.listen))", owner: PortOwner.udp(port: listen.port),
                hint: "another daemon is bound to it; stop it, or set another `listen` port")
        }
        return try result.get()
    }

    /// Where revocation lists come from: `asEndpoint`, else the enrolment's AS.
    private func revocationSource() -> Endpoint? {
        if let a = config.asEndpoint { return a.isEmpty ? nil : try? HostPort.resolve(a).first }
        guard let dir = config.stateDir, let assignment = try? NodeStateDirectory(path: dir).assignment() else { return nil }
        return try? HostPort.resolve(assignment.asEndpoint).first
    }

    var nftTable: String { "cyphonic_" + config.tun.name.map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined() }

    private func configureInterface(_ name: String, v4: IPAddress, v6: IPAddress?) throws {
        let len4 = IPPrefix(config.overlay4)!.length
        let len6 = IPPrefix(config.overlay6)!.length
        try ip(["link", "set", "dev", name, "mtu", String(config.tun.mtu), "txqueuelen", String(config.effectiveTxQueueLength)])
        try ip(["addr", "add", "\(v4)/\(len4)", "dev", name])
        if let v6 {
            _ = run("/sbin/sysctl", ["-qw", "net.ipv6.conf.\(name).disable_ipv6=0"])
            try ip(["-6", "addr", "add", "\(v6)/\(len6)", "dev", name, "nodad"])
        }
        try ip(["link", "set", "dev", name, "up"])
        if config.tun.mssClamp {
            // Clamp the MSS of TCP SYNs leaving through the tunnel to what its MTU allows.
            let rules = """
                table inet \(nftTable) {
                  chain clamp_out { type filter hook output priority mangle; oifname "\(name)" tcp flags syn tcp option maxseg size set rt mtu; }
                  chain clamp_fwd { type filter hook forward priority mangle; oifname "\(name)" tcp flags syn tcp option maxseg size set rt mtu; }
                }
                """
            let (status, errors) = run("/usr/sbin/nft", ["-f", "-"], input: rules)
            if status != 0 {
                logger.warning("node: TCP MSS not clamped for forwarded traffic: nft \(status == -1 ? "is not installed" : "failed: \(errors)")")
            }
        }
    }

    /// Runs `ip` (iproute2); a failure says the command and what `ip` itself printed.
    private func ip(_ args: [String]) throws {
        let (status, errors) = run("/sbin/ip", args)
        guard status == 0 else {
            let command = "ip " + args.joined(separator: " ")
            if status == -1 { throw PlainError("cannot run /sbin/ip (is iproute2 installed?) for `\(command)`") }
            throw PlainError("`\(command)` failed (exit \(status)): \(errors.isEmpty ? "no message" : errors)")
        }
    }

    /// Runs a helper; its exit status (-1 when it could not start) and its stderr.
    @discardableResult
    private func run(_ path: String, _ args: [String], input: String? = nil) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        p.standardError = errors
        let pipe = Pipe()
        if input != nil { p.standardInput = pipe }
        do { try p.run() } catch { return (-1, "") }
        if let input {
            pipe.fileHandleForWriting.write(Data(input.utf8))
            try? pipe.fileHandleForWriting.close()
        }
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static let emptyStatus = NodeStatus(
        fqdn: "", addresses: [], pipeline: "", threads: 0, osThreads: 0, peers: [], drops: [:],
        reorderWaits: 0, handshakesCompleted: 0, handshakesRefused: 0, badControlDatagrams: 0)

    /// The current figures.
    public func snapshot() -> NodeStatus {
        guard let pipeline, let manager else { return Self.emptyStatus }
        let now = monotonicSeconds()
        // The peers first, then what signaling says of each (never both locks at once).
        let peerList = pipeline.peers.withLock { pipeline.peers.peersLocked }
        let live: [NodeStatus.PeerStatus] = peerList.map { p in
            let route = signaling?.route(of: p.fqdn)
            let path = signaling?.path(of: p.fqdn)
            var status = NodeStatus.PeerStatus(
                fqdn: p.fqdn, addresses: p.addresses.map(\.description),
                endpoint: pipeline.peers.withLock { p.endpoint?.endpoint?.description },
                route: config.peers.contains { $0.fqdn == p.fqdn } ? "static" : route?.kind ?? "accepted",
                routeReason: route?.reason, pathID: path?.pathID, certificateSerial: p.serial,
                handshakeAgeSeconds: pipeline.peers.withLock { p.current == nil ? nil : (now - p.lastHandshake) },
                txPackets: p.stats.txPackets.load, txBytes: p.stats.txBytes.load,
                rxPackets: p.stats.rxPackets.load, rxBytes: p.stats.rxBytes.load,
                reorderWaits: p.stats.reorderWaits.load, handshakes: p.stats.handshakes.load)
            status.rxOutOfOrder = p.stats.rxOutOfOrder.load
            status.pathAuthorizationExpires = path?.expires
            return status
        }
        // Configured peers without a session yet are listed too, with what was tried.
        var all = live.filter { peer in peer.handshakeAgeSeconds != nil || !config.peers.contains { $0.fqdn == peer.fqdn } }
        let listed = Set(all.map(\.fqdn))
        for configured in config.peers where !listed.contains(configured.fqdn) {
            let tried = manager.attempts(configured.fqdn)
            all.append(
                NodeStatus.PeerStatus(
                    fqdn: configured.fqdn, addresses: [], endpoint: configured.endpoint, route: "static",
                    initiationsUnanswered: tried.sent, lastInitiationSecondsAgo: tried.lastSecondsAgo, handshakeAgeSeconds: nil,
                    txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, reorderWaits: 0, handshakes: 0))
        }
        let peers = all.sorted { $0.fqdn < $1.fqdn }
        var drops: [String: UInt64] = [:]
        for r in DropReason.allCases { drops[r.label] = pipeline.stats.drops(r) }
        let s = pipeline.stats
        let resources = ProcessResources.current()
        let udp = NodeStatus.UDPStatus(
            gso: pipeline.udpOffload, gsoRefused: s.udpGSORefused.load, gro: pipeline.groEnabled,
            sendCalls: s.udpSendCalls.load,
            datagramsSent: s.udpDatagramsSent.load, messagesReceived: s.udpMessagesReceived.load,
            datagramsReceived: s.udpDatagramsReceived.load, runsNotCopied: s.udpRunsNotCopied.load)
        return NodeStatus(
            fqdn: certificate?.commonName ?? "", addresses: certificate?.ipAddresses.map(\.description) ?? [],
            pipeline: pipeline.design, threads: pipeline.threadCount, osThreads: resources.threads,
            peers: peers, drops: drops, reorderWaits: s.reorderWaits.load,
            handshakesCompleted: manager.stats.handshakesCompleted.load,
            handshakesRefused: manager.stats.handshakesRefused.load,
            badControlDatagrams: manager.stats.badControl.load, udp: udp,
            tun: NodeStatus.TunStatus(
                offload: pipeline.tun.vnetHeader, writes: s.tunWrites.load,
                packetsWritten: s.tunPacketsWritten.load),
            priorityLane: NodeStatus.PriorityLaneStatus(sent: s.prioritySent.load, delivered: s.priorityDelivered.load),
            security: NodeStatus.SecurityStatus(
                cookiesSent: manager.stats.cookiesSent.load, handshakesThrottled: manager.stats.handshakesThrottled.load,
                underLoad: manager.handshakeGuard.isUnderLoad(), addressConflicts: manager.stats.addressConflicts.load,
                peersRevoked: manager.stats.peersRevoked.load, message3Retransmits: manager.stats.message3Retransmits.load,
                revocationList: manager.revocationListNumber, revocationListAgeSeconds: refresher?.secondsSinceSuccess),
            reopen: NodeStatus.ReopenStatus(
                enabled: manager.reopening, parkedAddresses: manager.parkedAddresses, asked: manager.stats.reopens.load,
                failed: manager.stats.reopensFailed.load),
            signaling: signaling?.status(), resolver: resolver?.status(), process: resources)
    }

    /// Mirrors the atomics into Prometheus once a second (counters advance by deltas).
    private func startMetrics() {
        let registry = self.registry
        @Sendable func name(_ n: String, _ help: String, unit: String = "total") -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "cyphonic_node", metricName: n, unitName: unit, helpText: help)
        }
        let dropCounters = Dictionary(
            uniqueKeysWithValues: DropReason.allCases.map {
                ($0.label, registry.makeCounter(descriptor: name("drops", "Packets dropped by reason"), labels: [("reason", $0.label)]))
            })
        let threads = registry.makeGauge(descriptor: name("os_threads", "OS threads of the daemon", unit: ""))
        let peersGauge = registry.makeGauge(descriptor: name("peers", "Peers with a session", unit: ""))
        let registered = registry.makeGauge(descriptor: name("nms_registered", "1 while registered with the NMS", unit: ""))
        // The process (Prometheus' conventional names) and malloc: allocated vs held (issue 12, Fig. 7).
        let resident = registry.makeGauge(
            descriptor: MetricNameDescriptor(
                namespace: "process", metricName: "resident_memory", unitName: "bytes", helpText: "Resident memory size in bytes"))
        let anonymous = registry.makeGauge(
            descriptor: name("resident_anonymous", "Of the resident memory, anonymous pages (heap, stacks, buffers; not mapped files)", unit: "bytes")
        )
        let cpu = registry.makeGauge(
            descriptor: MetricNameDescriptor(
                namespace: "process", metricName: "cpu_seconds", unitName: "total", helpText: "User and system CPU time in seconds"))
        let mallocInUse = registry.makeGauge(
            descriptor: name("malloc_in_use", "Bytes allocated with malloc and not freed", unit: "bytes"))
        let mallocHeld = registry.makeGauge(
            descriptor: name("malloc_held", "Bytes malloc holds from the OS (in use + free in its arenas)", unit: "bytes"))
        let mallocFree = registry.makeGauge(
            descriptor: name("malloc_free", "Free bytes malloc retains in its arenas", unit: "bytes"))
        // Counters that mirror one status figure each: metric name, help, the figure.
        let figures: [(String, String, @Sendable (NodeStatus) -> UInt64)] = [
            ("reorder_waits", "Finished batches that waited for an earlier one", { $0.reorderWaits }),
            ("handshakes", "Tunnel handshakes completed", { $0.handshakesCompleted }),
            ("handshakes_refused", "Tunnel handshakes refused", { $0.handshakesRefused }),
            ("tx_bytes", "Bytes sent through tunnels", { $0.peers.reduce(0) { $0 + $1.txBytes } }),
            ("rx_bytes", "Bytes received through tunnels", { $0.peers.reduce(0) { $0 + $1.rxBytes } }),
            ("tx_packets", "Packets sent through tunnels", { $0.peers.reduce(0) { $0 + $1.txPackets } }),
            ("rx_packets", "Packets received through tunnels", { $0.peers.reduce(0) { $0 + $1.rxPackets } }),
            ("udp_send_calls", "UDP send system calls of the data plane", { $0.udp.sendCalls }),
            ("udp_datagrams_sent", "Datagrams those calls carried (GSO)", { $0.udp.datagramsSent }),
            ("udp_gso_refused", "GSO sends the kernel refused (resent as plain datagrams)", { $0.udp.gsoRefused }),
            ("udp_messages_received", "UDP messages received (GRO coalesced)", { $0.udp.messagesReceived }),
            ("udp_runs_not_copied", "Received GRO runs handed to the crypto workers where they landed", { $0.udp.runsNotCopied }),
            ("udp_datagrams_received", "Datagrams in those messages", { $0.udp.datagramsReceived }),
            ("tun_writes", "TUN writes (coalesced TCP runs count once)", { $0.tun.writes }),
            ("tun_packets_written", "Packets those TUN writes carried", { $0.tun.packetsWritten }),
            ("priority_sent", "Packets (ACKs, pings) sent ahead of their peer's queued bulk", { $0.priorityLane.sent }),
            ("priority_delivered", "Packets (ACKs, pings) delivered ahead of their peer's queued bulk", { $0.priorityLane.delivered }),
            ("cookies_sent", "Cookie replies sent to unverified handshake sources", { $0.security.cookiesSent }),
            ("handshakes_throttled", "Handshake initiations dropped by per-source or total limits", { $0.security.handshakesThrottled }),
            ("address_conflicts", "Handshakes refused: another peer with a session owns the virtual IPs", { $0.security.addressConflicts }),
            ("peers_revoked", "Peers whose sessions ended on revocation or expiry", { $0.security.peersRevoked }),
            ("message3_retransmits", "Handshake message 3 resent while unconfirmed", { $0.security.message3Retransmits }),
            ("tunnel_reopen_requests", "Closed tunnels asked of the NMS again because of a packet for the peer's address", { $0.reopen.asked }),
            ("tunnel_reopen_failures", "Of those requests, the ones that ended without a tunnel", { $0.reopen.failed }),
            ("nms_registrations", "Registrations with the NMS (first and again)", { $0.signaling?.counters.registrations ?? 0 }),
            (
                "nms_keepalives_missed", "NMS keepalives without an ack (each makes the node register again)",
                { $0.signaling?.counters.keepAlivesMissed ?? 0 }
            ),
            ("directions_requested", "Tunnels asked of the NMS by name", { $0.signaling?.counters.directionsRequested ?? 0 }),
            (
                "directions_refused", "Name lookups that ended without a tunnel (refused, timed out)",
                { $0.signaling?.counters.directionsRefused ?? 0 }
            ),
            ("directions_as_responder", "Tunnels the NMS directed to us", { $0.signaling?.counters.directionsAsResponder ?? 0 }),
            (
                "authorizations_refused", "Route directions refused: authorization did not check",
                { $0.signaling?.counters.authorizationsRefused ?? 0 }
            ),
            ("punches_sent", "Hole-punching probes sent", { $0.signaling?.counters.punchesSent ?? 0 }),
            (
                "authorizations_renewed", "Path authorizations renewed by the NMS (relayed paths outlive their first one)",
                { $0.signaling?.counters.authorizationsRenewed ?? 0 }
            ),
            (
                "authorization_renewals_refused", "Path authorization renewals the NMS refused",
                { $0.signaling?.counters.renewalsRefused ?? 0 }
            ),
            ("signaling_bad_datagrams", "Signaling or punch datagrams that did not check", { $0.signaling?.counters.badDatagrams ?? 0 }),
            ("dns_queries", "DNS queries to the resolver", { $0.resolver?.counters.queries ?? 0 }),
            ("dns_answered", "DNS answers NOERROR", { $0.resolver?.counters.answered ?? 0 }),
            ("dns_nxdomain", "DNS answers NXDOMAIN", { $0.resolver?.counters.nxdomain ?? 0 }),
            ("dns_servfail", "DNS answers SERVFAIL (status: by reason)", { $0.resolver?.counters.servfail ?? 0 }),
            ("dns_refused", "DNS answers REFUSED (no upstream)", { $0.resolver?.counters.refused ?? 0 }),
            ("dns_formerr", "Malformed DNS queries answered FORMERR", { $0.resolver?.counters.formerr ?? 0 }),
            ("dns_dropped", "DNS messages dropped (no header, oversized, bad TCP frame)", { $0.resolver?.counters.dropped ?? 0 }),
            ("dns_forwarded", "DNS queries forwarded upstream", { $0.resolver?.counters.forwarded ?? 0 }),
        ]
        let mirrored = figures.map { (key: $0.0, value: $0.2, counter: registry.makeCounter(descriptor: name($0.0, $0.1))) }
        startThread(named: "cy-metrics") { [weak self] in
            var last: [String: UInt64] = [:]
            // Per peer (by FQDN): bytes each way. A peer's series stays after it goes (it stops advancing).
            var peerCounters: [String: (tx: Counter, rx: Counter)] = [:]
            func peerCounter(_ fqdn: String) -> (tx: Counter, rx: Counter) {
                if let c = peerCounters[fqdn] { return c }
                let c = (
                    tx: registry.makeCounter(descriptor: name("peer_tx_bytes", "Bytes sent to the peer"), labels: [("peer", fqdn)]),
                    rx: registry.makeCounter(descriptor: name("peer_rx_bytes", "Bytes received from the peer"), labels: [("peer", fqdn)])
                )
                peerCounters[fqdn] = c
                return c
            }
            func advance(_ key: String, _ value: UInt64, _ counter: Counter) {
                let delta = value &- (last[key] ?? 0)
                if delta > 0, delta < UInt64(Int64.max) { counter.increment(by: Int64(delta)) }
                last[key] = value
            }
            while let self, self.stopping.withLock({ !self.stopped }) {
                let s = self.snapshot()
                for (k, v) in s.drops { if let c = dropCounters[k] { advance("drop." + k, v, c) } }
                threads.set(Int64(s.osThreads))
                if let p = s.process {
                    resident.set(Int64(p.residentBytes))
                    if let a = p.residentAnonymousBytes { anonymous.set(Int64(a)) }
                    cpu.set(p.cpuSeconds)
                    mallocInUse.set(Int64(p.mallocInUseBytes))
                    mallocHeld.set(Int64(p.mallocHeldBytes))
                    mallocFree.set(Int64(p.mallocFreeBytes))
                }
                for peer in s.peers {
                    let c = peerCounter(peer.fqdn)
                    advance("tx." + peer.fqdn, peer.txBytes, c.tx)
                    advance("rx." + peer.fqdn, peer.rxBytes, c.rx)
                }
                peersGauge.set(Int64(s.peers.filter { $0.handshakeAgeSeconds != nil }.count))
                registered.set(Int64(s.signaling?.state == "registered" ? 1 : 0))
                for m in mirrored { advance(m.key, m.value(s), m.counter) }
                self.stopping.withLock { if !self.stopped { self.stopping.wait(milliseconds: 1000) } }
            }
        }
    }
}

/// Reads a running daemon's status from its control socket (`cyphonic-node status`).
public func queryNodeStatus(path: String) throws -> NodeStatus {
    try JSONDecoder().decode(NodeStatus.self, from: Data(try nodeControl(path: path, "status").utf8))
}

/// Sends a command line (e.g. `forget NAME`) to a running daemon; returns its answer.
/// No daemon there is said plainly.
public func nodeControl(path: String, _ command: String) throws -> String {
    do { return String(decoding: try ControlSocketServer.request(path: path, command), as: UTF8.self) } catch let e as SystemError
        where e.errno == ENOENT || e.errno == ECONNREFUSED
    {
        throw PlainError(
            "no cyphonic-node answers at \(path) (not running, or another instance: give --tun NAME or --control SOCKET, as in its config)")
    }
}
