import Foundation
import Testing

/// Issue 14 point 3: the four hardened units in examples/systemd pass `systemd-analyze
/// verify` against the programs as built (in a scratch root holding them at the units'
/// paths), stay at a low `systemd-analyze security` exposure, and comment every flag
/// their ExecStart gives. A broken copy shows that verify would catch a mistake.
@Suite(
    .serialized,
    .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "skipped: needs systemd-analyze (Debian package systemd)"))
struct SystemdUnitTests {
    static let units = ["as-server", "nms-server", "trs-relay", "cyphonic-node"]
    let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples").standardized.path

    /// A scratch root with systemd's own units, the built programs at /usr/local/bin and
    /// our units in /etc/systemd/system.
    func scratchRoot() throws -> String {
        let root = NSTemporaryDirectory() + "cyphonic-units-\(UUID().uuidString)"
        let fm = FileManager.default
        for dir in ["usr/local/bin", "etc/systemd/system", "usr/lib/systemd"] {
            try fm.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
        }
        #expect(try runTool("/bin/cp", ["-a", "/usr/lib/systemd/system", root + "/usr/lib/systemd/"]).status == 0)
        for unit in Self.units {
            try fm.copyItem(atPath: productPath(unit), toPath: root + "/usr/local/bin/" + unit)
            try fm.copyItem(atPath: examples + "/systemd/\(unit).service", toPath: root + "/etc/systemd/system/\(unit).service")
        }
        return root
    }

    @Test func everyUnitVerifiesCleanAndIsHardened() throws {
        let root = try scratchRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        for unit in Self.units {
            let path = root + "/etc/systemd/system/\(unit).service"
            let verify = try runTool("/usr/bin/systemd-analyze", ["verify", "--root=" + root, path])
            #expect(verify.status == 0 && verify.output.isEmpty, "\(unit): \(verify.output)")
            let security = try runTool("/usr/bin/systemd-analyze", ["security", "--offline=true", "--root=" + root, path])
            let line = try #require(security.output.split(separator: "\n").last { $0.contains("Overall exposure level") }, "\(security.output)")
            let level = try #require(Double(line.split(separator: ":").last?.split(separator: " ").first ?? ""), "\(line)")
            // The node keeps CAP_NET_ADMIN and the TUN device; the services keep nothing.
            #expect(level <= (unit == "cyphonic-node" ? 3.5 : 2.0), "\(unit): \(line)")
        }
    }

    @Test func aBrokenUnitIsCaught() throws {
        let root = try scratchRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/etc/systemd/system/trs-relay.service"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try text.replacingOccurrences(of: "ProtectSystem=strict", with: "ProtectSystem=sometimes").write(
            toFile: path, atomically: true, encoding: .utf8)
        let verify = try runTool("/usr/bin/systemd-analyze", ["verify", "--root=" + root, path])
        #expect(verify.output.contains("sometimes"), "\(verify.output)")
    }

    @Test func everyFlagOfExecStartIsCommentedAndItsConfigIsAnExample() throws {
        for unit in Self.units {
            let text = try String(contentsOfFile: examples + "/systemd/\(unit).service", encoding: .utf8)
            let lines = text.split(separator: "\n")
            let exec = try #require(lines.first { $0.hasPrefix("ExecStart=") })
            let comments = lines.filter { $0.hasPrefix("#") }.joined(separator: "\n")
            for flag in exec.split(separator: " ").filter({ $0.hasPrefix("--") }) {
                #expect(comments.contains("#   " + flag) || comments.contains(", " + flag), "\(unit): \(flag) is not commented")
            }
            let config = try #require(exec.split(separator: " ").drop { $0 != "--config" }.dropFirst().first, "\(unit) has no --config")
            let example = (unit == "cyphonic-node" ? "node" : unit) + ".json"
            #expect(config == "/etc/cyphonic/" + example, "\(unit): \(config)")
            #expect(FileManager.default.fileExists(atPath: examples + "/" + example), "\(example) missing")
        }
    }
}
