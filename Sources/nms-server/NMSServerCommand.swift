import ArgumentParser
import CyphonicCore
import CyphonicService

/// `nms-server`: the Node Management Service (registration, route selection, signaling).
@main
struct NMSServerCommand: AsyncParsableCommand {
    /// Errors of the commands as plain sentences (CyphonicService, PlainErrors.swift).
    static func main() async { await mainWithPlainErrors() }

    static let configuration = CommandConfiguration(
        commandName: "nms-server",
        abstract: "CYPHONIC Node Management Service: node registration, NAT discovery, route selection and tunnel signaling.",
        discussion: "Deploy with the bundle `as-server service add nms NAME --out DIR` writes; see docs/operations.md.",
        version: "nms-server \(CyphonicVersion.software), protocol \(CyphonicVersion.protocolVersion)",
        subcommands: [ServeCommand.self, StatusCommand.self])
}
