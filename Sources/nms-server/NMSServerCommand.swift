import ArgumentParser
import CyphonicCore
import CyphonicNMS
import CyphonicService

/// `nms-server`: the Node Management Service (registration, route selection, signaling).
@main
struct NMSServerCommand: AsyncParsableCommand, ConfigChecking {
    /// Errors of the commands as plain sentences (CyphonicService, PlainErrors.swift).
    static func main() async { await mainWithPlainErrors() }

    static let configuration = CommandConfiguration(
        commandName: "nms-server",
        abstract: "CYPHONIC Node Management Service: node registration, NAT discovery, route selection and tunnel signaling.",
        discussion: "Deploy with the bundle `as-server service add nms NAME --out DIR` writes; see docs/deploy.md and docs/operations.md.",
        version: "nms-server \(CyphonicVersion.software), protocol \(CyphonicVersion.protocolVersion)",
        subcommands: [ServeCommand.self, StatusCommand.self])

    @Option(name: .customLong("check-config"), help: "Check a config file of `serve` (every key, the bundle, policy and lists it names) and exit.")
    var checkConfig: String?

    func run() async throws {
        guard let checkConfig else { throw CleanExit.helpRequest(self) }
        do {
            let launch = try NMSConfig.layered(file: checkConfig, flags: NMSConfig()).launch()
            print("config ok: \(checkConfig): nms \(launch.identity.name) on \(launch.settings.listen.map(\.description).joined(separator: " "))")
        } catch let e as ConfigFileError {
            throw PlainError(e.checking(checkConfig))
        }
    }
}
