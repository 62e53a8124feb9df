import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicCrypto
import CyphonicNMS
import CyphonicPKI
import CyphonicPosix
import CyphonicPostgres
import CyphonicService
import CyphonicSignaling
import CyphonicWire
import Foundation
import NIOCore
import PostgresNIO

/// NMS capacity (issues 10, 15): real `nms-server` processes on loopback — one, or
/// `--replicas` sharing a PostgreSQL directory — `--nodes` simulated nodes registered
/// over real UDP with real Noise sessions and certificates of a real AS's CA (node i with
/// replica i mod N: sharded), then direction requests between random pairs (each
/// confirmed by its simulated responder, as a node does; with N replicas (N-1)/N of them
/// cross replicas) with `--window` in flight. Reports registrations/s, directions
/// answered/s, each NMS's resident memory per registered node (its RSS before and after,
/// from /proc) and, with replicas, PostgreSQL's load: transactions/s, WAL bytes/s and
/// the directory's size per node.
struct NMSBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nms",
        abstract: "NMS capacity: registrations/s, direction requests answered/s, memory per registered node (a real nms-server process).")

    @Option(help: "Simulated nodes to register.") var nodes = 100_000
    @Option(help: "Direction requests to complete.") var directions = 200_000
    @Option(help: "Requests in flight at once.") var window = 512
    @Option(name: .customLong("nms-server"), help: "The nms-server binary (default: next to this one).") var nmsServer: String?
    @Option(help: "UDP port for the NMS on 127.0.0.1 (the probe port is the next one).") var port = 45_020
    @Option(name: .customLong("receive-threads"), help: "nms-server --receive-threads (0: one per CPU).") var receiveThreads = 0
    @Option(help: "NMS replicas sharing --database (ports PORT, PORT+10, ...).") var replicas = 1
    @Option(
        help:
            "PostgreSQL database the replicas share (postgresql://...); default with --replicas > 1: a new database on the cluster CYPHONIC_TEST_POSTGRES names (scripts/with-postgres.sh), dropped at the end."
    )
    var database: String?
    @Option(
        name: .customLong("directory-preload"),
        help:
            "With replicas: simulated registrations added to the shared directory (entries of replica nms1, as large as real ones) before the directions, so lookups run against a directory of that size."
    )
    var directoryPreload = 0

    func run() throws {
        guard (1...8).contains(replicas) else { throw ValidationError("--replicas: 1 to 8") }
        let work = NSTemporaryDirectory() + "cyphonic-bench-nms-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: work) }
        progress("AS directory and the NMS bundle in \(work)")
        let settings = try ASSettings(
            domain: try FQDN("cyphonic.internal"),
            pool: try AddressPool(ipv4: IPPrefix("198.18.0.0/16")!, ipv6: IPPrefix("2001:db8:c0ff:ee::/64")!))
        let directory = try ASDirectory.initialise(at: work + "/as", settings: settings)
        let authority = try ASAuthority(directory: directory)
        let bundle = try authority.addService(role: .nms, name: try FQDN("nms.cyphonic.internal"))
        try writeBundle(bundle, ca: directory.ca.certificate, to: work + "/nms")
        let binary = nmsServer ?? (URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path + "/nms-server")
        let shared = try BenchDatabase(url: database, needed: replicas > 1)
        defer { shared?.drop() }
        let endpoints = (0..<replicas).map { Endpoint(address: IPAddress("127.0.0.1")!, port: UInt16(port + 10 * $0)) }
        let processes = try (0..<replicas).map { try startNMS(binary, work: work, replica: $0, database: shared?.url) }
        defer {
            for p in processes {
                p.terminate()
                p.waitUntilExit()
            }
        }
        // Ctrl-C or SIGTERM: the NMS processes, the work directory and a database of ours go too.
        let interrupted = Interrupted(processes: processes, work: work, database: shared)
        let rssBefore = processes.map { rss($0.processIdentifier) }

        progress("issuing \(nodes) node certificates")
        let verifier = try CertificateVerifier(trustAnchor: directory.ca.certificate)
        let sims = try issue(nodes, ca: directory.ca, verifier: verifier)
        let nmsOf = { (i: Int) in endpoints[i % endpoints.count] }

        let socket = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        defer { socket.close() }
        try socket.setReceiveBufferSize(8 << 20)
        try socket.setReceiveTimeout(milliseconds: 1000)
        progress("registering \(nodes) nodes with \(replicas) NMS (\(window) handshakes in flight)")
        let pgBefore = try shared?.load()
        let registrationStart = monotonicSeconds()
        try register(sims, nms: nmsOf, socket: socket)
        if let shared {
            progress("waiting for the shared directory to hold every node")
            try shared.waitForEntries(nodes)
        }
        let registrationSeconds = monotonicSeconds() - registrationStart
        if let shared, directoryPreload > 0 {
            progress("adding \(directoryPreload) simulated registrations to the shared directory")
            try shared.preload(directoryPreload)
        }
        let pgRegistered = try shared?.load()
        Thread.sleep(forTimeInterval: 1)
        let rssAfter = processes.map { rss($0.processIdentifier) }

        progress("\(directions) direction requests between random pairs (\(window) in flight)")
        try socket.setReceiveTimeout(milliseconds: 200)
        let (done, refused, lost, seconds) = try direct(sims, nms: nmsOf, socket: socket)
        let pgAfter = try shared?.load()

        interrupted.cancel()
        print(
            "NMS capacity: \(replicas) nms-server process(es) on 127.0.0.1\(replicas > 1 ? " sharing one PostgreSQL directory (nodes sharded i mod \(replicas))" : ""), \(nodes) simulated nodes over UDP loopback, Noise XX sessions"
        )
        print(String(format: "registrations   %8d in %6.1f s   %8.0f /s", nodes, registrationSeconds, Double(nodes) / registrationSeconds))
        print(
            String(
                format:
                    "directions      %8d in %6.1f s   %8.0f /s answered (request -> responder confirms -> initiator directed), %d refused, %d lost%@",
                done, seconds, Double(done) / seconds, refused, lost,
                replicas > 1 ? String(format: "; %.0f %% across replicas", 100 * Double(replicas - 1) / Double(replicas)) : ""))
        for k in 0..<replicas {
            let perNode = Double(rssAfter[k] - rssBefore[k]) * 1024 / Double(nodes / replicas)
            print(
                String(
                    format: "memory nms%d     RSS %.1f MiB before, %.1f MiB with %d nodes: %.0f bytes per registered node", k + 1,
                    Double(rssBefore[k]) / 1024, Double(rssAfter[k]) / 1024, nodes / replicas, perNode))
        }
        if let pgBefore, let pgRegistered, let pgAfter, let shared {
            let size = try shared.directoryBytes()
            print(
                String(
                    format: "postgresql      registration: %.0f transactions/s, %.1f MiB WAL/s; directions: %.0f transactions/s, %.1f MiB WAL/s",
                    Double(pgRegistered.transactions - pgBefore.transactions) / registrationSeconds,
                    Double(pgRegistered.walBytes - pgBefore.walBytes) / registrationSeconds / 1_048_576,
                    Double(pgAfter.transactions - pgRegistered.transactions) / seconds,
                    Double(pgAfter.walBytes - pgRegistered.walBytes) / seconds / 1_048_576))
            let entries = nodes + directoryPreload
            print(
                String(
                    format: "directory       %d entries, %.1f MiB in nms_nodes (table and index): %.0f bytes per entry", entries,
                    Double(size) / 1_048_576, Double(size) / Double(entries)))
        }
    }

    func progress(_ s: String) { FileHandle.standardError.write(Data("bench: \(s)\n".utf8)) }

    func writeBundle(_ b: ServiceBundle, ca: Certificate, to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let base = dir + "/nms.cyphonic.internal"
        try KeyFiles.pem(b.key).write(toFile: base + ".key", atomically: true, encoding: .utf8)
        try b.certificate.pemString.write(toFile: base + ".pem", atomically: true, encoding: .utf8)
        try KeyFiles.pem(b.signing!.key).write(toFile: base + ".sign.key", atomically: true, encoding: .utf8)
        try b.signing!.certificate.pemString.write(toFile: base + ".sign.pem", atomically: true, encoding: .utf8)
        try ca.pemString.write(toFile: dir + "/ca.pem", atomically: true, encoding: .utf8)
    }

    func startNMS(_ binary: String, work: String, replica k: Int, database: String?) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        let base = port + 10 * k
        let control = work + "/nms\(k).sock"
        p.arguments =
            [
                "serve", "--bundle", work + "/nms", "--listen", "127.0.0.1:\(base)", "--probe-listen", "127.0.0.1:\(base + 1)",
                "--metrics", "", "--control", control, "--log-level", "warning", "--keepalive", "3600",
                "--max-nodes", String(nodes + 1000), "--max-pending-handshakes", String(4 * window), "--direction-timeout", "10000",
                "--receive-threads", String(receiveThreads), "--handshake-load-threshold", "1000000", "--handshakes-per-source", "1000000",
                "--handshakes-per-second", "1000000",
            ] + (database.map { ["--database", $0, "--replica", "nms\(k + 1)"] } ?? [])
        try p.run()
        for _ in 0..<100 where !ControlSocketClient.answers(control) { Thread.sleep(forTimeInterval: 0.05) }
        guard p.isRunning else { throw ValidationError("nms-server exited; run it by hand to see why: \(binary)") }
        return p
    }

    /// Resident memory of process `pid` in KiB.
    func rss(_ pid: Int32) -> Int { Int((ProcessResources.memoryAndThreads(of: pid)?.residentBytes ?? 0) / 1024) }

    /// Node keys and certificates, on every core.
    func issue(_ count: Int, ca: CertificateAuthority, verifier: CertificateVerifier) throws -> [SimulatedNode] {
        let out = Locked([SimulatedNode?](repeating: nil, count: count))
        let failed = Locked<Error?>(nil)
        let now = unixNow()
        DispatchQueue.concurrentPerform(iterations: 8) { part in
            for i in stride(from: part, to: count, by: 8) {
                do {
                    let key = try X25519PrivateKey()
                    let template = CertificateTemplate.node(
                        fqdn: try FQDN(String(format: "n%06d.cyphonic.internal", i)),
                        addresses: [
                            IPAddress.v4(198, 18, UInt8(i >> 8 & 0xff), UInt8(i & 0xff)),
                            IPAddress("2001:db8:c0ff:ee::\(String(i >> 16, radix: 16)):\(String(i & 0xffff, radix: 16))")!,
                        ],
                        serial: UInt64(i + 1), validFrom: now - 300, days: 1)
                    let node = SimulatedNode(key: key, certificate: try ca.issue(template, publicKey: key.publicKey), verifier: verifier)
                    out.withLock { $0[i] = node }
                } catch {
                    failed.withLock { $0 = error }
                }
                if i % 20_000 == 0, i > 0 { progress("  \(i) certificates") }
            }
        }
        if let e = failed.withLock({ $0 }) { throw e }
        return out.withLock { $0.map { $0! } }
    }

    /// Registers every node: a window of handshakes in flight, each answered datagram
    /// moved on to its next step; lost ones are started again.
    func register(_ sims: [SimulatedNode], nms: (Int) -> Endpoint, socket: UDPSocket) throws {
        var byIndex: [UInt32: Int] = [:]
        var sentAt: [Int: Double] = [:]
        var next = 0
        var done = 0
        var buffer = [UInt8](repeating: 0, count: 65_536)
        func start(_ i: Int) throws {
            let m1 = try sims[i].initiation()
            byIndex[sims[i].localIndex] = i
            sentAt[i] = monotonicSeconds()
            try socket.send(m1, to: nms(i))
        }
        while done < sims.count {
            while sentAt.count < window, next < sims.count {
                try start(next)
                next += 1
            }
            guard let (received, h) = try receive(socket, &buffer) else {
                // Lost on the way (a full socket buffer): start those handshakes again.
                let now = monotonicSeconds()
                for (i, t) in sentAt where now - t > 1 { try start(i) }
                continue
            }
            guard let i = byIndex[h.receiverIndex] else { continue }
            let node = sims[i]
            switch h.type {
            case .handshakeResponse:
                try socket.send(try node.completion(response: received, localEndpoints: []), to: nms(i))
                byIndex[node.localIndex] = i
            case .signaling:
                guard case .registrationAck = try node.open(received).body else { throw ValidationError("\(node.fqdn) refused") }
                sentAt.removeValue(forKey: i)
                done += 1
                if done % 20_000 == 0 { progress("  \(done) registered") }
            default:
                continue
            }
        }
    }

    /// The next datagram with a readable header; nil when the receive timeout passed.
    func receive(_ socket: UDPSocket, _ buffer: inout [UInt8]) throws -> ([UInt8], Header)? {
        while true {
            let received: [UInt8]
            do {
                let (n, _) = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
                received = Array(buffer[0..<n])
            } catch let e as SystemError where e.wouldBlock {
                return nil
            }
            if let h = try? received.withUnsafeBytes({ try Header.decode($0) }) { return (received, h) }
        }
    }

    /// Direction requests between random pairs; every responder confirms.
    func direct(_ sims: [SimulatedNode], nms: (Int) -> Endpoint, socket: UDPSocket) throws -> (done: Int, refused: Int, lost: Int, seconds: Double) {
        var byIndex: [UInt32: Int] = [:]
        for (i, n) in sims.enumerated() { byIndex[n.localIndex] = i }
        let names = try sims.map { try FQDN($0.fqdn) }
        var inFlight = 0
        var sent = 0
        var done = 0
        var refused = 0
        var lost = 0
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var rng = SystemRandomNumberGenerator()
        let start = monotonicSeconds()
        var lastProgress = start
        while done + refused + lost < directions {
            while inFlight < window, sent < directions {
                let a = Int.random(in: 0..<sims.count, using: &rng)
                var b = Int.random(in: 0..<sims.count, using: &rng)
                if b == a { b = (b + 1) % sims.count }
                try socket.send(try sims[a].seal(.directionRequest(target: names[b])).datagram, to: nms(a))
                inFlight += 1
                sent += 1
            }
            guard let (received, h) = try receive(socket, &buffer) else {
                // Lost on the way (a full socket buffer): count them as such and go on.
                lost += inFlight
                inFlight = 0
                continue
            }
            guard let i = byIndex[h.receiverIndex],
                let message = try? sims[i].open(received)
            else { continue }
            switch message.body {
            case .routeDirection(let d) where d.role == .responder:
                let confirm = RouteDirectionConfirmation(pathID: d.pathID, status: .ok, localEndpoints: [])
                try socket.send(try sims[i].seal(.routeDirectionConfirmation(confirm), transactionID: message.transactionID), to: nms(i))
            case .routeDirection:
                done += 1
                inFlight -= 1
            case .error:
                refused += 1
                inFlight -= 1
            default:
                continue
            }
            let now = monotonicSeconds()
            if now - lastProgress >= 2 {
                lastProgress = now
                progress("  \(done) directions, \(Int(Double(done) / (now - start)))/s")
            }
        }
        return (done, refused, lost, monotonicSeconds() - start)
    }
}

/// Whether a daemon answers on its control socket.
enum ControlSocketClient {
    static func answers(_ path: String) -> Bool { (try? ControlSocketServer.request(path: path, "status", timeoutSeconds: 1))?.isEmpty == false }
}

/// The PostgreSQL database of a replicated bench run: the one `--database` names, or a
/// new one on the cluster `CYPHONIC_TEST_POSTGRES` names (dropped at the end); and
/// PostgreSQL's own figures of its load.
final class BenchDatabase: @unchecked Sendable {
    let url: String
    let target: PostgresTarget
    private let admin: PostgresTarget?
    private let connection: BlockingPostgresConnection

    init?(url: String?, needed: Bool) throws {
        guard needed || url != nil else { return nil }
        if let url {
            self.url = url
            admin = nil
        } else {
            guard let env = ProcessInfo.processInfo.environment["CYPHONIC_TEST_POSTGRES"] else {
                throw ValidationError("--replicas > 1 needs --database (or run under scripts/with-postgres.sh)")
            }
            let a = try PostgresTarget(url: env)
            let name = "bench_nms_\(getpid())"
            try BlockingPostgresConnection(a).run("CREATE DATABASE \(name)")
            self.url = "postgresql://\(a.user)@/\(name)?host=\(a.socketDirectory ?? "/run/postgresql")&port=\(a.port)"
            admin = a
        }
        target = try PostgresTarget(url: self.url)
        connection = try BlockingPostgresConnection(target)
    }

    func drop() {
        connection.close()
        guard let admin else { return }
        _ = try? BlockingPostgresConnection(admin).run("DROP DATABASE IF EXISTS \(target.database) WITH (FORCE)")
    }

    /// Transactions committed or rolled back in the database, and the WAL position.
    func load() throws -> (transactions: Int64, walBytes: Int64) {
        let row = try connection.run(
            """
            SELECT (xact_commit + xact_rollback)::int8, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8
            FROM pg_stat_database WHERE datname = current_database()
            """
        ).rows.first
        guard let row else { return (0, 0) }
        return try row.decode((Int64, Int64).self)
    }

    func waitForEntries(_ count: Int) throws {
        let end = monotonicSeconds() + 120
        while monotonicSeconds() < end {
            let n = try connection.run("SELECT COUNT(*)::int8 FROM nms_nodes").rows.first.map { try $0.decode(Int64.self) } ?? 0
            if n >= Int64(count) { return }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw ValidationError("the shared directory did not reach \(count) entries in 120 s")
    }

    /// `count` more entries of replica nms1, each a copy of a real one under another name.
    func preload(_ count: Int) throws {
        guard let row = try connection.run("SELECT record FROM nms_nodes LIMIT 1").rows.first else { return }
        let record = try row.decode(ByteBuffer.self)
        var from = 0
        while from < count {
            let to = min(count, from + 50_000)
            var binds = PostgresBindings()
            binds.append(record)
            binds.append(Int64(from))
            binds.append(Int64(to - 1))
            try connection.run(
                """
                INSERT INTO nms_nodes(fqdn, replica, record, updated)
                SELECT 'p' || g || '.cyphonic.internal', 'nms1', $1, 0 FROM generate_series($2::int8, $3::int8) g
                ON CONFLICT(fqdn) DO NOTHING
                """, binds)
            from = to
        }
    }

    func directoryBytes() throws -> Int64 {
        try connection.run("SELECT pg_total_relation_size('nms_nodes')::int8").rows.first.map { try $0.decode(Int64.self) } ?? 0
    }
}

/// Cleans up after the NMS bench when it is interrupted (SIGINT, SIGTERM): stops its
/// nms-server processes, removes its directory and drops a database it made, then exits.
final class Interrupted: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []

    init(processes: [Process], work: String, database: BenchDatabase?) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                for p in processes where p.isRunning { p.terminate() }
                for p in processes { p.waitUntilExit() }
                database?.drop()
                try? FileManager.default.removeItem(atPath: work)
                FileHandle.standardError.write(Data("bench: interrupted; its processes and files removed\n".utf8))
                exit(130)
            }
            source.resume()
            sources.append(source)
        }
    }

    func cancel() { sources.forEach { $0.cancel() } }
}
