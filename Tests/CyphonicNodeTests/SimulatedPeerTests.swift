import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicSignaling
import CyphonicWire
import Testing

@testable import CyphonicNode

/// `SimulatedPeer` (the `cyphonic-bench peers` load generator) speaks the node's tunnel
/// handshake: checked here against a responder built from the Noise primitives and the
/// node's protocol constants, message by message, including a cookie retry, a responder
/// certificate for another name (refused), and a keepalive that opens with the session key.
@Suite struct SimulatedPeerTests {
    let now = unixNow()

    func pki() throws -> (CertificateAuthority, CertificateVerifier) {
        let ca = try CertificateAuthority.create(name: "Test CA", key: try Ed25519PrivateKey(), serial: 1, validFrom: now - 60)
        return (ca, try CertificateVerifier(trustAnchor: ca.certificate))
    }

    func node(_ ca: CertificateAuthority, _ name: String, _ last: UInt8) throws -> (X25519PrivateKey, Certificate) {
        let key = try X25519PrivateKey()
        let cert = try ca.issue(
            .node(fqdn: try FQDN(name), addresses: [IPAddress.v4(198, 18, 0, last)], serial: UInt64(last), validFrom: now - 60, days: 1),
            publicKey: key.publicKey)
        return (key, cert)
    }

    @Test func handshakeWithCookieRetryAndKeepalive() throws {
        let (ca, verifier) = try pki()
        let (peerKey, peerCert) = try node(ca, "sim1.cyphonic.internal", 9)
        let (respKey, respCert) = try node(ca, "responder.cyphonic.internal", 10)
        let peer = SimulatedPeer(key: peerKey, certificate: peerCert, verifier: verifier, localIndex: 77)

        // Message 1, padded as nodes pad it; the responder asks for a cookie.
        let first = try Datagram.decode(try peer.initiation())
        guard case .tunnelRequest(let sender, _, _) = first.body else {
            Issue.record("not a tunnel request")
            return
        }
        #expect(sender == 77)
        #expect(try first.encode().count == HandshakeGuard.paddedInitiationSize)
        let cookie = [UInt8](repeating: 0x5a, count: HandshakeGuard.cookieSize)
        guard case .send(let retried) = try peer.handle(try Datagram(.cookieReply(cookie: cookie), receiverIndex: 77).encode(), responder: "x")
        else {
            Issue.record("no retry")
            return
        }
        guard case .tunnelRequest(_, _, let noise) = try Datagram.decode(retried).body else {
            Issue.record("not a request")
            return
        }
        #expect(HandshakeGuard.cookie(inNoiseMessage1: noise) == cookie)

        // The responder: message 1 -> message 2 with its certificate.
        let hs = try NoiseHandshake(protocol: tunnelNoiseProtocol, role: .responder, prologue: tunnelPrologue, localStatic: respKey)
        _ = try hs.readMessage(noise)
        let m2 = try Datagram(.tunnelResponse(senderIndex: 555, noise: try hs.writeMessage(payload: respCert.derBytes)), receiverIndex: 77)
            .encode()
        // A datagram for another index is not ours.
        let other = try Datagram(.tunnelResponse(senderIndex: 555, noise: [UInt8](repeating: 1, count: 64)), receiverIndex: 78).encode()
        guard case .ignored = try peer.handle(other, responder: "responder.cyphonic.internal") else {
            Issue.record("took another index")
            return
        }
        // A message 2 to our index that does not authenticate (a late answer to an earlier
        // attempt) is ignored and leaves the handshake usable.
        let stale = try Datagram(.tunnelResponse(senderIndex: 554, noise: [UInt8](repeating: 7, count: 200)), receiverIndex: 77).encode()
        guard case .ignored = try peer.handle(stale, responder: "responder.cyphonic.internal") else {
            Issue.record("took a stale answer")
            return
        }
        #expect(peer.remoteIndex == nil)
        guard case .send(let third) = try peer.handle(m2, responder: "responder.cyphonic.internal") else {
            Issue.record("no message 3")
            return
        }
        #expect(peer.remoteIndex == 555)
        let d3 = try Datagram.decode(third)
        guard case .handshakeCompletion(let m3) = d3.body else {
            Issue.record("not message 3")
            return
        }
        #expect(d3.header.receiverIndex == 555)
        #expect(try hs.readMessage(m3) == peerCert.derBytes)
        let (_, receive) = try hs.split()

        // A keepalive: an empty capsule on the session, counter 0 then 1.
        let opener = try receive.key!.keyBytes.withUnsafeBytes { try AEADKey(tunnelNoiseProtocol.cipher, key: $0) }
        for expected: UInt64 in [0, 1] {
            let k = try #require(try peer.keepalive())
            let header = try k.withUnsafeBytes { try Header.decode(UnsafeRawBufferPointer(rebasing: $0[0..<Header.size])) }
            #expect(header.type == .capsule && header.receiverIndex == 555 && header.counter == expected)
            #expect(try opener.open(nonce: expected, aad: Array(k[0..<Header.size]), ciphertext: Array(k[Header.size...])).isEmpty)
        }
    }

    @Test func responderWithAnotherNameIsRefused() throws {
        let (ca, verifier) = try pki()
        let (peerKey, peerCert) = try node(ca, "sim2.cyphonic.internal", 11)
        let (respKey, respCert) = try node(ca, "mallory.cyphonic.internal", 12)
        let peer = SimulatedPeer(key: peerKey, certificate: peerCert, verifier: verifier, localIndex: 5)
        guard case .tunnelRequest(_, _, let noise) = try Datagram.decode(try peer.initiation()).body else { return }
        let hs = try NoiseHandshake(protocol: tunnelNoiseProtocol, role: .responder, prologue: tunnelPrologue, localStatic: respKey)
        _ = try hs.readMessage(noise)
        let m2 = try Datagram(.tunnelResponse(senderIndex: 9, noise: try hs.writeMessage(payload: respCert.derBytes)), receiverIndex: 5).encode()
        #expect(throws: (any Error).self) { _ = try peer.handle(m2, responder: "responder.cyphonic.internal") }
        #expect(peer.remoteIndex == nil)
        #expect(try peer.keepalive() == nil)
    }
}
