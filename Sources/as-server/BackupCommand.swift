import ArgumentParser
import CyphonicAS

/// `as-server backup`: a consistent copy of the AS while it serves.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the AS (database snapshot, CA and AS keys, certificates) into a new directory; safe while `serve` runs.",
        discussion: """
            The backup is itself a data directory: `as-server restore --from DIR` puts it back on a new host. \
            It holds the CA key: keep it encrypted and offline (docs/deploy.md, "Backup and restore").
            """)

    @OptionGroup var dataDir: DataDirOption
    @Option(help: "Directory to write the backup into (created 0700; must not hold an AS).") var out: String

    func run() throws {
        let summary = try ASBackup.backup(dataDir: dataDir.path, to: out)
        print("backup of \(summary) written to \(out)")
    }
}

/// `as-server restore`: a backup into an empty data directory (a new host, a lost disk).
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Put a backup (`as-server backup --out DIR`) into an empty data directory, checking both; then start `serve`.",
        discussion: "Nodes enrolled before the backup keep their names, addresses and certificates; later enrolments and revocations are not in it."
    )

    @OptionGroup var dataDir: DataDirOption
    @Option(help: "The backup directory.") var from: String

    func run() throws {
        let summary = try ASBackup.restore(from: from, to: dataDir.path)
        print("restored \(summary) into \(dataDir.path)")
    }
}
