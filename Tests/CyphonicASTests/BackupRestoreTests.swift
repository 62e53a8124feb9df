import CyphonicAS
import CyphonicCore
import Foundation
import Glibc
import Testing

/// Issue 14 point 5: an AS backed up while it serves (`as-server backup`, and SQLite's own
/// `.backup` as docs/deploy.md shows) and restored into a fresh directory (a new host):
/// the restored AS serves the same CA, and enrolled nodes log in again with the
/// addresses they had. Broken backups and occupied targets are refused by name.
@Suite(.serialized) struct BackupRestoreTests {
    let asServer = productPath("as-server")
    let node = productPath("cyphonic-node")

    func temporary() throws -> String {
        let dir = NSTemporaryDirectory() + "cyphonic-backup-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func token(_ name: String, _ dataDir: String) throws -> String {
        let out = try runTool(asServer, ["node", "add", name, "--data-dir", dataDir, "--json"]).output
        let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        return try #require(json?["token"] as? String, "\(out)")
    }

    /// "logged in NAME  V4  V6  (node id N)" or "enrolled ...": the name and addresses.
    func assignment(_ output: String) -> String? {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("enrolled ") || $0.hasPrefix("logged in ") }) else { return nil }
        let words = line.split(separator: " ").filter { !$0.isEmpty && $0 != "logged" }
        return words.count >= 4 ? words[1...3].joined(separator: " ") : nil
    }

    @Test func aRestoredASKeepsEveryNodesAddresses() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let original = dir + "/as"
        #expect(try runTool(asServer, ["init", "--data-dir", original, "--domain", "cyphonic.internal"]).status == 0)
        let server = try ServerProcessTests.Server(dataDir: original)
        try server.start()
        var before: [String: String] = [:]
        for name in ["alpha", "beta"] {
            let r = try runTool(
                node,
                [
                    "enroll", "--as", "127.0.0.1:\(server.port)", "--ca", original + "/ca.pem", "--token", try token(name, original), "--state-dir",
                    dir + "/" + name,
                ])
            let enrolled: String = try #require(assignment(r.output), "\(r.output)")
            before[name] = enrolled
        }
        // Both ways of backing up, while the AS serves.
        let backup = try runTool(asServer, ["backup", "--data-dir", original, "--out", dir + "/backup"])
        #expect(backup.status == 0 && backup.output.contains("cyphonic.internal: 2 node(s)"), "\(backup.output)")
        let sqlite = FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3")
        if sqlite {
            try FileManager.default.createDirectory(atPath: dir + "/sqlite-backup", withIntermediateDirectories: true)
            let r = try runTool("/usr/bin/sqlite3", [original + "/as.db", ".backup '\(dir)/sqlite-backup/as.db'"])
            #expect(r.status == 0, "\(r.output)")
            for file in ["ca.key", "ca.pem", "as.key", "as.pem"] {
                try FileManager.default.copyItem(atPath: original + "/" + file, toPath: dir + "/sqlite-backup/" + file)
            }
        } else {
            print("sqlite3 .backup not tried: no /usr/bin/sqlite3 (Debian package sqlite3)")
        }
        // A node added after the backup is not in it.
        _ = try token("gamma", original)
        #expect(server.kill(SIGTERM) == 0)
        try FileManager.default.removeItem(atPath: original)  // the old host is gone

        for source in ["backup"] + (sqlite ? ["sqlite-backup"] : []) {
            let restored = dir + "/restored-from-" + source
            let r = try runTool(asServer, ["restore", "--from", dir + "/" + source, "--data-dir", restored])
            #expect(r.status == 0 && r.output.contains("restored cyphonic.internal: 2 node(s)"), "\(source): \(r.output)")
            let again = try ServerProcessTests.Server(dataDir: restored)
            try again.start()
            for name in ["alpha", "beta"] {
                let login = try runTool(node, ["login", "--state-dir", dir + "/" + name, "--as", "127.0.0.1:\(again.port)"])
                #expect(login.status == 0 && assignment(login.output) == before[name], "\(source) \(name): \(login.output) vs \(before[name] ?? "?")")
            }
            #expect(try runTool(asServer, ["node", "show", "gamma", "--data-dir", restored]).status != 0)
            #expect(again.kill(SIGTERM) == 0)
        }
    }

    @Test func brokenBackupsAndOccupiedTargetsAreRefused() throws {
        let dir = try temporary()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try runTool(asServer, ["init", "--data-dir", dir + "/as", "--domain", "cyphonic.internal"]).status == 0)
        #expect(try runTool(asServer, ["backup", "--data-dir", dir + "/as", "--out", dir + "/b"]).status == 0)
        // Keys private, certificates public, the snapshot private.
        func mode(_ path: String) throws -> Int { try (FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1 }
        #expect(try mode(dir + "/b") == 0o700 && mode(dir + "/b/ca.key") == 0o600 && mode(dir + "/b/as.key") == 0o600)
        #expect(try mode(dir + "/b/as.db") == 0o600 && mode(dir + "/b/ca.pem") == 0o644)
        // Into a directory that holds an AS, or anything at --out: refused, nothing touched.
        var r = try runTool(asServer, ["restore", "--from", dir + "/b", "--data-dir", dir + "/as"])
        #expect(r.status != 0 && r.output.contains("is not empty"), "\(r.output)")
        r = try runTool(asServer, ["backup", "--data-dir", dir + "/as", "--out", dir + "/b"])
        #expect(r.status != 0 && r.output.contains("exists; give a directory that does not exist yet"), "\(r.output)")
        // A dangling symlink at --out, or as the data directory: never followed.
        try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: dir + "/elsewhere")
        r = try runTool(asServer, ["backup", "--data-dir", dir + "/as", "--out", dir + "/link"])
        #expect(r.status != 0 && !FileManager.default.fileExists(atPath: dir + "/elsewhere"), "\(r.output)")
        r = try runTool(asServer, ["restore", "--from", dir + "/b", "--data-dir", dir + "/link"])
        #expect(r.status != 0 && !FileManager.default.fileExists(atPath: dir + "/elsewhere"), "\(r.output)")
        // An empty directory of ours (as systemd's StateDirectory makes it) is a fine target.
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        r = try runTool(asServer, ["restore", "--from", dir + "/b", "--data-dir", dir + "/empty"])
        #expect(r.status == 0 && r.output.contains("restored cyphonic.internal: 0 node(s)"), "\(r.output)")
        #expect(try mode(dir + "/empty/ca.key") == 0o600 && mode(dir + "/empty/as.db") == 0o600)
        // A backup without its CA key, and one whose database is cut short.
        try FileManager.default.copyItem(atPath: dir + "/b", toPath: dir + "/nokey")
        try FileManager.default.removeItem(atPath: dir + "/nokey/ca.key")
        r = try runTool(asServer, ["restore", "--from", dir + "/nokey", "--data-dir", dir + "/x"])
        #expect(r.status != 0 && r.output.contains("is not a usable backup") && r.output.contains("ca.key"), "\(r.output)")
        try FileManager.default.copyItem(atPath: dir + "/b", toPath: dir + "/cut")
        let db = try Data(contentsOf: URL(fileURLWithPath: dir + "/cut/as.db"))
        try db.prefix(db.count / 2).write(to: URL(fileURLWithPath: dir + "/cut/as.db"))
        r = try runTool(asServer, ["restore", "--from", dir + "/cut", "--data-dir", dir + "/y"])
        #expect(r.status != 0 && r.output.contains("is not a usable backup"), "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/y/as.db"))
    }
}
