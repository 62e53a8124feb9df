import ArgumentParser
import CyphonicCore

/// `trs-relay`: the Tunnel Relay Service (relays end-to-end encrypted capsules).
@main
struct TRSRelayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trs-relay",
        abstract: "CYPHONIC Tunnel Relay Service.",
        discussion: "This build provides the shared foundation only; the relay is not implemented yet.",
        version: "trs-relay \(CyphonicVersion.software), protocol \(CyphonicVersion.protocolVersion)")
}
