import ArgumentParser
import CyphonicCore
import CyphonicService
import CyphonicTRS

/// `trs-relay`: the Tunnel Relay Service (relays end-to-end encrypted capsules).
@main
struct TRSRelayCommand: AsyncParsableCommand, ConfigChecking {
    /// Errors of the commands as plain sentences (CyphonicService, PlainErrors.swift).
    static func main() async { await mainWithPlainErrors() }

    static let configuration = CommandConfiguration(
        commandName: "trs-relay",
        abstract: "CYPHONIC Tunnel Relay Service: relays end-to-end encrypted tunnels that cannot go direct.",
        discussion: """
            Nodes reach the relay when the NMS routes their tunnel through it (a symmetric NAT on one side and a NAT on the \
            other, a hole punch that failed, or no IP family in common). The relay checks each path's NMS authorization \
            offline and forwards the tunnel's datagrams unchanged, in order, across IPv4 and IPv6; it never holds a tunnel key.
            """,
        version: "trs-relay \(CyphonicVersion.software), protocol \(CyphonicVersion.protocolVersion)",
        subcommands: [ServeCommand.self, StatusCommand.self])

    @Option(name: .customLong("check-config"), help: "Check a config file of `serve` (every key, the bundle it names) and exit.")
    var checkConfig: String?

    func run() async throws {
        guard let checkConfig else { throw CleanExit.helpRequest(self) }
        do {
            let launch = try TRSConfig.layered(file: checkConfig, flags: TRSConfig()).launch()
            print("config ok: \(checkConfig): relay \(launch.identity.name) on \(launch.settings.listen.map(\.description).joined(separator: " "))")
        } catch let e as ConfigFileError {
            throw PlainError(e.checking(checkConfig))
        }
    }
}
