import CyphonicAS
import CyphonicCore
import CyphonicService
import Foundation
import Testing

/// Issue 14 point 4: every program reads a documented config file, flags override it,
/// and `PROGRAM --check-config FILE` validates it without starting — the examples in
/// examples/ against a real AS and real service bundles, and broken copies of them.
@Suite(.serialized) struct ServiceConfigTests {
    let asServer = productPath("as-server")
    let nms = productPath("nms-server")
    let trs = productPath("trs-relay")
    let node = productPath("cyphonic-node")
    let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples").standardized.path

    /// An initialised AS with an NMS and a TRS bundle, and the three service examples
    /// pointed at them.
    func fixture() throws -> String {
        let dir = NSTemporaryDirectory() + "cyphonic-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        #expect(try runTool(asServer, ["init", "--data-dir", dir + "/as", "--domain", "cyphonic.internal"]).status == 0)
        for (role, name) in [("nms", "nms.cyphonic.internal"), ("trs", "trs.cyphonic.internal")] {
            let r = try runTool(asServer, ["service", "add", role, name, "--data-dir", dir + "/as", "--out", dir + "/" + role])
            #expect(r.status == 0, "\(r.output)")
        }
        for (file, from, to) in [
            ("as-server.json", "/var/lib/cyphonic-as", dir + "/as"), ("nms-server.json", "/etc/cyphonic/nms", dir + "/nms"),
            ("trs-relay.json", "/etc/cyphonic/trs", dir + "/trs"),
        ] {
            let text = try String(contentsOfFile: examples + "/" + file, encoding: .utf8)
            #expect(text.contains("\"" + from + "\""), "\(file) no longer names \(from)")
            try text.replacingOccurrences(of: "\"" + from + "\"", with: "\"" + to + "\"").write(
                toFile: dir + "/" + file, atomically: true, encoding: .utf8)
        }
        return dir
    }

    /// A copy of `file` in `dir` with `from` replaced by `to`.
    func broken(_ dir: String, _ file: String, _ from: String, _ to: String) throws -> String {
        let text = try String(contentsOfFile: dir + "/" + file, encoding: .utf8)
        #expect(text.contains(from), "\(file) has no \(from)")
        let path = dir + "/broken-" + file
        try text.replacingOccurrences(of: from, with: to).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func examplesPassCheckConfig() throws {
        let dir = try fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (program, file) in [(asServer, "as-server.json"), (nms, "nms-server.json"), (trs, "trs-relay.json")] {
            let r = try runTool(program, ["--check-config", dir + "/" + file])
            #expect(r.status == 0 && r.output.hasPrefix("config ok: "), "\(file): \(r.output)")
        }
    }

    /// The containers' configs (docker/config) and the node's example, with their paths
    /// pointed at real files, pass too.
    @Test func containerConfigsAndTheNodeExamplePassCheckConfig() throws {
        let dir = try fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let docker = examples + "/../docker/config"
        for (program, file, from, to) in [
            (asServer, "as-server.json", "/var/lib/cyphonic-as", dir + "/as"), (nms, "nms-server.json", "/etc/cyphonic/nms", dir + "/nms"),
            (trs, "trs-relay.json", "/etc/cyphonic/trs", dir + "/trs"),
        ] {
            let text = try String(contentsOfFile: docker + "/" + file, encoding: .utf8)
            #expect(text.contains("\"" + from + "\""), "docker/config/\(file) no longer names \(from)")
            let path = dir + "/docker-" + file
            try text.replacingOccurrences(of: "\"" + from + "\"", with: "\"" + to + "\"").write(toFile: path, atomically: true, encoding: .utf8)
            let r = try runTool(program, ["--check-config", path])
            #expect(r.status == 0 && r.output.hasPrefix("config ok: "), "docker/config/\(file): \(r.output)")
        }
        // The node's example enrols at its first start: its CA and token files must be there.
        try FileManager.default.copyItem(atPath: dir + "/as/ca.pem", toPath: dir + "/ca.pem")
        try "node-a.secret\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        let text = try String(contentsOfFile: examples + "/node.json", encoding: .utf8)
            .replacingOccurrences(of: "\"/etc/cyphonic/ca.pem\"", with: "\"" + dir + "/ca.pem\"")
            .replacingOccurrences(of: "\"/etc/cyphonic/token\"", with: "\"" + dir + "/token\"")
            .replacingOccurrences(of: "\"/var/lib/cyphonic-node\"", with: "\"" + dir + "/node-state\"")
        try text.write(toFile: dir + "/node.json", atomically: true, encoding: .utf8)
        let r = try runTool(node, ["--check-config", dir + "/node.json"])
        #expect(r.status == 0 && r.output.contains("config ok") && r.output.contains("not enrolled yet"), "\(r.output)")
    }

    @Test func brokenCopiesNameTheKeyAndTheFlag() throws {
        let dir = try fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, String, String, String, String)] = [
            (
                asServer, "as-server.json", "\"maxFailures\": 5", "\"maxFailures\": 0",
                "config key maxFailures (--max-failures): 0 must be 1...1000000"
            ),
            (
                asServer, "as-server.json", "\"listen\": [\"0.0.0.0:4501\"", "\"listen\": [\"localhost:4501\"",
                "config key listen (--listen): localhost:4501 is not ADDRESS:PORT"
            ),
            (
                asServer, "as-server.json", "\"dataDir\": \"" + dir + "/as\"", "\"dataDir\": \"" + dir + "/nowhere\"",
                "config key dataDir (--data-dir): cannot read the CA key"
            ),
            (nms, "nms-server.json", "\"keepalive\": 5", "\"keepAlive\": 5", "config key keepAlive: unknown key"),
            (nms, "nms-server.json", "\"allow\": []", "\"allow\": [\"ops\"]", "config key allow (--allow): ops is not GROUP_A:GROUP_B"),
            (nms, "nms-server.json", "\"bundle\": \"" + dir + "/nms\"", "\"bundle\": \"" + dir + "/trs\"", "config key bundle (--bundle): "),
            (nms, "nms-server.json", "\"workers\": 0,", "\"workers\": 0", "is not valid JSON: line "),
            (trs, "trs-relay.json", "\"nodeIdle\": 60", "\"nodeIdle\": 15", "config key nodeIdle (--node-idle): 15 must be 20...86400"),
            (
                trs, "trs-relay.json", "\"noOffloads\": false", "\"noOffloads\": \"no\"",
                "config key noOffloads (--no-offloads): must be true or false"
            ),
            (trs, "trs-relay.json", "\"logLevel\": \"info\"", "\"logLevel\": \"loud\"", "config key logLevel (--log-level): loud is not a level"),
            (trs, "trs-relay.json", "\"logLevel\": \"info\"", "\"logLevel\": \"info\", \"refresh\": 5", "the key \"refresh\" appears twice"),
        ]
        for (program, file, from, to, expected) in cases {
            let path = try broken(dir, file, from, to)
            let r = try runTool(program, ["--check-config", path])
            #expect(r.status == 1, "\(file) with \(to) passed: \(r.output)")
            #expect(r.output.contains(expected), "\(file) with \(to): \(r.output)")
            #expect(!r.output.contains("Usage:"), "\(r.output)")
        }
    }

    @Test func aSyntaxErrorAfterCommentsKeepsItsLine() throws {
        let dir = try fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try broken(dir, "trs-relay.json", "\"refresh\": 10,", "\"refresh\": 10,,")
        let line = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            .firstIndex { $0.contains("\"refresh\"") }.map { $0 + 1 }
        let lineNumber = try #require(line)
        let r = try runTool(trs, ["--check-config", path])
        #expect(r.status == 1 && r.output.contains("line \(lineNumber), column"), "\(r.output)")
    }

    @Test func theNodeChecksItsConfigTheSameWay() throws {
        let dir = NSTemporaryDirectory() + "cyphonic-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = try String(contentsOfFile: examples + "/node.json", encoding: .utf8)
        try text.replacingOccurrences(of: "\"workers\": 0", with: "\"wrokers\": 0").write(
            toFile: dir + "/node.json", atomically: true, encoding: .utf8)
        let r = try runTool(node, ["--check-config", dir + "/node.json"])
        #expect(r.status == 1 && r.output.contains("config key wrokers: unknown key"), "\(r.output)")
        let missing = try runTool(node, ["--check-config", examples + "/node.json"])
        #expect(missing.status == 1 && missing.output.contains("config key enroll.ca"), "\(missing.output)")
    }

    @Test func flagsOverrideTheFileAndUnsetFlagsKeepIt() throws {
        let dir = NSTemporaryDirectory() + "cyphonic-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/etc", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
        // comment
        { "dataDir": "data", "maxFailures": 7, "listen": ["127.0.0.1:4601"] }   // trailing comment
        """.write(toFile: dir + "/etc/as.json", atomically: true, encoding: .utf8)
        var flags = ASServeConfig()
        let fromFile = try ASServeConfig.layered(file: dir + "/etc/as.json", flags: flags)
        #expect(fromFile.maxFailures == 7 && fromFile.listen == ["127.0.0.1:4601"])
        #expect(fromFile.dataDir == dir + "/etc/data", "paths in a file are relative to it")
        flags.maxFailures = 9
        flags.dataDir = "/srv/as"
        let layered = try ASServeConfig.layered(file: dir + "/etc/as.json", flags: flags)
        #expect(layered.maxFailures == 9 && layered.dataDir == "/srv/as" && layered.listen == ["127.0.0.1:4601"])
        #expect(ASServeConfig.knownKeys.contains("handshakesPerSource") && ASServeConfig.knownKeys.count == 11)
    }
}
