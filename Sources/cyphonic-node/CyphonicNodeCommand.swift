import ArgumentParser
import CyphonicCore
import CyphonicCrypto
import CyphonicNode
import CyphonicPKI
import CyphonicService
import Foundation

/// `cyphonic-node`: the CYPHONIC node daemon and its tools.
@main
struct CyphonicNodeCommand: AsyncParsableCommand, ConfigChecking {
    /// Errors of the commands as plain sentences (CyphonicService, PlainErrors.swift).
    static func main() async { await mainWithPlainErrors() }

    static let configuration = CommandConfiguration(
        commandName: "cyphonic-node",
        abstract: "CYPHONIC node: the tunnel daemon (run, status, forget) and enrolment with the AS (enroll, login).",
        version: "cyphonic-node \(CyphonicVersion.software), protocol \(CyphonicVersion.protocolVersion)",
        subcommands: [RunCommand.self, StatusCommand.self, ForgetCommand.self, EnrollCommand.self, LoginCommand.self, GenerateKey.self])

    @Option(
        name: .customLong("check-config"),
        help: "Check a config file of `run` (every key, the key, certificate and CA files it names) and exit; the same as run --check --config FILE.")
    var checkConfig: String?

    func run() async throws {
        guard let checkConfig else { throw CleanExit.helpRequest(self) }
        do {
            let config = try NodeConfig.load(path: checkConfig)
            try config.validate()
            let notes = try config.checkForRun()
            print("config ok: \(checkConfig)" + notes.map { "\n  note: \($0)" }.joined())
        } catch let e as ConfigFileError {
            throw PlainError(e.checking(checkConfig))
        }
    }
}

/// Generates the node's X25519 static key locally; the private key never leaves the node.
struct GenerateKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "genkey",
        abstract:
            "Generate an X25519 static key: write the private key as PEM (mode 0600, the form `run` reads as `key`) and print the public key in hex.")

    @Option(name: .shortAndLong, help: "File for the private key (PEM, mode 0600; what config `key` reads). Refuses to overwrite.")
    var output: String

    func run() throws {
        guard !FileManager.default.fileExists(atPath: output) else {
            throw ValidationError("--output: \(output) exists; refusing to overwrite a key")
        }
        let key = try X25519PrivateKey()
        let text = try KeyFiles.pem(key)
        guard
            FileManager.default.createFile(
                atPath: output, contents: Data(text.utf8),
                attributes: [.posixPermissions: 0o600])
        else {
            let parent = (output as NSString).deletingLastPathComponent
            let why = FileManager.default.fileExists(atPath: parent.isEmpty ? "." : parent) ? "permission denied" : "no directory \(parent)"
            throw ValidationError("--output: cannot create \(output): \(why)")
        }
        print(Hex.encode(key.publicKey.bytes))
    }
}
