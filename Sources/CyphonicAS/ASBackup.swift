import CyphonicCore
import CyphonicPosix
import Foundation

/// Backup and restore of an AS data directory. A backup is itself a complete data
/// directory — `as.db` as one consistent snapshot (SQLite `VACUUM INTO` on a read-only
/// connection: one read transaction, safe while `serve` runs, and the source is never
/// migrated or changed), the CA and AS keys (0600) and certificates — so restoring is
/// copying it into an empty directory, after both are checked. Nothing is written over
/// or through an existing file or symlink, and keys are private from their first byte.
/// Nodes enrolled before the backup keep their addresses and certificates after a
/// restore; what happened after it (enrolments, revocations) is lost.
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

    /// Writes a backup of the AS in `dataDir` into the new directory `out` (made 0700;
    /// it must not exist yet).
    public static func backup(dataDir: String, to out: String) throws -> Summary {
        try ASDirectory.check(at: dataDir)
        if let target = try ASDirectory.postgresTarget(at: dataDir) {
            throw BackupError(
                "this AS keeps its database in PostgreSQL (\(target)): back it up with pg_dump, and this directory's "
                    + "keys and certificates with it (docs/scale.md)")
        }
        let store = try ASStore(readOnlyPath: ASDirectory.file(dataDir, "as.db"))
        try makeNewDirectory(out, "--out")
        do {
            try store.snapshot(to: ASDirectory.file(out, "as.db"))
            try copyFiles(from: dataDir, to: out)
            return try verify(out)
        } catch {
            try? FileManager.default.removeItem(atPath: out)  // no half backup left to be trusted
            throw error
        }
    }

    /// Restores the backup in `from` into `dataDir`: a directory that does not exist yet
    /// (made 0700), or an empty one of ours that no one else may write to (as systemd's
    /// StateDirectory or `install -d` make it).
    public static func restore(from: String, to dataDir: String) throws -> Summary {
        do { _ = try verify(from) } catch { throw BackupError("\(from) is not a usable backup: \(error)") }
        try prepareTarget(dataDir)
        let db = ASDirectory.file(from, "as.db")
        guard let bytes = FileManager.default.contents(atPath: db) else { throw BackupError("cannot read \(db)") }
        do {
            try writeNewFile(ASDirectory.file(dataDir, "as.db"), [UInt8](bytes), mode: 0o600)
            try copyFiles(from: from, to: dataDir)
            return try verify(dataDir)
        } catch {
            for name in ["as.db"] + keys + certificates { unlink(ASDirectory.file(dataDir, name)) }
            throw error
        }
    }

    /// The directory holds a whole AS (files that parse and match) whose database passes
    /// SQLite's integrity check and is not newer than this binary; nothing is changed.
    public static func verify(_ dir: String) throws -> Summary {
        try ASDirectory.check(at: dir)
        let store = try ASStore(readOnlyPath: ASDirectory.file(dir, "as.db"))
        try store.checkIntegrity()
        let settings = try ASSettings.load(from: store)
        return Summary(domain: settings.domain.value, nodes: try store.nodes().count, schemaVersion: store.schemaVersion)
    }

    /// Makes `path` 0700 with mkdir(2), which fails on anything already there (a directory
    /// someone else made in the meantime, a symlink); missing parents are made first.
    static func makeNewDirectory(_ path: String, _ flag: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty {
            do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
                throw BackupError("\(flag): cannot create \(parent): \(plain(error))")
            }
        }
        guard mkdir(path, 0o700) == 0 else {
            let e = errno
            throw BackupError(
                e == EEXIST
                    ? "\(flag): \(path) exists; give a directory that does not exist yet"
                    : "\(flag): cannot create \(path): \(String(cString: strerror(e)))")
        }
    }

    static func prepareTarget(_ dir: String) throws {
        var st = stat()
        guard lstat(dir, &st) == 0 else { return try makeNewDirectory(dir, "--data-dir") }
        do { try checkPrivateDirectory(dir) } catch { throw BackupError("--data-dir: \(error)") }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        guard entries.isEmpty else {
            throw BackupError(
                "--data-dir: \(dir) is not empty (\(entries.sorted().prefix(3).joined(separator: ", "))); restore goes into an empty directory only")
        }
    }

    static func copyFiles(from: String, to: String) throws {
        for (names, mode) in [(keys, mode_t(0o600)), (certificates, mode_t(0o644))] {
            for name in names {
                try writeNewFile(ASDirectory.file(to, name), try readTextFile(ASDirectory.file(from, name), what: name), mode: mode)
            }
        }
    }

    static func plain(_ error: any Error) -> String { (error as NSError).localizedDescription }
}

/// A backup or restore that cannot be done; says which directory and why.
public struct BackupError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

extension ASStore {
    /// A consistent copy of the database at `path` (one read transaction; `serve` may
    /// run), private to the owner.
    func snapshot(to path: String) throws {
        _ = try db.withLock { try $0.query("VACUUM INTO ?", [.text(path)]) }
        chmod(path, 0o600)
    }

    /// SQLite's integrity check; throws what it found.
    func checkIntegrity() throws {
        let rows = try db.withLock { try $0.query("PRAGMA integrity_check") }
        let result = rows.compactMap { $0.first?.string }
        guard result == ["ok"] else { throw BackupError("the database fails its integrity check: \(result.prefix(3).joined(separator: "; "))") }
    }
}
