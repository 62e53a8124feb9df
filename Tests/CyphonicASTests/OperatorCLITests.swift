import CyphonicAS
import CyphonicCore
import CyphonicCrypto
import CyphonicNode
import CyphonicPKI
import CyphonicSignaling
import Foundation
import Glibc
import Testing

/// Issue 13: what a person sees at the terminal, from the real programs run as
/// subprocesses (argument-parser commands): plain one-sentence errors, configs checked
/// fully, host names, enrolment that writes a usable config, per-instance defaults, and
/// help/usage that match the docs.
@Suite(.serialized) struct OperatorCLITests {
    let node = productPath("cyphonic-node")
    let asServer = productPath("as-server")

    func temporary() -> String {
        let dir = NSTemporaryDirectory() + "cyphonic-cli-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// No Swift enum, NSError or usage text in what a person reads.
    func expectPlain(_ output: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for dump in ["NSCocoaErrorDomain", "Error Domain=", "badLabel(", "untrustedPeer(", "CommandError(", "Usage:", "(errno: "] {
            #expect(!output.contains(dump), "\"\(dump)\" in: \(output)", sourceLocation: sourceLocation)
        }
    }

    /// An initialised AS with a running `as-server serve` on 127.0.0.1 and ::1.
    func runningAS() throws -> (ServerProcessTests.Server, String) {
        let dir = temporary()
        #expect(try runTool(asServer, ["init", "--data-dir", dir + "/as", "--domain", "cyphonic.internal"]).status == 0)
        let server = try ServerProcessTests.Server(dataDir: dir + "/as")
        try server.start()
        return (server, dir)
    }

    func token(_ name: String, _ dataDir: String) throws -> String {
        let out = try runTool(asServer, ["node", "add", name, "--data-dir", dataDir, "--json"]).output
        let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        return try #require(json?["token"] as? String)
    }

    // Point 1.
    @Test func errorsArePlainSentencesNamingTheThing() throws {
        let dir = temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var r = try runTool(node, ["enroll", "--as", "127.0.0.1:1", "--ca", dir + "/missing.pem", "--token", "a.b", "--state-dir", dir + "/s"])
        #expect(r.status != 0 && r.output.contains("cannot read the CA certificate \(dir)/missing.pem: no such file"), "\(r.output)")
        expectPlain(r.output)
        r = try runTool(asServer, ["init", "--data-dir", dir + "/as", "--domain", "Bad_Domain.."])
        #expect(r.status != 0 && r.output.contains("the label \"bad_domain\" is not allowed"), "\(r.output)")
        expectPlain(r.output)
        // A metrics port that is taken: the port, the reason, what to do.
        #expect(try runTool(asServer, ["init", "--data-dir", dir + "/as", "--domain", "cyphonic.internal"]).status == 0)
        // A TCP port something listens on.
        let (busy, port) = loopbackSocket(Int32(SOCK_STREAM.rawValue))
        defer { close(busy) }
        listen(busy, 1)
        r = try runTool(
            asServer, ["serve", "--data-dir", dir + "/as", "--listen", "127.0.0.1:\(try freePort())", "--metrics", "127.0.0.1:\(port)"])
        #expect(r.status != 0 && r.output.contains("metrics: cannot listen on 127.0.0.1:\(port): Address already in use"), "\(r.output)")
        expectPlain(r.output)
    }

    @Test func aWrongCAIsSaidPlainly() throws {
        let (server, dir) = try runningAS()
        defer {
            _ = server.kill(SIGTERM)
            try? FileManager.default.removeItem(atPath: dir)
        }
        #expect(try runTool(asServer, ["init", "--data-dir", dir + "/other", "--domain", "cyphonic.internal"]).status == 0)
        let r = try runTool(
            node,
            [
                "enroll", "--as", "127.0.0.1:\(server.port)", "--ca", dir + "/other/ca.pem", "--token", try token("n1", dir + "/as"), "--state-dir",
                dir + "/s",
            ])
        #expect(r.status != 0 && r.output.contains("is not acceptable") && r.output.contains("is ca.pem the CA of this network?"), "\(r.output)")
        expectPlain(r.output)
        #expect(!FileManager.default.fileExists(atPath: dir + "/s/node.key"), "a failed first enrolment leaves no key")
    }

    /// Run without the privilege a TUN needs (as `nobody`): said so, with what it needs.
    @Test func withoutPrivilegeTheTUNSaysWhatItNeeds() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("skipped: needs root and setpriv (to run the daemon as nobody)")
            return
        }
        let (server, dir) = try runningAS()
        defer {
            _ = server.kill(SIGTERM)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let e = try runTool(
            node,
            [
                "enroll", "--as", "127.0.0.1:\(server.port)", "--ca", dir + "/as/ca.pem", "--token", try token("n9", dir + "/as"), "--state-dir",
                dir + "/s",
            ])
        #expect(e.status == 0, "\(e.output)")
        // Readable by nobody (a test copy of a key: never do this with a real one).
        for path in [dir, dir + "/s"] { chmod(path, 0o1777) }
        for file in ["node.key", "node.pem", "ca.pem", "node.json"] { chmod(dir + "/s/" + file, 0o644) }
        let config = dir + "/c.json"
        let json =
            "{ \"stateDir\": \"\(dir)/s\", \"control\": \"\(dir)/n.sock\", \"metrics\": \"\", \"login\": false, \"asEndpoint\": \"\", \"nms\": [], "
            + "\"resolver\": { \"enabled\": false }, \"tun\": { \"name\": \"cyphtest9\" } }"
        try json.write(toFile: config, atomically: true, encoding: .utf8)
        chmod(config, 0o644)
        let r = try runTool("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", node, "run", "--config", config])
        #expect(r.status != 0 && r.output.contains("creating the TUN interface cyphtest9 needs root or CAP_NET_ADMIN"), "\(r.output)")
    }

    // Point 2.
    @Test func theConfigCheckChecksWhatWouldFailAtRun() throws {
        let (server, dir) = try runningAS()
        defer {
            _ = server.kill(SIGTERM)
            try? FileManager.default.removeItem(atPath: dir)
        }
        func check(_ json: String, _ extra: [String] = []) throws -> (Int32, String) {
            let path = dir + "/c-\(UUID().uuidString).json"
            try json.write(toFile: path, atomically: true, encoding: .utf8)
            let r = try runTool(node, ["run", "--config", path, "--check"] + extra)
            return (r.status, r.output.replacingOccurrences(of: path, with: "FILE"))
        }
        var (status, out) = try check("{ \"stateDir\": \"\(dir)/s\",\n  \"listen\": \"[::]:30000\"")
        #expect(status != 0 && out.contains("FILE is not valid JSON: line 2, column 25: the file ends early"), "\(out)")
        (status, out) = try check("{ \"stateDir\": \"\(dir)/s\",\n  \"listen\": \"[::]:30000\", }")
        #expect(status != 0 && out.contains("line 2, column 27: a trailing comma before '}' is not allowed"), "\(out)")
        (status, out) = try check("{ \"stateDir\": \"\(dir)/s\", \"peers\": [ { \"fqdn\": \"a.cyphonic.internal\", \"endpoint\": 5 } ] }")
        #expect(status != 0 && out.contains("config key peers[0].endpoint: must be a string"), "\(out)")
        (status, out) = try check("{ \"stateDir\": \"\(dir)/s\", \"logLevel\": \"loud\" }")
        #expect(status != 0 && out.contains("loud is not a level: trace, debug, info, notice, warning, error, critical"), "\(out)")
        (status, out) = try check("{ \"stateDir\": \"\(dir)/s\" }", ["--pipeline", "fast"])
        #expect(status != 0 && out.contains("--pipeline: fast must be multi or single"), "\(out)")
        (status, out) = try check("{ \"stateDir\": \"\(dir)/nowhere\" }")
        #expect(status != 0 && out.contains("config key stateDir: \(dir)/nowhere does not exist (enrol first"), "\(out)")
        for o in [out] { expectPlain(o) }
        // Enrolled: the overlay prefixes must hold the node's own addresses; peers are names under the domain.
        let e = try runTool(
            node,
            [
                "enroll", "--as", "127.0.0.1:\(server.port)", "--ca", dir + "/as/ca.pem", "--token", try token("n2", dir + "/as"), "--state-dir",
                dir + "/s",
            ])
        #expect(e.status == 0, "\(e.output)")
        (status, out) = try check("{ \"stateDir\": \"\(dir)/s\", \"overlay4\": \"10.0.0.0/8\" }")
        #expect(status != 0 && out.contains("config key overlay4: 10.0.0.0/8 does not contain this node's virtual address 198.18.0.1"), "\(out)")
        (status, out) = try check(
            "{ \"stateDir\": \"\(dir)/s\", \"peers\": [ { \"fqdn\": \"peer.example.org\", \"endpoint\": \"198.19.0.9:30000\" } ] }")
        #expect(
            status != 0 && out.contains("peers[0].fqdn: peer.example.org is not a node name under the overlay domain cyphonic.internal"), "\(out)")
        (status, out) = try check(
            "{ \"stateDir\": \"\(dir)/s\", \"peers\": [ { \"fqdn\": \"peer.cyphonic.internal\", \"endpoint\": \"peer-host.example:30000\" } ] }")
        #expect(status == 0 && out.contains("config ok"), "\(out)")
    }

    // Points 3 and 5.
    @Test func hostNamesAndEnrolmentThatWritesAUsableConfig() throws {
        let (server, dir) = try runningAS()
        defer {
            _ = server.kill(SIGTERM)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let tok = try token("n3", dir + "/as")
        // By name: localhost resolves to 127.0.0.1 and ::1, where the AS listens.
        var r = try runTool(
            node, ["enroll", "--as", "localhost:\(server.port)", "--ca", dir + "/as/ca.pem", "--token", tok, "--state-dir", dir + "/s"])
        #expect(r.status == 0 && r.output.contains("enrolled n3.cyphonic.internal"), "\(r.output)")
        #expect(r.output.contains("start the daemon with: cyphonic-node run --config \(dir)/s/node.conf.json"), "\(r.output)")
        r = try runTool(node, ["run", "--config", dir + "/s/node.conf.json", "--check"])
        #expect(r.status == 0 && r.output.contains("config ok"), "the written config is accepted as is: \(r.output)")
        // A login keeps the AS's name (resolved at each login: the AS may move to another address).
        r = try runTool(node, ["login", "--state-dir", dir + "/s"])
        #expect(r.status == 0 && r.output.contains("logged in n3.cyphonic.internal"), "\(r.output)")
        let stored = try String(contentsOfFile: dir + "/s/node.json", encoding: .utf8)
        #expect(stored.contains("\"localhost:\(server.port)\""), "\(stored)")
        // Again into the same state: said plainly, nothing overwritten.
        r = try runTool(node, ["enroll", "--as", "localhost:\(server.port)", "--ca", dir + "/as/ca.pem", "--token", tok, "--state-dir", dir + "/s"])
        #expect(r.status != 0 && r.output.contains("holds an enrolment already (n3.cyphonic.internal)"), "\(r.output)")
        expectPlain(r.output)
        // The used token elsewhere: the AS says it was used; no key is left behind.
        r = try runTool(node, ["enroll", "--as", "127.0.0.1:\(server.port)", "--ca", dir + "/as/ca.pem", "--token", tok, "--state-dir", dir + "/t"])
        #expect(r.status != 0 && r.output.contains("this enrolment token was already used"), "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/t/node.key"))
        r = try runTool(
            node, ["enroll", "--as", "127.0.0.1:\(server.port)", "--ca", dir + "/as/ca.pem", "--token", "n4.wrong", "--state-dir", dir + "/t"])
        #expect(r.status != 0 && r.output.contains("unknown node or wrong token"), "\(r.output)")
        // A name that does not resolve, and a name in `as-server init`.
        r = try runTool(node, ["enroll", "--as", "no-such-host.invalid:4501", "--ca", dir + "/as/ca.pem", "--token", tok, "--state-dir", dir + "/u"])
        #expect(r.status != 0 && r.output.contains("no-such-host.invalid does not resolve"), "\(r.output)")
        r = try runTool(asServer, ["init", "--data-dir", dir + "/named", "--domain", "cyphonic.internal", "--nms", "localhost:4502"])
        #expect(r.status == 0, "\(r.output)")
        let status = try runTool(asServer, ["status", "--data-dir", dir + "/named"]).output
        #expect(status.contains("127.0.0.1:4502"), "\(status)")
        // The NMS moved and a relay was added: `endpoints` replaces the lists (names resolved
        // now), keeps what it is not given, refuses a wildcard, and a login hands out the new ones.
        r = try runTool(asServer, ["endpoints", "--data-dir", dir + "/as", "--nms", "127.0.0.1:4602", "--trs", "localhost:4603"])
        #expect(r.status == 0 && r.output.contains("NMS  127.0.0.1:4602") && r.output.contains("TRS  127.0.0.1:4603"), "\(r.output)")
        r = try runTool(asServer, ["endpoints", "--data-dir", dir + "/as", "--trs", "0.0.0.0:4603"])
        #expect(r.status != 0 && r.output.contains("is not an address nodes can send to"), "\(r.output)")
        r = try runTool(asServer, ["endpoints", "--data-dir", dir + "/as"])
        #expect(r.output.contains("NMS  127.0.0.1:4602") && r.output.contains("TRS  127.0.0.1:4603"), "unchanged by the refusal: \(r.output)")
        _ = server.kill(SIGTERM)
        try server.start()
        r = try runTool(node, ["login", "--state-dir", dir + "/s"])
        let provisioned = try String(contentsOfFile: dir + "/s/node.json", encoding: .utf8)
        #expect(r.status == 0 && provisioned.contains("127.0.0.1:4602") && provisioned.contains("127.0.0.1:4603"), "\(r.output) \(provisioned)")
        // genkey writes the PEM a config's `key` reads.
        r = try runTool(node, ["genkey", "-o", dir + "/k.pem"])
        #expect(r.status == 0)
        let pem = try String(contentsOfFile: dir + "/k.pem", encoding: .utf8)
        let key = try KeyFiles.x25519(pem: pem)
        #expect(r.output.contains(Hex.encode(key.publicKey.bytes)))
    }

    /// `as-server` refuses what cannot work, saying why: pools no network routes,
    /// addresses nodes cannot send to, names that another node, a service or the AS hold.
    @Test func theASRefusesWhatCannotWork() throws {
        let dir = temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var r = try runTool(asServer, ["init", "--data-dir", dir + "/x", "--domain", "cyphonic.internal", "--vip4", "0.0.0.0/0"])
        #expect(r.status != 0 && r.output.contains("--vip4: 0.0.0.0/0 must be a unicast prefix of length 8...30"), "\(r.output)")
        r = try runTool(asServer, ["init", "--data-dir", dir + "/x", "--domain", "cyphonic.internal", "--nms", "0.0.0.0:4502"])
        #expect(r.status != 0 && r.output.contains("is not an address nodes can send to"), "\(r.output)")
        #expect(try runTool(asServer, ["init", "--data-dir", dir + "/as", "--domain", "cyphonic.internal"]).status == 0)
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/as")[.posixPermissions] as? Int
        #expect(mode == 0o700)
        r = try runTool(asServer, ["node", "add", "as", "--data-dir", dir + "/as"])
        #expect(r.status != 0 && r.output.contains("as.cyphonic.internal (the AS itself) is taken"), "\(r.output)")
        #expect(
            try runTool(asServer, ["service", "add", "trs", "trs.cyphonic.internal", "--data-dir", dir + "/as", "--out", dir + "/trs"]).status == 0)
        r = try runTool(asServer, ["node", "add", "trs", "--data-dir", dir + "/as"])
        #expect(r.status != 0 && r.output.contains("trs.cyphonic.internal (a service) is taken"), "\(r.output)")
        #expect(try runTool(asServer, ["node", "add", "laptop1", "--data-dir", dir + "/as"]).status == 0)
        r = try runTool(asServer, ["service", "add", "nms", "laptop1.cyphonic.internal", "--data-dir", dir + "/as", "--out", dir + "/nms"])
        #expect(r.status != 0 && r.output.contains("laptop1.cyphonic.internal (a node) is taken"), "\(r.output)")
        r = try runTool(asServer, ["node", "show", "LAPTOP1", "--data-dir", dir + "/as"])
        #expect(r.status == 0 && r.output.contains("laptop1.cyphonic.internal"), "names are found in any case: \(r.output)")
        r = try runTool(asServer, ["node", "revoke", "laptop1", "--data-dir", dir + "/as"])
        #expect(r.output.contains("it had no certificate (never enrolled)"), "\(r.output)")
        // A bundle that cannot be written issues nothing.
        try "x".write(toFile: dir + "/afile", atomically: true, encoding: .utf8)
        r = try runTool(asServer, ["service", "add", "nms", "nms4.cyphonic.internal", "--data-dir", dir + "/as", "--out", dir + "/afile"])
        #expect(r.status != 0 && r.output.contains("it is not a directory"), "\(r.output)")
        // Nor into a directory others may write to (a key or ca.pem could be swapped there).
        try FileManager.default.createDirectory(atPath: dir + "/shared", withIntermediateDirectories: false)
        chmod(dir + "/shared", 0o777)
        r = try runTool(asServer, ["service", "add", "nms", "nms4.cyphonic.internal", "--data-dir", dir + "/as", "--out", dir + "/shared"])
        #expect(r.status != 0 && r.output.contains("others may write to it (mode 777)"), "\(r.output)")
        #expect(!(try runTool(asServer, ["service", "list", "--data-dir", dir + "/as"]).output.contains("nms4")))
    }

    // Point 6.
    @Test func aSecondDaemonGetsItsOwnSocketAndPort() throws {
        let dir = temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{ \"stateDir\": \"\(dir)\", \"tun\": { \"name\": \"cyph7\" } }".write(toFile: dir + "/a.json", atomically: true, encoding: .utf8)
        let seventh = try NodeConfig.load(path: dir + "/a.json")
        #expect(
            seventh.control == "/run/cyphonic-node-cyph7.sock" && seventh.metrics != "127.0.0.1:9452" && seventh.metrics.hasPrefix("127.0.0.1:19"))
        let r = try runTool(node, ["status", "--tun", "cyph7"])
        #expect(r.status != 0 && r.output.contains("/run/cyphonic-node-cyph7.sock"), "\(r.output)")
    }

    // Point 7.
    @Test func helpAndUsageMatchTheDocs() throws {
        var r = try runTool(productPath("nms-server"), [])
        #expect(r.status != 0 && r.output.contains("USAGE: nms-server [--check-config <check-config>] <subcommand>"), "\(r.output)")
        let dir = temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try runTool(asServer, ["init", "--data-dir", dir, "--domain", "cyphonic.internal"]).status == 0)
        r = try runTool(asServer, ["node", "show", "nobody", "--data-dir", dir])
        #expect(r.status != 0 && r.output.contains("no node named nobody"), "\(r.output)")
        expectPlain(r.output)
        r = try runTool(asServer, ["node", "add", "-x", "--data-dir", dir])
        #expect(r.status != 0 && r.output.contains("-x is not a valid node name"), "\(r.output)")
        // "Typical use" pastes: every line ending in a continuation, none wrapped.
        let help = try runTool(asServer, ["--help"]).output
        let lines = help.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0.contains("as-server init --data-dir") })
        #expect(lines[start].hasSuffix("\\") && lines[start + 1].hasSuffix("\\") && lines[start + 2].hasSuffix("\\"), "\(help)")
        #expect(lines[start + 3].contains("--nms") && lines[start + 3].contains("--trs") && !lines[start + 3].hasSuffix("\\"), "\(help)")
        // The docs stand on their own: nothing outside the repository is cited.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for doc in ["README.md", "docs/architecture.md", "docs/threading-model.md", "docs/performance.md", "docs/operations.md", "docs/protocol.md"] {
            let text = try String(contentsOf: root.appendingPathComponent(doc), encoding: .utf8)
            #expect(!text.contains("../shared"), "\(doc) cites a file outside the repository")
        }
    }
}
