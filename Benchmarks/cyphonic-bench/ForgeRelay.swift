import ArgumentParser
import CyphonicCore
import CyphonicCrypto
import CyphonicNMS
import CyphonicNode
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Foundation

/// `cyphonic-bench forge-relay`: an attacker's relay requests for the NAT lab's test
/// (lab/smoke-nat.sh). With a real node's identity (its state directory) it connects to
/// the relay and asks for a path with an authorization that (1) is signed by a key that
/// is not the NMS's, (2) is signed by the NMS's key (`--signing-key`: the test's
/// stand-in for a replayed old one) but expired, (3) is signed by it but names two other
/// nodes; each must be refused.
/// Exits 0 when all three are refused, 1 (saying which) when one was granted.
struct ForgeRelay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forge-relay", abstract: "Send forged relay requests with a node's identity; exit 0 when the relay refuses them all.")

    @Option(help: "The relay (HOST:PORT).") var relay: String
    @Option(name: .customLong("state-dir"), help: "A node's state directory (node.key, node.pem, ca.pem).") var stateDir: String
    @Option(name: .customLong("signing-cert"), help: "The NMS signing certificate (PEM) to attach to the forgeries.") var signingCert: String
    @Option(name: .customLong("signing-key"), help: "The NMS signing key (PEM), for the expired and wrong-node cases.") var signingKey: String

    func run() throws {
        guard let endpoint = Endpoint(relay) else { throw ValidationError("--relay: \(relay) is not HOST:PORT or [V6]:PORT") }
        let state = NodeStateDirectory(path: stateDir)
        let key = try state.loadOrCreateKey()
        let node = SimulatedNode(
            key: key, certificate: try state.certificate(), verifier: try CertificateVerifier(trustAnchor: try state.caCertificate()),
            role: .trs)
        let signing = try Certificate(pem: try String(contentsOfFile: signingCert, encoding: .utf8))
        let nmsKey = try KeyFiles.ed25519(pem: try String(contentsOfFile: signingKey, encoding: .utf8))
        let socket = try UDPSocket(bind: Endpoint(address: endpoint.address.isIPv4 ? IPAddress("0.0.0.0")! : IPAddress("::")!, port: 0))
        try socket.setReceiveTimeout(milliseconds: 2000)
        let answer = try node.register(with: endpoint, over: socket)
        guard case .registrationAck = answer.body else { throw ValidationError("the relay did not accept the node: \(answer.body)") }
        let other = [UInt8](repeating: 0x42, count: 32)
        let now = UInt64(unixNowSeconds())
        let cases: [(String, PathAuthorization)] = [
            (
                "signed by another key",
                try PathAuthorization.sign(
                    processCode: .relay, pathID: 0xf0_0001, expires: now + 60, initiatorKey: key.publicKey.bytes, responderKey: other,
                    with: try Ed25519PrivateKey())
            ),
            (
                "expired",
                try PathAuthorization.sign(
                    processCode: .relay, pathID: 0xf0_0002, expires: now - 60, initiatorKey: key.publicKey.bytes, responderKey: other,
                    with: nmsKey)
            ),
            (
                "naming two other nodes",
                try PathAuthorization.sign(
                    processCode: .relay, pathID: 0xf0_0003, expires: now + 60, initiatorKey: other, responderKey: [UInt8](repeating: 0x43, count: 32),
                    with: nmsKey)
            ),
        ]
        var granted: [String] = []
        for (what, authorization) in cases {
            let (datagram, _) = try node.seal(
                .relayRequest(
                    RelayRequest(pathID: authorization.pathID, authorization: authorization.bytes, signingCertificate: signing.derBytes)))
            let reply = try node.open(try node.exchange(socket, datagram, to: endpoint))
            switch reply.body {
            case .error(let code, let text): print("forged request (\(what)): refused, \(code): \(text)")
            default:
                print("forged request (\(what)): GRANTED: \(reply.body)")
                granted.append(what)
            }
        }
        socket.close()
        if !granted.isEmpty { throw ExitCode.failure }
    }
}
