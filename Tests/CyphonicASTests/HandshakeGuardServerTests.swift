import CyphonicAS
import CyphonicCore
import CyphonicCrypto
import CyphonicNode
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Foundation
import Logging
import Testing

/// The AS behind the same handshake guard as the node (issue 8, defect 2): an
/// unverified initiation gets a cookie no larger than itself and costs no handshake
/// state; a real client repeats the cookie and logs in.
@Suite(.serialized) struct HandshakeGuardServerTests {
    func server(_ t: TempAS, loadThreshold: Int) throws -> ASServer {
        var limits = ASServerLimits()
        limits.handshakeGuard.loadThresholdPerSecond = loadThreshold
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let s = ASServer(authority: t.authority, listen: [Endpoint("127.0.0.1:0")!], metrics: ASMetrics(), limits: limits, logger: logger)
        try s.start()
        return s
    }

    /// One datagram from `socket` (its receive timeout bounds the wait).
    func receive(_ socket: UDPSocket) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let (n, _) = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
        return Array(buffer[0..<n])
    }

    @Test func unpaddedInitiationGetsASmallCookieAndNoState() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let s = try server(t, loadThreshold: 1000)
        defer { s.stop() }
        // An old-style (unpadded) message 1: 52 bytes.
        let message1 = try Datagram(
            .handshakeInitiation(senderIndex: 77, noise: Array(try X25519PrivateKey().publicKey.bytes)),
            counter: 5
        ).encode()
        let socket = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        defer { socket.close() }
        try socket.setReceiveTimeout(milliseconds: 2000)
        try socket.send(message1, to: s.boundEndpoints[0])
        let answer = try receive(socket)
        let reply = try Datagram.decode(answer)
        #expect(reply.header.type == .cookieReply && reply.header.receiverIndex == 77)
        #expect(answer.count <= message1.count, "\(answer.count) bytes back for \(message1.count)")
        #expect(s.handshakeGuard.counters.cookiesSent == 1 && s.handshakeGuard.counters.proceeded == 0)
    }

    @Test func clientsLogInThroughTheCookieRoundTripUnderLoad() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        // Threshold 0: the AS is "under load" from the first initiation on.
        let s = try server(t, loadThreshold: 0)
        defer { s.stop() }
        let ticket = try t.authority.addNode(name: "init01", group: nil)
        let key = try X25519PrivateKey()
        let client = ASClient(server: s.boundEndpoints[0], caCertificate: t.directory.ca.certificate)
        let provision = try client.login(name: "init01", credential: .token(ticket.token), key: key)
        #expect(provision.fqdn.value == "init01.cyphonic.internal")
        #expect(s.handshakeGuard.counters.cookiesSent >= 1 && s.handshakeGuard.counters.cookiesAccepted >= 1)
        // An idle AS answers a padded message 1 at once (one round trip, no cookie).
        let t2 = try TempAS()
        defer { t2.cleanup() }
        let idle = try server(t2, loadThreshold: 1000)
        defer { idle.stop() }
        _ = try ASClient(server: idle.boundEndpoints[0], caCertificate: t2.directory.ca.certificate).revocationList(key: key)
        #expect(idle.handshakeGuard.counters.cookiesSent == 0 && idle.handshakeGuard.counters.proceeded == 1)
    }

    /// A forged message 3 with the index the AS chose does not cancel the genuine login
    /// (issue 8, defect 7): the pending handshake survives a message that fails.
    @Test func forgedMessage3DoesNotKillAPendingLogin() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let s = try server(t, loadThreshold: 1000)
        defer { s.stop() }
        let ticket = try t.authority.addNode(name: "init01", group: nil)
        let key = try X25519PrivateKey()
        let hs = try ServiceClientHandshake(
            localStatic: key, verifier: try CertificateVerifier(trustAnchor: t.directory.ca.certificate),
            role: .as)
        let socket = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        defer { socket.close() }
        try socket.setReceiveTimeout(milliseconds: 3000)
        try socket.send(try hs.initiation(), to: s.boundEndpoints[0])
        let response = try receive(socket)
        let payload = try SignalingMessage(transactionID: 1, body: .login(Login(name: "init01", credential: .token(ticket.token)))).encode()
        let (completion, session) = try hs.complete(response: response, payload: payload)
        var forged = completion
        forged[forged.count - 1] ^= 0xff
        try socket.send(forged, to: s.boundEndpoints[0])
        usleep(300_000)
        try socket.send(completion, to: s.boundEndpoints[0])
        let reply = try session.open(try receive(socket))
        guard case .provision(let p) = reply.body else {
            Issue.record("expected a provision, got \(reply.body)")
            return
        }
        #expect(p.fqdn.value == "init01.cyphonic.internal")
    }
}
