import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicService
import Foundation

/// `as-server`: the Authentication Service — root CA, enrolment, login, virtual IPs, FQDNs, revocation.
@main
struct ASServerCommand: AsyncParsableCommand, ConfigChecking {
    /// Errors of the commands as plain sentences (CyphonicService, PlainErrors.swift).
    static func main() async {
        // Everything the AS writes (database, keys, bundles, backups) is private unless
        // a file is made public on purpose (certificates, 0644).
        umask(0o077)
        await mainWithPlainErrors()
    }

    static let configuration = CommandConfiguration(
        commandName: "as-server",
        abstract: "CYPHONIC Authentication Service: root CA, enrolment, login, virtual IPs and FQDNs, revocation.",
        discussion: """
            Typical use (each line fits the help's width, so it pastes as is):
              as-server init --data-dir /var/lib/cyphonic-as \\
                --domain cyphonic.internal \\
                --vip4 198.18.0.0/16 --vip6 2001:db8:c0ff:ee::/64 \\
                --nms 198.19.0.2:4502 --trs 198.19.0.3:4503
              as-server node add init01  # prints a one-time token
              as-server serve            # UDP 4501, metrics :9451
              as-server --check-config /etc/cyphonic/as-server.json
            """,
        version: "as-server \(CyphonicVersion.software), protocol \(CyphonicVersion.protocolVersion)",
        subcommands: [
            InitCommand.self, NodeCommand.self, ServiceCommand.self, ServeCommand.self, StatusCommand.self, EndpointsCommand.self, BackupCommand.self,
            RestoreCommand.self,
        ])

    @Option(name: .customLong("check-config"), help: "Check a config file of `serve` (every key, the data directory it names) and exit.")
    var checkConfig: String?

    func run() async throws {
        guard let checkConfig else { throw CleanExit.helpRequest(self) }
        do {
            let launch = try ASServeConfig.layered(file: checkConfig, flags: ASServeConfig()).launch()
            print("config ok: \(checkConfig): AS data in \(launch.dataDir), on \(launch.listen.map(\.description).joined(separator: " "))")
        } catch let e as ConfigFileError {
            throw PlainError(e.checking(checkConfig))
        }
    }
}

/// The data directory option shared by every subcommand.
struct DataDirOption: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "AS data directory (database, CA key, service key).")
    var path: String = "/var/lib/cyphonic-as"
}

/// `--json` for scripts.
struct OutputOption: ParsableArguments {
    @Flag(help: "Print JSON instead of text.") var json = false
}
