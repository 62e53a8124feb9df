import ArgumentParser
import CyphonicCore

/// `as-server`: the Authentication Service — root CA, enrolment, login, virtual IPs, FQDNs, revocation.
@main
struct ASServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "as-server",
        abstract: "CYPHONIC Authentication Service: root CA, enrolment, login, virtual IPs and FQDNs, revocation.",
        discussion: """
            Typical use:
              as-server init --data-dir /var/lib/cyphonic-as --domain cyphonic.internal \\
                  --vip4 198.18.0.0/16 --vip6 2001:db8:c0ff:ee::/64 --nms 198.19.0.2:4502 --trs 198.19.0.3:4503
              as-server node add init01          # prints a one-time enrolment token
              as-server serve                    # UDP 4501 (IPv4 and IPv6), metrics on 127.0.0.1:9451
            """,
        version: "as-server \(CyphonicVersion.software), protocol \(CyphonicVersion.protocolVersion)",
        subcommands: [InitCommand.self, NodeCommand.self, ServiceCommand.self, ServeCommand.self, StatusCommand.self])
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
