import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire
import Testing

@testable import CyphonicSignaling

/// A CA, a service (AS) key + certificate, and a client key, for the handshake tests.
struct Fixture {
    let ca: CertificateAuthority
    let serviceKey = try! X25519PrivateKey()
    let service: Certificate
    let clientKey = try! X25519PrivateKey()
    var verifier: CertificateVerifier { try! CertificateVerifier(trustAnchor: ca.certificate) }

    init(role: CertificateRole = .as) throws {
        ca = try CertificateAuthority.create(name: "Test CA", key: try Ed25519PrivateKey(), serial: 1, validFrom: unixNow() - 60)
        service = try ca.issue(
            .service(role, name: try FQDN("as.cyphonic.internal"), serial: 2, validFrom: unixNow() - 60, days: 1),
            publicKey: serviceKey.publicKey)
    }
}

@Suite struct ServiceHandshakeTests {
    @Test func handshakeCarriesPayloadAndSessionsTalkBothWays() throws {
        let f = try Fixture()
        let client = try ServiceClientHandshake(
            localStatic: f.clientKey, verifier: f.verifier, role: .as,
            serviceName: "as.cyphonic.internal")
        let server = try ServiceServerHandshake(localStatic: f.serviceKey, certificate: f.service)
        let response = try server.respond(to: try Datagram.decode(try client.initiation()))
        let (completion, clientSession) = try client.complete(response: response, payload: [1, 2, 3])
        let (clientStatic, payload, serverSession) = try server.finish(try Datagram.decode(completion))
        #expect(clientStatic == f.clientKey.publicKey)
        #expect(payload == [1, 2, 3])
        #expect(client.serviceCertificate == f.service)
        let m = SignalingMessage(transactionID: 9, body: .keepAlive)
        #expect(try serverSession.open(try clientSession.seal(m)) == m)
        let r = SignalingMessage(transactionID: 9, body: .keepAliveAck(observed: Endpoint("198.19.0.5:30000")!))
        #expect(try clientSession.open(try serverSession.seal(r)) == r)
    }

    @Test func replayedAndTamperedSignalingIsRefused() throws {
        let (c, s) = try Self.established()
        let sealed = try c.seal(SignalingMessage(transactionID: 1, body: .keepAlive))
        _ = try s.open(sealed)
        #expect(throws: SessionError.replayed(0)) { try s.open(sealed) }
        var bad = try c.seal(SignalingMessage(transactionID: 2, body: .keepAlive))
        bad[bad.count - 1] ^= 1
        #expect(throws: SessionError.authenticationFailed) { try s.open(bad) }
        var header = try c.seal(SignalingMessage(transactionID: 3, body: .keepAlive))
        header[2] = StatusCode.revoked.rawValue  // the header is authenticated data
        #expect(throws: SessionError.authenticationFailed) { try s.open(header) }
        #expect(throws: SessionError.self) { try s.open([1, 2, 3]) }
    }

    @Test func serviceFromAnotherCAIsRefused() throws {
        let f = try Fixture()
        let other = try Fixture()
        let client = try ServiceClientHandshake(localStatic: f.clientKey, verifier: other.verifier, role: .as)
        let server = try ServiceServerHandshake(localStatic: f.serviceKey, certificate: f.service)
        let response = try server.respond(to: try Datagram.decode(try client.initiation()))
        #expect(throws: SessionError.self) { try client.complete(response: response, payload: []) }
    }

    @Test func serviceWithWrongRoleIsRefused() throws {
        let f = try Fixture(role: .nms)
        let client = try ServiceClientHandshake(localStatic: f.clientKey, verifier: f.verifier, role: .as)
        let server = try ServiceServerHandshake(localStatic: f.serviceKey, certificate: f.service)
        let response = try server.respond(to: try Datagram.decode(try client.initiation()))
        #expect(throws: SessionError.self) { try client.complete(response: response, payload: []) }
    }

    @Test func certificateForAnotherKeyIsRefused() throws {
        // A server presenting a valid certificate it does not hold the key of.
        let f = try Fixture()
        let impostorKey = try X25519PrivateKey()
        let client = try ServiceClientHandshake(localStatic: f.clientKey, verifier: f.verifier, role: .as)
        let server = try ServiceServerHandshake(localStatic: impostorKey, certificate: f.service)
        let response = try server.respond(to: try Datagram.decode(try client.initiation()))
        #expect(throws: SessionError.untrustedPeer("service certificate does not carry the key the handshake proved")) {
            try client.complete(response: response, payload: [])
        }
    }

    @Test func completionForAnotherHandshakeIsRefused() throws {
        let f = try Fixture()
        let client = try ServiceClientHandshake(localStatic: f.clientKey, verifier: f.verifier, role: .as)
        let server = try ServiceServerHandshake(localStatic: f.serviceKey, certificate: f.service)
        let response = try server.respond(to: try Datagram.decode(try client.initiation()))
        let (completion, _) = try client.complete(response: response, payload: [])
        var d = try Datagram.decode(completion)
        d.header.receiverIndex ^= 0xff
        #expect(throws: SessionError.wrongSession(d.header.receiverIndex)) { try server.finish(d) }
    }

    static func established() throws -> (SignalingSession, SignalingSession) {
        let f = try Fixture()
        let client = try ServiceClientHandshake(localStatic: f.clientKey, verifier: f.verifier, role: .as)
        let server = try ServiceServerHandshake(localStatic: f.serviceKey, certificate: f.service)
        let response = try server.respond(to: try Datagram.decode(try client.initiation()))
        let (completion, c) = try client.complete(response: response, payload: [])
        let (_, _, s) = try server.finish(try Datagram.decode(completion))
        return (c, s)
    }
}
