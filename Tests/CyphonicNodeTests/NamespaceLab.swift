import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicTestSupport
import Foundation
import Testing

/// Two (or three) network namespaces joined by veth pairs, certificates from a test CA,
/// and `cyphonic-node` daemons started in them. Everything it creates — namespaces,
/// processes, files — is removed by `tearDown()`, which tests call in `defer`.
///
///     ns A                               ns B                              ns C
///     a0 198.19.<n>.1/24  ───────────   b0 198.19.<n>.2/24
///     cyph0 198.18.0.1                   cyph0 198.18.0.2
///                                         b1 198.19.<n+1>.2/24  ─────────  c0 198.19.<n+1>.1/24
///                                                                           cyph0 198.18.0.3
///                                         b2 198.19.<n+2>.2/24  ─────────  d0 198.19.<n+2>.1/24 (ns D)
/// Every namespace suite nests in this one, so namespace tests run one at a time
/// (each measures throughput or timing on 2 cores: concurrent labs would skew them).
@Suite(.serialized) enum NamespaceSuites {}

final class NamespaceLab {
    let tag: String
    let dir: String
    let ca: CertificateAuthority
    let net: Int
    var processes: [String: Process] = [:]
    var background: [Process] = []
    var namespaces: [String] = []
    let now = unixNow()

    static var isRoot: Bool { getuid() == 0 }
    private static let counter = Locked(0)

    init(withC: Bool = false, withD: Bool = false) throws {
        // Unique among the labs of this process (a counter), and per process (the pid).
        let n = Self.counter.withLock { c -> Int in
            c += 1
            return c
        }
        tag = "cyt\(getpid() % 10000)x\(n % 100)"
        net = 100 + (n % 38) * 4
        dir = NSTemporaryDirectory() + "cyphonic-lab-\(tag)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        ca = try CertificateAuthority.create(name: "Lab CA", key: try Ed25519PrivateKey(), serial: 1, validFrom: now - 3600)
        try ca.certificate.pemString.write(toFile: dir + "/ca.pem", atomically: true, encoding: .utf8)
        do {
            for n in ["a", "b"] + (withC ? ["c"] : []) + (withD ? ["d"] : []) {
                try sh("ip netns add \(tag)-\(n)")
                namespaces.append("\(tag)-\(n)")
                try sh("ip -n \(tag)-\(n) link set lo up")
            }
            try sh("ip link add \(tag)a0 netns \(tag)-a type veth peer name \(tag)b0 netns \(tag)-b")
            try sh("ip -n \(tag)-a addr add 198.19.\(net).1/24 dev \(tag)a0")
            try sh("ip -n \(tag)-b addr add 198.19.\(net).2/24 dev \(tag)b0")
            try sh("ip -n \(tag)-a link set \(tag)a0 up")
            try sh("ip -n \(tag)-b link set \(tag)b0 up")
            if withC {
                try sh("ip link add \(tag)c0 netns \(tag)-c type veth peer name \(tag)b1 netns \(tag)-b")
                try sh("ip -n \(tag)-c addr add 198.19.\(net + 1).1/24 dev \(tag)c0")
                try sh("ip -n \(tag)-b addr add 198.19.\(net + 1).2/24 dev \(tag)b1")
                try sh("ip -n \(tag)-c link set \(tag)c0 up")
                try sh("ip -n \(tag)-b link set \(tag)b1 up")
            }
            if withD {
                try sh("ip link add \(tag)d0 netns \(tag)-d type veth peer name \(tag)b2 netns \(tag)-b")
                try sh("ip -n \(tag)-d addr add 198.19.\(net + 2).1/24 dev \(tag)d0")
                try sh("ip -n \(tag)-b addr add 198.19.\(net + 2).2/24 dev \(tag)b2")
                try sh("ip -n \(tag)-d link set \(tag)d0 up")
                try sh("ip -n \(tag)-b link set \(tag)b2 up")
            }
        } catch {
            tearDown()
            throw error
        }
    }

    func ns(_ n: String) -> String { "\(tag)-\(n)" }
    var underlayA: String { "198.19.\(net).1" }
    var underlayB: String { "198.19.\(net).2" }
    var underlayBFromC: String { "198.19.\(net + 1).2" }
    var underlayC: String { "198.19.\(net + 1).1" }
    var underlayD: String { "198.19.\(net + 2).1" }
    var underlayBFromD: String { "198.19.\(net + 2).2" }

    /// Issues a node certificate and writes key, certificate and CA into `dir/name/`.
    @discardableResult
    func enrol(
        _ name: String, index: Int, ca issuer: CertificateAuthority? = nil, validFrom: Int64? = nil, days: Int = 30,
        serial: UInt64? = nil, key given: X25519PrivateKey? = nil
    ) throws -> Certificate {
        let key = try given ?? X25519PrivateKey()
        let cert = try (issuer ?? ca).issue(
            .node(
                fqdn: try FQDN("\(name).cyphonic.internal"),
                addresses: [IPAddress("198.18.0.\(index)")!, IPAddress("2001:db8:c0ff:ee::\(index)")!],
                serial: serial ?? CertificateAuthority.randomSerial(), validFrom: validFrom ?? now - 60, days: days),
            publicKey: key.publicKey)
        let d = dir + "/" + name
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(
            atPath: d + "/node.key", contents: Data(try KeyFiles.pem(key).utf8),
            attributes: [.posixPermissions: 0o600])
        try cert.pemString.write(toFile: d + "/node.pem", atomically: true, encoding: .utf8)
        try ca.certificate.pemString.write(toFile: d + "/ca.pem", atomically: true, encoding: .utf8)
        return cert
    }

    /// Writes `dir/name.json` for a node whose files `enrol` wrote.
    func configure(_ name: String, peers: [(String, String)] = [], extra: [String: Any] = [:]) throws {
        var json: [String: Any] = [
            "stateDir": dir + "/" + name, "control": dir + "/\(name).sock", "metrics": "",
            "logLevel": "debug",
            "peers": peers.map { ["fqdn": "\($0.0).cyphonic.internal", "endpoint": $0.1] },
        ]
        for (k, v) in extra { json[k] = v }
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted]).write(to: URL(fileURLWithPath: dir + "/\(name).json"))
    }

    /// Starts `cyphonic-node run` for `name` inside namespace `n`.
    func start(_ name: String, in n: String, arguments: [String] = []) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/sbin/ip")
        p.arguments = ["netns", "exec", ns(n), Self.product("cyphonic-node"), "run", "--config", dir + "/\(name).json"] + arguments
        let log = dir + "/\(name).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        processes[name] = p
    }

    /// Runs `cyphonic-node run` for `name` in namespace `n` to completion (for starts
    /// that must fail), bounded by `timeout`.
    func runToExit(_ name: String, in n: String) throws -> (status: Int32, output: String) {
        try run(
            "/sbin/ip",
            [
                "netns", "exec", ns(n), "timeout", "20", Self.product("cyphonic-node"), "run", "--config",
                dir + "/\(name).json",
            ])
    }

    /// Sends SIGTERM and returns the exit status.
    @discardableResult
    func stop(_ name: String) -> Int32 {
        guard let p = processes.removeValue(forKey: name) else { return -1 }
        kill(p.processIdentifier, SIGTERM)
        for _ in 0..<100 where p.isRunning { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        return p.terminationStatus
    }

    func log(_ name: String) -> String { (try? String(contentsOfFile: dir + "/\(name).log", encoding: .utf8)) ?? "" }

    /// The daemon's status via `cyphonic-node status --json`.
    func status(_ name: String) throws -> [String: Any] {
        let r = try run(Self.product("cyphonic-node"), ["status", "--json", "--control", dir + "/\(name).sock"])
        return (try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]) ?? [:]
    }

    func drops(_ name: String, _ reason: String) throws -> Int {
        ((try status(name))["drops"] as? [String: Any])?[reason] as? Int ?? 0
    }

    /// Waits until `name` has a session with a peer named `peer` (FQDN prefix).
    func waitForSession(_ name: String, peer: String, seconds: Double = 10) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let peers = (try? status(name))?["peers"] as? [[String: Any]] ?? []
            if peers.contains(where: { ($0["fqdn"] as? String)?.hasPrefix(peer) == true && $0["handshakeAgeSeconds"] != nil }) {
                return true
            }
            usleep(100_000)
        }
        return false
    }

    /// A real `as-server`, initialised in the lab directory and serving in namespace `n`
    /// on its underlay address: its data directory and endpoint.
    func startAS(in n: String, address: String, metricsPort: Int) throws -> (data: String, endpoint: String) {
        let data = dir + "/as"
        try sh("\(Self.product("as-server")) init --data-dir \(data) --domain cyphonic.internal >/dev/null")
        let endpoint = "\(address):4501"
        try spawn(n, "\(Self.product("as-server")) serve --data-dir \(data) --listen \(endpoint) --metrics 127.0.0.1:\(metricsPort)")
        usleep(800_000)
        return (data, endpoint)
    }

    /// `as-server node add NAME`: its token and the line describing the node.
    func addNode(_ name: String, data: String) throws -> (token: String, line: String) {
        let r = try run(Self.product("as-server"), ["node", "add", name, "--data-dir", data])
        let lines = r.output.split(separator: "\n").map(String.init)
        guard r.status == 0, let token = lines.last else { throw LabError.command("node add \(name)", r.output) }
        return (token, lines.first ?? "")
    }

    /// Adds node `name` to the AS and enrols it with `cyphonic-node enroll` from namespace
    /// `name` (state in the lab directory); the command's status and output.
    func enrolThroughAS(_ name: String, data: String, endpoint: String) throws -> (status: Int32, output: String) {
        let token = try addNode(name, data: data).token
        return try exec(
            name, "\(Self.product("cyphonic-node")) enroll --as \(endpoint) --ca \(data)/ca.pem --token \(token) --state-dir \(dir)/\(name)")
    }

    /// Runs a command in namespace `n`.
    @discardableResult
    func exec(_ n: String, _ command: String) throws -> (status: Int32, output: String) {
        // Every command is bounded in time: a hang is a failure, never a stuck test.
        try run("/bin/sh", ["-c", "ip netns exec \(ns(n)) timeout 60 \(command)"])
    }

    /// Starts a long-running command in namespace `n` without waiting for it (no pipes
    /// attached); `tearDown` kills whatever is left in the namespace.
    @discardableResult
    func spawn(_ n: String, _ command: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/sbin/ip")
        p.arguments = ["netns", "exec", ns(n)] + command.split(separator: " ").map(String.init)
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        background.append(p)
        return p
    }

    func sh(_ command: String) throws {
        let r = try run("/bin/sh", ["-c", command])
        guard r.status == 0 else { throw LabError.command(command, r.output) }
    }

    func run(_ path: String, _ args: [String]) throws -> (status: Int32, output: String) { try runProcess(path, args) }

    func tearDown() {
        for name in Array(processes.keys) { stop(name) }
        for p in background where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for n in namespaces.reversed() {
            // Whatever still runs in the namespace (an iperf3 server, ...) goes too.
            _ = try? run("/bin/sh", ["-c", "ip netns pids \(n) | xargs -r kill -9"])
            _ = try? run("/sbin/ip", ["netns", "del", n])
        }
        namespaces = []
        try? FileManager.default.removeItem(atPath: dir)
    }

    static func product(_ name: String) -> String { builtProduct(name) }

    enum LabError: Error { case command(String, String) }
}
