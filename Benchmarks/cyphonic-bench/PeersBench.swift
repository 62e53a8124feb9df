import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicNode
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import CyphonicWire
import Foundation

/// `cyphonic-bench peers` (issue 12, Fig. 8 beyond the paper): up to thousands of
/// simulated peers make real tunnel handshakes (Noise XX, certificates of the AS's CA,
/// cookie retries) with a running `cyphonic-node` over the underlay and keep their
/// sessions alive, while the responder's OS threads, resident memory and malloc figures
/// are read from its control socket at each checkpoint. One UDP socket per peer, as
/// separate hosts would have.
struct PeersBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peers",
        abstract: "Simulated peers with real handshakes against a running responder: its threads and memory per peer.")

    @Option(help: "Simulated peers to connect.") var count = 1000
    @Option(name: .customLong("as-dir"), help: "The AS data directory whose CA issues the simulated peers' certificates.")
    var asDir: String
    @Option(help: "The responder's underlay endpoint (HOST:PORT).") var responder: String
    @Option(name: .customLong("responder-name"), help: "The responder's FQDN (its certificate must name it).")
    var responderName = "responder.cyphonic.internal"
    @Option(help: "The responder's control socket (status: threads, memory, peers).") var control: String
    @Option(help: "The responder's process id: threads and RSS are read from /proc/PID/status (else from its status).")
    var pid: Int32?
    @Option(help: "Handshakes started per second, at most.") var rate = 200.0
    @Option(help: "Peer counts at which the responder is measured, comma-separated.") var checkpoints = "1,10,100,1000"
    @Option(name: .customLong("first-address"), help: "Virtual IPv4 of the first simulated peer (the next ones follow).")
    var firstAddress = "198.18.128.1"
    @Option(help: "Seconds to wait at each checkpoint before measuring (memory settles).") var settle = 2.0
    @Option(help: "Local address the peers' sockets bind to.") var bind = "0.0.0.0"
    @Option(help: "Write the checkpoints as CSV to this file.") var csv: String?

    func validate() throws {
        guard count > 0, rate > 0, settle >= 0 else { throw ValidationError("--count and --rate must be positive, --settle not negative") }
        guard Endpoint(responder) != nil else { throw ValidationError("--responder: HOST:PORT with a literal address, got '\(responder)'") }
        guard let a = IPAddress(firstAddress), a.isIPv4 else { throw ValidationError("--first-address: an IPv4 address, got '\(firstAddress)'") }
        guard IPAddress(bind) != nil else { throw ValidationError("--bind: an IP address, got '\(bind)'") }
        guard !parsedCheckpoints().isEmpty else { throw ValidationError("--checkpoints: comma-separated peer counts, got '\(checkpoints)'") }
    }

    func parsedCheckpoints() -> [Int] {
        checkpoints.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 >= 0 && $0 <= count }
            .sorted()
    }

    func run() throws {
        raiseDescriptorLimit(count + 64)
        let target = Endpoint(responder)!
        let directory = try ASDirectory.open(at: asDir)
        let verifier = try CertificateVerifier(trustAnchor: directory.ca.certificate)
        progress("issuing \(count) peer certificates from the CA in \(asDir)")
        let peers = try issue(ca: directory.ca, verifier: verifier)
        var rows: [[String]] = [measure(0)]
        var marks = parsedCheckpoints().filter { $0 > 0 }
        var sockets: [UDPSocket] = []
        defer { for s in sockets { s.close() } }
        let started = monotonicSeconds()
        var lastKeepalive = monotonicSeconds()
        for (i, peer) in peers.enumerated() {
            // Pace the handshakes (the responder's guard limits them per source and in total).
            let due = started + Double(i) / rate
            if monotonicSeconds() < due { Thread.sleep(forTimeInterval: due - monotonicSeconds()) }
            let socket = try UDPSocket(bind: Endpoint(address: IPAddress(bind)!, port: 0))
            try socket.setReceiveTimeout(milliseconds: 1000)
            sockets.append(socket)
            try connect(peer, socket: socket, to: target)
            if monotonicSeconds() - lastKeepalive >= 5 {
                try keepalives(peers.prefix(i + 1), sockets, target)
                lastKeepalive = monotonicSeconds()
            }
            if i + 1 == marks.first {
                marks.removeFirst()
                progress("\(i + 1) peers connected; measuring the responder in \(settle) s")
                try keepalives(peers.prefix(i + 1), sockets, target)
                Thread.sleep(forTimeInterval: settle)
                rows.append(measure(i + 1))
                lastKeepalive = monotonicSeconds()
            }
        }
        let header = [
            "peers", "responder_peers", "threads", "own_threads", "pipeline_threads", "rss_kib", "malloc_in_use_kib", "malloc_held_kib",
            "rss_anon_kib",
        ]
        print("responder \(responderName) at \(responder): simulated peers with real handshakes (one socket each)")
        print(header.joined(separator: "  "))
        for r in rows { print(r.joined(separator: "  ")) }
        if rows.count > 2, let first = rows.first(where: { $0[0] != "0" }), let last = rows.last,
            let p0 = Double(first[1]), let p1 = Double(last[1]), let r0 = Double(first[5]), let r1 = Double(last[5]), p1 > p0
        {
            print(String(format: "RSS per added peer: %.1f KiB (from %d to %d peers)", (r1 - r0) / (p1 - p0), Int(p0), Int(p1)))
        }
        if let csv {
            try ((header.joined(separator: ",") + "\n") + rows.map { $0.joined(separator: ",") + "\n" }.joined())
                .write(toFile: csv, atomically: true, encoding: .utf8)
        }
    }

    /// One handshake: message 1 (again with a cookie if asked), message 2, message 3, then
    /// the responder's confirming keepalive on the new session (a refused peer gets none).
    /// Lost datagrams are retried with a fresh handshake, five times at most.
    func connect(_ peer: SimulatedPeer, socket: UDPSocket, to target: Endpoint) throws {
        var buffer = [UInt8](repeating: 0, count: 2048)
        for attempt in 1...5 {
            let fresh = SimulatedPeer(key: peer.key, certificate: peer.certificate, verifier: peer.verifier, localIndex: peer.localIndex)
            let p = attempt == 1 ? peer : fresh
            try socket.send(p.initiation(), to: target)
            var sentThird = false
            while true {
                guard let (n, _) = try? buffer.withUnsafeMutableBytes({ try socket.receive(into: $0) }) else { break }
                // The confirmation: a capsule on the new session (to our index).
                if sentThird, n >= Header.size, buffer[1] == MessageType.capsule.rawValue,
                    UInt32(buffer[4]) << 24 | UInt32(buffer[5]) << 16 | UInt32(buffer[6]) << 8 | UInt32(buffer[7]) == peer.localIndex
                {
                    if attempt > 1 { peer.adopt(p) }
                    return
                }
                if case .send(let next) = try p.handle(Array(buffer[0..<n]), responder: responderName) {
                    try socket.send(next, to: target)
                    sentThird = p.remoteIndex != nil
                }
            }
            progress(
                "peer \(peer.certificate.commonName ?? "?"): \(sentThird ? "no confirmation after message 3" : "no answer"), attempt \(attempt) of 5")
        }
        throw ValidationError(
            "the responder at \(target) did not confirm a session with \(peer.certificate.commonName ?? "?") (does it accept unknown peers, and this many handshakes per source? see lab/eval.sh)"
        )
    }

    func keepalives(_ peers: ArraySlice<SimulatedPeer>, _ sockets: [UDPSocket], _ target: Endpoint) throws {
        for (peer, socket) in zip(peers, sockets) { if let k = try peer.keepalive() { try socket.send(k, to: target) } }
    }

    /// The responder's figures now: [checkpoint, its peers with a session, threads, own
    /// threads, pipeline threads, RSS, malloc in use, held, RSS's anonymous part]. Threads
    /// and memory from /proc first (the status request itself runs on a thread of the
    /// responder).
    func measure(_ checkpoint: Int) -> [String] {
        let proc = pid.flatMap { ProcessResources.memoryAndThreads(of: $0) }
        // The data plane's threads (cy-tun-reader, cy-udp-receiver, cy-crypto-N, cy-control;
        // cy-single) are the paper's Fig. 8; "own" threads are all but libdispatch's worker
        // pool (named …qos…), which the Swift runtime grows and shrinks by itself.
        var pipelineThreads: Int?
        var ownThreads: Int?
        if let pid, let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") {
            let names = tasks.map { ((try? String(contentsOfFile: "/proc/\(pid)/task/\($0)/comm", encoding: .utf8)) ?? "") }
            pipelineThreads = names.filter(Pipeline.ThreadName.isPipeline).count
            ownThreads = names.filter { !$0.contains("qos") }.count
        }
        guard let bytes = try? ControlSocketServer.request(path: control, "status"),
            let s = try? JSONDecoder().decode(NodeStatus.self, from: Data(bytes)), let p = s.process
        else {
            progress("no status from \(control)")
            return ["\(checkpoint)", "?", "?", "?", "?", "?", "?", "?", "?"]
        }
        let live = s.peers.filter { $0.handshakeAgeSeconds != nil }.count
        return [
            "\(checkpoint)", "\(live)", "\(proc?.threads ?? s.osThreads)", ownThreads.map(String.init) ?? "?",
            pipelineThreads.map(String.init) ?? "?",
            "\((proc?.residentBytes ?? p.residentBytes) / 1024)", "\(p.mallocInUseBytes / 1024)",
            "\(p.mallocHeldBytes / 1024)", "\((proc?.anonymousBytes ?? p.residentAnonymousBytes ?? 0) / 1024)",
        ]
    }

    func issue(ca: CertificateAuthority, verifier: CertificateVerifier) throws -> [SimulatedPeer] {
        let base = IPAddress(firstAddress)!.bytes
        let first = UInt32(base[0]) << 24 | UInt32(base[1]) << 16 | UInt32(base[2]) << 8 | UInt32(base[3])
        let now = unixNow()
        return try (0..<count).map { i in
            let a = first + UInt32(i)
            let key = try X25519PrivateKey()
            let template = CertificateTemplate.node(
                fqdn: try FQDN(String(format: "sim%05d.\(responderName.split(separator: ".", maxSplits: 1).last ?? "cyphonic.internal")", i)),
                addresses: [IPAddress.v4(UInt8(a >> 24), UInt8(a >> 16 & 0xff), UInt8(a >> 8 & 0xff), UInt8(a & 0xff))],
                serial: UInt64(1 << 40) + UInt64(i), validFrom: now - 300, days: 1)
            return SimulatedPeer(
                key: key, certificate: try ca.issue(template, publicKey: key.publicKey), verifier: verifier, localIndex: 0x5100_0000 + UInt32(i))
        }
    }

    func raiseDescriptorLimit(_ n: Int) {
        var l = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &l)
        if l.rlim_cur < rlim_t(n) {
            l.rlim_cur = min(rlim_t(n), l.rlim_max)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &l)
        }
    }

    func progress(_ s: String) { FileHandle.standardError.write(Data("bench: \(s)\n".utf8)) }
}
