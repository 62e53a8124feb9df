import ArgumentParser
import CyphonicCore
import CyphonicCrypto
import Foundation

/// `cyphonic-node`: the CYPHONIC node daemon and its tools.
@main
struct CyphonicNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cyphonic-node",
        abstract: "CYPHONIC node: the tunnel daemon (run, status, forget) and enrolment with the AS (enroll, login).",
        version: "cyphonic-node \(CyphonicVersion.software), protocol \(CyphonicVersion.protocolVersion)",
        subcommands: [RunCommand.self, StatusCommand.self, ForgetCommand.self, EnrollCommand.self, LoginCommand.self, GenerateKey.self])
}

/// Generates the node's X25519 static key locally; the private key never leaves the node.
struct GenerateKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "genkey",
        abstract: "Generate an X25519 static key: write the private key (mode 0600) and print the public key in hex.")

    @Option(name: .shortAndLong, help: "File for the private key (32 raw bytes, hex, mode 0600). Refuses to overwrite.")
    var output: String

    func run() throws {
        guard !FileManager.default.fileExists(atPath: output) else {
            throw ValidationError("--output: \(output) exists; refusing to overwrite a key")
        }
        let key = try X25519PrivateKey()
        let text = Hex.encode(key.rawRepresentation.bytes) + "\n"
        guard
            FileManager.default.createFile(
                atPath: output, contents: Data(text.utf8),
                attributes: [.posixPermissions: 0o600])
        else {
            throw ValidationError("--output: cannot create \(output)")
        }
        print(Hex.encode(key.publicKey.bytes))
    }
}
