import ArgumentParser
import CyphonicCore

/// `as-server`: the Authentication Service (root CA, enrolment, login, virtual IPs).
@main
struct ASServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "as-server",
        abstract: "CYPHONIC Authentication Service.",
        discussion: """
            This build provides the shared foundation (crypto, Noise, PKI, wire codec). \
            The service itself (init, node, service, serve) is not implemented yet.
            """,
        version: "as-server \(CyphonicVersion.software), protocol \(CyphonicVersion.protocolVersion)")
}
