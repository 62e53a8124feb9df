import CyphonicCore
import CyphonicPosix
import Foundation

/// Backup and restore of an AS data directory. A backup is itself a complete data
/// directory — `as.db` as one consistent snapshot (SQLite `VACUUM INTO`, safe while
/// `serve` runs: it reads one transaction), the CA and AS keys (0600) and certificates —
/// so restoring is copying it into an empty directory, after both are checked. Nodes
/// enrolled before the backup keep their addresses and certificates after a restore;
/// what happened after it (enrolments, revocations) is lost.
public enum ASBackup {
    /// What a backup or restore holds.
    public struct Summary: Sendable, CustomStringConvertible {
        public let domain: String
        public let nodes: Int
        public let schemaVersion: Int64
        public var description: String { "\(domain): \(nodes) node(s), schema v\(schemaVersion)" }
    }

    static let keys = ["ca.key", "as.key"]
    static let certificates = ["ca.pem", "as.pem"]

    /// Writes a backup of the AS in `dataDir` into `out` (created 0700; it must not hold an AS).
    public static func backup(dataDir: String, to out: String) throws -> Summary {
        try ASDirectory.check(at: dataDir)
        try prepareEmpty(out, what: "--out")
        let store = try ASStore(path: ASDirectory.file(dataDir, "as.db"))
        try store.snapshot(to: ASDirectory.file(out, "as.db"))
        try copyFiles(from: dataDir, to: out)
        return try verify(out)
    }

    /// Restores the backup in `from` into `dataDir` (created 0700; it must not hold an AS).
    public static func restore(from: String, to dataDir: String) throws -> Summary {
        do { _ = try verify(from) } catch { throw BackupError("\(from) is not a usable backup: \(error)") }
        try prepareEmpty(dataDir, what: "--data-dir")
        try FileManager.default.copyItem(atPath: ASDirectory.file(from, "as.db"), toPath: ASDirectory.file(dataDir, "as.db"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: ASDirectory.file(dataDir, "as.db"))
        try copyFiles(from: from, to: dataDir)
        return try verify(dataDir)
    }

    /// The directory holds a whole AS whose database passes SQLite's integrity check.
    public static func verify(_ dir: String) throws -> Summary {
        try ASDirectory.check(at: dir)
        let store = try ASStore(path: ASDirectory.file(dir, "as.db"))
        try store.checkIntegrity()
        let settings = try ASSettings.load(from: store)
        return Summary(domain: settings.domain.value, nodes: try store.nodes().count, schemaVersion: store.schemaVersion)
    }

    static func prepareEmpty(_ dir: String, what: String) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: dir, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw BackupError("\(what): \(dir) is a file, not a directory") }
            for name in ["as.db"] + keys + certificates where fm.fileExists(atPath: ASDirectory.file(dir, name)) {
                throw BackupError("\(what): \(ASDirectory.file(dir, name)) exists; refusing to overwrite an AS")
            }
        } else {
            do { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
                throw BackupError("\(what): cannot create \(dir): \(error.localizedDescription)")
            }
        }
    }

    static func copyFiles(from: String, to: String) throws {
        for (names, mode) in [(keys, 0o600), (certificates, 0o644)] {
            for name in names {
                let text = try readTextFile(ASDirectory.file(from, name), what: name)
                guard
                    FileManager.default.createFile(
                        atPath: ASDirectory.file(to, name), contents: Data(text.utf8), attributes: [.posixPermissions: mode])
                else { throw BackupError("cannot write \(ASDirectory.file(to, name))") }
            }
        }
    }
}

/// A backup or restore that cannot be done; says which directory and why.
public struct BackupError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

extension ASStore {
    /// A consistent copy of the database at `path` (one read transaction; `serve` may run).
    func snapshot(to path: String) throws {
        _ = try db.withLock { try $0.query("VACUUM INTO ?", [.text(path)]) }
    }

    /// SQLite's integrity check; throws what it found.
    func checkIntegrity() throws {
        let rows = try db.withLock { try $0.query("PRAGMA integrity_check") }
        let result = rows.compactMap { $0.first?.string }
        guard result == ["ok"] else { throw BackupError("the database fails its integrity check: \(result.prefix(3).joined(separator: "; "))") }
    }
}
