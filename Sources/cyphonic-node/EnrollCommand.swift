import ArgumentParser
import CyphonicCore
import CyphonicNode
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import CyphonicSignaling
import CyphonicWire
import Foundation

/// First login with a one-time token: generates the node's key locally (0600), logs in,
/// and stores key, certificate and assignments in the state directory. The token comes
/// from `--token` or, kept out of `/proc/*/cmdline`, from `--token-file PATH` (`-` = stdin).
struct EnrollCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Enrol this node with the AS using a one-time token; stores key, certificate and addresses in --state-dir.")

    @Option(name: .customLong("as"), help: "AS endpoint, HOST:PORT or [V6]:PORT.") var asEndpoint: String
    @Option(help: "CA certificate (PEM) to pin, from `as-server init`.") var ca: String
    @Option(
        help: "Enrolment token printed by `as-server node add` (NAME.SECRET); visible to other local users in the process list, prefer --token-file.")
    var token: String?
    @Option(name: .customLong("token-file"), help: "Read the enrolment token from this file (`-` = standard input); a trailing newline is ignored.")
    var tokenFile: String?
    @Option(name: .customLong("state-dir"), help: "Directory for node.key, node.pem, ca.pem, node.json.")
    var stateDir = "/var/lib/cyphonic-node"
    @Option(help: "Seconds to wait for each AS answer.") var timeout = 1.0

    func validate() throws {
        switch (token, tokenFile) {
        case (nil, nil): throw ValidationError("give the enrolment token with --token-file PATH (or - for stdin) or --token NAME.SECRET")
        case (.some, .some): throw ValidationError("--token and --token-file are mutually exclusive: give one of them")
        default: break
        }
    }

    func run() throws {
        let server: Endpoint
        do { server = try HostPort.resolve(asEndpoint)[0] } catch { throw ValidationError("--as: \(error)") }
        let (token, field) = try Self.readToken(token: self.token, file: tokenFile)
        guard let dot = token.lastIndex(of: "."), dot != token.startIndex else {
            throw ValidationError("\(field): expected NAME.SECRET as printed by `as-server node add`")
        }
        let name = String(token[..<dot])
        let caCert: Certificate
        let caText: String
        do { caText = try readTextFile(ca, what: "the CA certificate") } catch { throw ValidationError("--ca: \(error)") }
        do { caCert = try Certificate(pem: caText) } catch { throw ValidationError("--ca: \(ca) does not hold a PEM certificate: \(error)") }
        do { _ = try CertificateVerifier(trustAnchor: caCert) } catch {
            throw ValidationError("--ca: \(ca) is not a CA certificate (\(error)); give the ca.pem that `as-server init` wrote")
        }
        let state = NodeStateDirectory(path: stateDir)
        if state.isEnrolled {
            let fqdn = (try? state.assignment().fqdn) ?? "a node"
            throw PlainError(
                "\(stateDir) holds an enrolment already (\(fqdn)); log in again with `cyphonic-node login --state-dir \(stateDir)`, or enrol into another --state-dir"
            )
        }
        let hadKey = state.hasKey
        let key = try state.loadOrCreateKey()
        var client = ASClient(server: server, caCertificate: caCert)
        client.timeoutMilliseconds = Int(timeout * 1000)
        let provision: Provision
        do { provision = try client.login(name: name, credential: .token(token), key: key) } catch {
            // A failed first enrolment leaves no key behind (a retry makes a fresh one).
            if !hadKey { state.removeUnusedKey() }
            throw PlainError("enrolment failed: \(error)\(hadKey ? " (the key in \(stateDir) is kept and used again on retry)" : "")")
        }
        try state.save(provision, name: name, asEndpoint: asEndpoint)
        let wrote = try state.writeDaemonConfig(virtualIPv4: provision.virtualIPv4, virtualIPv6: provision.virtualIPv6)
        print("enrolled \(provision.fqdn)  \(provision.virtualIPv4)  \(provision.virtualIPv6)  (node id \(provision.nodeID))")
        print("\(wrote ? "wrote" : "kept") \(state.configFile); start the daemon with: cyphonic-node run --config \(state.configFile)")
    }
}

extension EnrollCommand {
    /// The token from `--token` or `--token-file` (`-` = stdin), trailing CR/LF removed,
    /// and the name of the option it came from (for error messages).
    static func readToken(token: String?, file: String?) throws -> (token: String, field: String) {
        if let token { return (token, "--token") }
        guard let file else { throw ValidationError("give the enrolment token with --token-file PATH or --token NAME.SECRET") }
        let text: String
        do { text = try readEnrolmentToken(path: file) } catch { throw ValidationError("--token-file: \(error)") }
        return (text, "--token-file")
    }
}

/// A later login with the stored certificate (renews it when it nears expiry).
struct LoginCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login", abstract: "Log in with the stored certificate; saves a renewed certificate and prints the assignment.")

    @Option(name: .customLong("state-dir"), help: "Directory written by `enroll`.") var stateDir = "/var/lib/cyphonic-node"
    @Option(name: .customLong("as"), help: "AS endpoint (default: the one used at enrolment).") var asEndpoint: String?
    @Option(help: "Seconds to wait for each AS answer.") var timeout = 1.0

    func run() throws {
        let state = NodeStateDirectory(path: stateDir)
        let assignment = try state.assignment()
        let server: Endpoint
        do { server = try HostPort.resolve(asEndpoint ?? assignment.asEndpoint)[0] } catch { throw ValidationError("--as: \(error)") }
        var client = ASClient(server: server, caCertificate: try state.caCertificate())
        client.timeoutMilliseconds = Int(timeout * 1000)
        let provision = try client.login(
            name: assignment.name, credential: .certificate(der: try state.certificate().derBytes),
            key: try state.loadOrCreateKey())
        // The endpoint as given (a DNS name stays a name).
        try state.save(provision, name: assignment.name, asEndpoint: asEndpoint ?? assignment.asEndpoint)
        print("logged in \(provision.fqdn)  \(provision.virtualIPv4)  \(provision.virtualIPv6)  (node id \(provision.nodeID))")
    }
}
