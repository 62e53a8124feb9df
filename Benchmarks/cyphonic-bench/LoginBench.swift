import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicCrypto
import CyphonicNode
import CyphonicSignaling
import CyphonicWire
import Foundation
import Logging

/// Logins per second against a real AS (UDP on loopback, SQLite on disk) in this process.
struct LoginBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logins",
        abstract: "AS logins per second: first logins (token + certificate issuance) and certificate logins, with 1 and 2 clients.")

    @Option(help: "Nodes to enrol (first logins) per client.") var nodes = 100
    @Option(help: "Certificate logins per client.") var logins = 300
    @Option(name: .customLong("token-iterations"), help: "PBKDF2 iterations for tokens (the AS default is \(PasswordHash.defaultIterations)).")
    var tokenIterations = PasswordHash.defaultIterations

    func run() throws {
        let path = NSTemporaryDirectory() + "cyphonic-bench-as-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let settings = try ASSettings(
            domain: try FQDN("cyphonic.internal"),
            pool: try AddressPool(ipv4: IPPrefix("198.18.0.0/16")!, ipv6: IPPrefix("2001:db8:c0ff:ee::/64")!))
        let dir = try ASDirectory.initialise(at: path, settings: settings)
        // The bench measures login throughput from one address: lift the abuse limits.
        let authority = try ASAuthority(
            directory: dir, limiter: RateLimiter(maxFailures: 1_000_000), tokenIterations: tokenIterations,
            maxPasswordChecksPerSecond: 1_000_000)
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        var limits = ASServerLimits()
        limits.handshakeGuard.perSourcePerSecond = 1_000_000
        limits.handshakeGuard.perSourceBurst = 1_000_000
        limits.handshakeGuard.totalPerSecond = 1_000_000
        limits.handshakeGuard.loadThresholdPerSecond = 1_000_000
        let server = ASServer(authority: authority, listen: [Endpoint("127.0.0.1:0")!], metrics: ASMetrics(), limits: limits, logger: logger)
        try server.start()
        defer { server.stop() }
        let endpoint = server.boundEndpoints[0]
        let client = ASClient(server: endpoint, caCertificate: dir.ca.certificate)
        print("AS logins over UDP loopback, SQLite WAL on \(NSTemporaryDirectory()), PBKDF2 \(tokenIterations) iterations")
        print("clients  kind                     logins   seconds   logins/s")
        for clients in [1, 2] {
            // Tickets first (operator work, not measured).
            let tickets = try (0..<clients).map { c in
                try (0..<nodes).map { i in try authority.addNode(name: "c\(clients)x\(c)n\(i)", group: nil) }
            }
            let keys = try (0..<clients).map { _ in try (0..<nodes).map { _ in try X25519PrivateKey() } }
            let certs = Locked([[UInt8]](repeating: [], count: clients))
            FileHandle.standardError.write(Data("measuring \(clients) client(s): first logins...\n".utf8))
            let first = try measure(clients: clients) { c in
                for i in 0..<nodes {
                    let p = try client.login(name: tickets[c][i].node.name, credential: .token(tickets[c][i].token), key: keys[c][i])
                    if i == 0 { certs.withLock { $0[c] = p.certificate } }
                }
                return nodes
            }
            report(clients, "token + issue certificate", first)
            FileHandle.standardError.write(Data("measuring \(clients) client(s): certificate logins...\n".utf8))
            let later = try measure(clients: clients) { c in
                let cert = certs.withLock { $0[c] }
                for _ in 0..<logins {
                    _ = try client.login(name: tickets[c][0].node.name, credential: .certificate(der: cert), key: keys[c][0])
                }
                return logins
            }
            report(clients, "certificate", later)
        }
    }

    func report(_ clients: Int, _ kind: String, _ r: (count: Int, seconds: Double)) {
        print(
            String(format: "%7d  ", clients) + kind.padding(toLength: 26, withPad: " ", startingAt: 0)
                + String(format: "%6d %9.2f %10.1f", r.count, r.seconds, Double(r.count) / r.seconds))
    }

    /// Runs `body` on `clients` threads at once; returns the total count and wall time.
    func measure(clients: Int, _ body: @escaping @Sendable (Int) throws -> Int) throws -> (count: Int, seconds: Double) {
        let group = DispatchGroup()
        let results = Locked([Result<Int, Error>]())
        let start = Date()
        for c in 0..<clients {
            group.enter()
            Thread {
                let r = Result { try body(c) }
                results.withLock { $0.append(r) }
                group.leave()
            }.start()
        }
        group.wait()
        let seconds = Date().timeIntervalSince(start)
        let total = try results.withLock { try $0.map { try $0.get() } }.reduce(0, +)
        return (total, seconds)
    }
}
