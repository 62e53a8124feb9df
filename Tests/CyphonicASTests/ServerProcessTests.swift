import CyphonicAS
import CyphonicCore
import CyphonicCrypto
import CyphonicNode
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Foundation
import Testing

/// `as-server` as a real process on loopback, driven by the login client library and
/// by the `cyphonic-node` and `as-server` command lines.
@Suite(.serialized) struct ServerProcessTests {
    final class Server {
        let dataDir: String
        let port: UInt16
        let metricsPort: UInt16
        var process: Process?
        let log: String

        init(dataDir: String) throws {
            self.dataDir = dataDir
            port = try freePort()
            metricsPort = try freePort()
            log = dataDir + "/serve.log"
        }

        var endpoint: Endpoint { Endpoint(address: IPAddress("127.0.0.1")!, port: port) }

        func start() throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: productPath("as-server"))
            p.arguments = [
                "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:\(port)", "--listen", "[::1]:\(port)",
                "--metrics", "127.0.0.1:\(metricsPort)",
                "--max-failures", "5", "--failure-window", "60",
            ]
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            handle.seekToEndOfFile()
            p.standardOutput = handle
            p.standardError = handle
            try p.run()
            process = p
            // Ready when the metrics endpoint answers (bound after the UDP sockets).
            for _ in 0..<100 {
                if (try? metrics())?.contains("as_pool_capacity") == true { return }
                usleep(50_000)
            }
            throw LoginError.timeout(endpoint)
        }

        func kill(_ signal: Int32) -> Int32 {
            guard let p = process else { return -1 }
            Glibc.kill(p.processIdentifier, signal)
            p.waitUntilExit()
            process = nil
            return p.terminationStatus
        }

        func metrics() throws -> String {
            let r = try runTool("/usr/bin/curl", ["-sf", "http://127.0.0.1:\(metricsPort)/metrics"])
            return r.status == 0 ? r.output : ""
        }

        func metric(_ line: String) throws -> Double {
            let text = try metrics()
            for l in text.split(separator: "\n") where l.hasPrefix(line + " ") {
                return Double(l.split(separator: " ").last!) ?? -1
            }
            return 0
        }

        deinit {
            if let p = process, p.isRunning {
                Glibc.kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
        }
    }

    static let hasCurl = FileManager.default.isExecutableFile(atPath: "/usr/bin/curl")

    @Test(.enabled(if: hasCurl, "needs /usr/bin/curl for the metrics endpoint"))
    func enrolKillRestartRevokeReuseReplayRateLimit() throws {
        let dir = NSTemporaryDirectory() + "cyphonic-as-proc-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let asServer = productPath("as-server")
        let node = productPath("cyphonic-node")
        let initRun = try runTool(
            asServer,
            [
                "init", "--data-dir", dir, "--domain", "cyphonic.internal", "--vip4", "198.18.0.0/16",
                "--vip6", "2001:db8:c0ff:ee::/64", "--nms", "127.0.0.1:4502", "--trs", "127.0.0.1:4503",
            ])
        #expect(initRun.status == 0, "\(initRun.output)")
        let again = try runTool(asServer, ["init", "--data-dir", dir])
        #expect(again.status != 0 && again.output.contains("already initialised"))

        var tokens: [String: String] = [:]
        for name in ["init01", "init02", "init03", "init04"] {
            let r = try runTool(asServer, ["node", "add", name, "--data-dir", dir, "--json"])
            let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
            tokens[name] = try #require(json?["token"] as? String)
        }
        let ca = try Certificate(pem: try String(contentsOfFile: dir + "/ca.pem", encoding: .utf8))
        let server = try Server(dataDir: dir)
        try server.start()
        let client = ASClient(server: server.endpoint, caCertificate: ca)
        // The process's own figures, read at each scrape (docs/deploy.md, "What to monitor").
        #expect(try server.metric("process_resident_memory_bytes") > 1_000_000)
        #expect(try server.metric("process_threads") >= 2)
        #expect(try server.metric("process_cpu_seconds_total") > 0)

        // Enrol three nodes with the library, one with the command line.
        var keys: [String: X25519PrivateKey] = [:]
        var first: [String: Provision] = [:]
        for name in ["init01", "init02", "init03"] {
            keys[name] = try X25519PrivateKey()
            first[name] = try client.login(name: name, credential: .token(tokens[name]!), key: keys[name]!)
        }
        #expect(Set(first.values.map(\.virtualIPv4)).count == 3)
        let state = dir + "/node04"
        let enroll = try runTool(
            node,
            [
                "enroll", "--as", "127.0.0.1:\(server.port)", "--ca", dir + "/ca.pem", "--token",
                tokens["init04"]!, "--state-dir", state,
            ])
        #expect(enroll.status == 0 && enroll.output.contains("init04.cyphonic.internal"), "\(enroll.output)")
        let keyMode = try FileManager.default.attributesOfItem(atPath: state + "/node.key")[.posixPermissions] as? Int
        #expect(keyMode == 0o600)
        let verify = try runTool("/usr/bin/openssl", ["verify", "-CAfile", dir + "/ca.pem", state + "/node.pem"])
        #expect(verify.status == 0 && verify.output.contains(": OK"), "\(verify.output)")

        // SIGKILL, restart: the same CA and the same assignments are served.
        #expect(server.kill(SIGKILL) != 0)
        try server.start()
        for name in ["init01", "init02", "init03"] {
            let cert = first[name]!.certificate
            let p = try client.login(name: name, credential: .certificate(der: cert), key: keys[name]!)
            #expect(
                p.fqdn == first[name]!.fqdn && p.virtualIPv4 == first[name]!.virtualIPv4
                    && p.virtualIPv6 == first[name]!.virtualIPv6 && p.nodeID == first[name]!.nodeID)
            #expect(p.caCertificate == ca.derBytes)
        }
        // The same over IPv6.
        let v6 = ASClient(server: Endpoint(address: IPAddress("::1")!, port: server.port), caCertificate: ca)
        let p6 = try v6.login(name: "init03", credential: .certificate(der: first["init03"]!.certificate), key: keys["init03"]!)
        #expect(p6.virtualIPv6 == first["init03"]!.virtualIPv6)
        let relogin = try runTool(node, ["login", "--state-dir", state])
        #expect(relogin.status == 0 && relogin.output.contains("init04.cyphonic.internal"), "\(relogin.output)")

        // Revoked: refused, and the CRL served in-session lists it.
        let revoke = try runTool(asServer, ["node", "revoke", "init02", "--data-dir", dir])
        #expect(revoke.status == 0)
        #expect(throws: LoginError.refused(.revoked, LoginFailure.revoked.clientMessage)) {
            try client.login(name: "init02", credential: .certificate(der: first["init02"]!.certificate), key: keys["init02"]!)
        }
        let crl = try client.revocationList(key: try X25519PrivateKey())
        #expect(crl.contains(try Certificate(der: first["init02"]!.certificate).serial!))

        // A token works once; the second use is told so (the token was proven).
        #expect(throws: LoginError.refused(.unauthorized, LoginFailure.tokenUsed.clientMessage)) {
            try client.login(name: "init01", credential: .token(tokens["init01"]!), key: try X25519PrivateKey())
        }

        // A replayed login datagram (message 3) is refused: no second answer.
        let replayed = try Self.replayCompletion(
            server: server.endpoint, ca: ca, name: "init01",
            cert: first["init01"]!.certificate, key: keys["init01"]!)
        #expect(replayed == false)
        #expect(try server.metric("as_datagrams_dropped_total{reason=\"unknown_session\"}") >= 1)

        // Malformed and oversized datagrams are counted and dropped; the server keeps serving.
        let probe = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        for i in 0..<50 { try probe.send([0xff] + (try SecureRandom.bytes(i * 7)), to: server.endpoint) }
        try probe.send([UInt8](repeating: 1, count: 60_000), to: server.endpoint)
        usleep(300_000)
        #expect(try server.metric("as_datagrams_dropped_total{reason=\"malformed\"}") >= 51)
        _ = try client.login(name: "init03", credential: .certificate(der: first["init03"]!.certificate), key: keys["init03"]!)

        // Ten wrong tokens in a row: refused, then rate-limited (even the right one).
        try server.start(afterKill: true)
        var statuses: [StatusCode] = []
        for i in 0..<10 {
            do {
                _ = try client.login(name: "init05", credential: .token("init05.wrong\(i)"), key: try X25519PrivateKey())
            } catch let LoginError.refused(code, _) {
                statuses.append(code)
            }
        }
        #expect(statuses.count == 10)
        #expect(statuses.prefix(5).allSatisfy { $0 == .unauthorized })
        #expect(statuses.suffix(5).allSatisfy { $0 == .rateLimited })
        #expect(try server.metric("as_logins_total{result=\"rate_limited\"}") == 5)

        // Operator views and service bundles.
        let list = try runTool(asServer, ["node", "list", "--data-dir", dir, "--json"])
        let nodes = try JSONSerialization.jsonObject(with: Data(list.output.utf8)) as? [[String: Any]]
        #expect(nodes?.count == 4)
        #expect(nodes?.first { $0["name"] as? String == "init02" }?["state"] as? String == "revoked")
        let show = try runTool(asServer, ["node", "show", "init01", "--data-dir", dir])
        #expect(show.status == 0 && show.output.contains("198.18.0.1") && show.output.contains("active"))
        let missing = try runTool(asServer, ["node", "show", "nobody", "--data-dir", dir])
        #expect(missing.status != 0 && missing.output.contains("no node named nobody"))
        let bundle = dir + "/nms-bundle"
        let svc = try runTool(asServer, ["service", "add", "nms", "nms.cyphonic.internal", "--data-dir", dir, "--out", bundle])
        #expect(svc.status == 0, "\(svc.output)")
        let svcMode = try FileManager.default.attributesOfItem(atPath: bundle + "/nms.cyphonic.internal.key")[.posixPermissions] as? Int
        #expect(svcMode == 0o600)
        let svcVerify = try runTool("/usr/bin/openssl", ["verify", "-CAfile", bundle + "/ca.pem", bundle + "/nms.cyphonic.internal.pem"])
        #expect(svcVerify.status == 0)
        let services = try runTool(asServer, ["service", "list", "--data-dir", dir])
        #expect(services.output.contains("nms.cyphonic.internal") && services.output.contains("as.cyphonic.internal"))
        let badRole = try runTool(asServer, ["service", "add", "web", "x.cyphonic.internal", "--data-dir", dir])
        #expect(badRole.status != 0 && badRole.output.contains("must be nms or trs"))
        let status = try runTool(asServer, ["status", "--data-dir", dir])
        #expect(status.output.contains("nodes         4 (active 3, pending 0, revoked 1)"), "\(status.output)")

        // Removing the revoked node quarantines its addresses (its certificate is still
        // valid): the operator sees it, and the next node gets other addresses.
        let remove = try runTool(asServer, ["node", "remove", "init02", "--data-dir", dir])
        #expect(remove.status == 0 && remove.output.contains("quarantined until"), "\(remove.output)")
        let listed = try runTool(asServer, ["node", "list", "--data-dir", dir])
        #expect(
            listed.output.contains("(removed init02)") && listed.output.contains("\(first["init02"]!.virtualIPv4)"),
            "\(listed.output)")
        let next = try runTool(asServer, ["node", "add", "init06", "--data-dir", dir])
        #expect(next.status == 0 && !next.output.contains("\(first["init02"]!.virtualIPv4) "), "\(next.output)")

        // SIGTERM: clean shutdown.
        #expect(server.kill(SIGTERM) == 0)
        let log = try String(contentsOfFile: server.log, encoding: .utf8)
        #expect(log.contains("shut down cleanly"))
    }

    /// `enroll --token-file PATH` and `--token-file -` (stdin) keep the token out of the
    /// command line; a trailing newline is ignored; exactly one of --token/--token-file.
    @Test(.enabled(if: hasCurl, "needs /usr/bin/curl for the metrics endpoint"))
    func enrollReadsTheTokenFromAFileOrStandardInput() throws {
        let dir = NSTemporaryDirectory() + "cyphonic-as-proc-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let asServer = productPath("as-server")
        let node = productPath("cyphonic-node")
        #expect(try runTool(asServer, ["init", "--data-dir", dir]).status == 0)
        var tokens: [String: String] = [:]
        for name in ["file01", "stdin01"] {
            let r = try runTool(asServer, ["node", "add", name, "--data-dir", dir, "--json"])
            let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
            tokens[name] = try #require(json?["token"] as? String)
        }
        let server = try Server(dataDir: dir)
        try server.start()
        let common = ["enroll", "--as", "127.0.0.1:\(server.port)", "--ca", dir + "/ca.pem"]
        let tokenFile = dir + "/token"
        try (tokens["file01"]! + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let byFile = try runTool(node, common + ["--token-file", tokenFile, "--state-dir", dir + "/file01"])
        #expect(byFile.status == 0 && byFile.output.contains("file01.cyphonic.internal"), "\(byFile.output)")
        // Through a pipe, with a CRLF ending: sh -c 'printf "%s\r\n" "$(cat FILE)" | cyphonic-node enroll ... --token-file -'
        let stdinFile = dir + "/token-stdin"
        try tokens["stdin01"]!.write(toFile: stdinFile, atomically: true, encoding: .utf8)
        let piped = try runTool(
            "/bin/sh",
            ["-c", "printf '%s\\r\\n' \"$(cat \"$0\")\" | \"$@\"", stdinFile, node] + common
                + ["--token-file", "-", "--state-dir", dir + "/stdin01"])
        #expect(piped.status == 0 && piped.output.contains("stdin01.cyphonic.internal"), "\(piped.output)")
        // Wrong uses name the options.
        let neither = try runTool(node, common + ["--state-dir", dir + "/x"])
        #expect(neither.status != 0 && neither.output.contains("--token-file"), "\(neither.output)")
        let both = try runTool(node, common + ["--token", "a.b", "--token-file", tokenFile, "--state-dir", dir + "/x"])
        #expect(both.status != 0 && both.output.contains("mutually exclusive"), "\(both.output)")
        let missing = try runTool(node, common + ["--token-file", dir + "/nope", "--state-dir", dir + "/x"])
        #expect(missing.status != 0 && missing.output.contains("--token-file: cannot read"), "\(missing.output)")
        try "\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let empty = try runTool(node, common + ["--token-file", tokenFile, "--state-dir", dir + "/x"])
        #expect(empty.status != 0 && empty.output.contains("is empty"), "\(empty.output)")
        #expect(server.kill(SIGTERM) == 0)
    }

    /// A refused login's name is the client's text: the log shows it escaped, so a name
    /// with a line break cannot forge a log line.
    @Test(.enabled(if: hasCurl, "needs /usr/bin/curl for the metrics endpoint"))
    func refusedLoginNamesAreLoggedEscaped() throws {
        let dir = NSTemporaryDirectory() + "cyphonic-as-proc-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try runTool(productPath("as-server"), ["init", "--data-dir", dir]).status == 0)
        let server = try Server(dataDir: dir)
        try server.start()
        let client = ASClient(
            server: server.endpoint,
            caCertificate: try Certificate(pem: try String(contentsOfFile: dir + "/ca.pem", encoding: .utf8)))
        #expect(throws: LoginError.refused(.unauthorized, LoginFailure.unknownNode.clientMessage)) {
            try client.login(name: "evil\nas: login ok: admin", credential: .token("evil.x"), key: try X25519PrivateKey())
        }
        #expect(server.kill(SIGTERM) == 0)
        let log = try String(contentsOfFile: server.log, encoding: .utf8)
        #expect(log.contains("login refused: name=\"evil\\x0aas:\\x20login\\x20ok:\\x20admin\""), "\(log)")
        #expect(!log.contains("\nas: login ok: admin"), "\(log)")
    }

    /// Runs one login by hand, then sends its message 3 again; true if the AS answered twice.
    static func replayCompletion(server: Endpoint, ca: Certificate, name: String, cert: [UInt8], key: X25519PrivateKey) throws -> Bool {
        let socket = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        try socket.setReceiveTimeout(milliseconds: 1500)
        let hs = try ServiceClientHandshake(localStatic: key, verifier: try CertificateVerifier(trustAnchor: ca), role: .as)
        try socket.send(try hs.initiation(), to: server)
        var buf = [UInt8](repeating: 0, count: 65_536)
        let (n, _) = try buf.withUnsafeMutableBytes { try socket.receive(into: $0) }
        let login = try SignalingMessage(transactionID: 1, body: .login(Login(name: name, credential: .certificate(der: cert)))).encode()
        let (completion, session) = try hs.complete(response: Array(buf[0..<n]), payload: login)
        try socket.send(completion, to: server)
        let (m, _) = try buf.withUnsafeMutableBytes { try socket.receive(into: $0) }
        guard case .provision = try session.open(Array(buf[0..<m])).body else { return true }
        try socket.send(completion, to: server)
        do {
            _ = try buf.withUnsafeMutableBytes { try socket.receive(into: $0) }
            return true
        } catch let e as SystemError where e.wouldBlock {
            return false
        }
    }
}

extension ServerProcessTests.Server {
    /// Restarts the server (SIGKILL first) so its in-memory rate limiter starts empty.
    func start(afterKill: Bool) throws {
        if afterKill { _ = kill(SIGKILL) }
        try start()
    }
}
