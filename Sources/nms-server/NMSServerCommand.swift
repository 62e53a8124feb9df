import ArgumentParser
import CyphonicCore

/// `nms-server`: the Node Management Service (registration, route selection, signaling).
@main
struct NMSServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nms-server",
        abstract: "CYPHONIC Node Management Service.",
        discussion: "This build provides the shared foundation only; the service is not implemented yet.",
        version: "nms-server \(CyphonicVersion.software), protocol \(CyphonicVersion.protocolVersion)")
}
