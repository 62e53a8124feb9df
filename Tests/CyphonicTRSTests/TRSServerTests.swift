import CyphonicCore
import CyphonicCrypto
import CyphonicNMS
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicTRS
import CyphonicWire
import Foundation
import Logging
import Testing

/// trs-relay over real UDP on loopback with real Noise sessions (issue 11): a path the
/// NMS authorized is relayed in order between the two nodes that proved its keys;
/// forged, expired, foreign and replayed requests are refused and counted; strangers'
/// datagrams are dropped; a flooding end is cut to its rate without starving the other.
@Suite(.serialized) struct TRSServerTests {
    final class Fixture {
        let ca: CertificateAuthority
        let signing = try! Ed25519PrivateKey()
        let signingCertificate: Certificate
        let server: TRSServer
        var relay: Endpoint { server.boundEndpoints[0] }

        init(packetsPerSecond: Int = 1_000_000) throws {
            ca = try CertificateAuthority.create(name: "TRS test CA", key: try Ed25519PrivateKey(), serial: try CertificateAuthority.randomSerial())
            let now = unixNow()
            signingCertificate = try ca.issue(
                .service(
                    .nms, name: try FQDN("nms.cyphonic.internal"), serial: try CertificateAuthority.randomSerial(), validFrom: now - 300, days: 1),
                signingKey: signing.publicKey)
            let key = try X25519PrivateKey()
            let identity = TRSIdentity(
                name: "trs.cyphonic.internal", key: key,
                certificate: try ca.issue(
                    .service(
                        .trs, name: try FQDN("trs.cyphonic.internal"), serial: try CertificateAuthority.randomSerial(), validFrom: now - 300, days: 1),
                    publicKey: key.publicKey), ca: ca.certificate)
            var settings = TRSSettings()
            settings.listen = [Endpoint("127.0.0.1:0")!]
            settings.packetsPerSecondPerEnd = packetsPerSecond
            settings.handshakeGuard.loadThresholdPerSecond = 100_000
            var logger = Logger(label: "trs-test")
            logger.logLevel = .critical
            server = try TRSServer(identity: identity, settings: settings, logger: logger)
            try server.start()
        }

        deinit { server.stop() }

        /// A node of our CA with its own socket, connected to the relay.
        func node(_ name: String, issuer: CertificateAuthority? = nil) throws -> (SimulatedNode, UDPSocket) {
            let key = try X25519PrivateKey()
            let cert = try (issuer ?? ca).issue(
                .node(
                    fqdn: try FQDN("\(name).cyphonic.internal"), addresses: [IPAddress("198.18.0.9")!, IPAddress("2001:db8:c0ff:ee::9")!],
                    serial: try CertificateAuthority.randomSerial(), validFrom: unixNow() - 300, days: 1), publicKey: key.publicKey)
            let node = SimulatedNode(key: key, certificate: cert, verifier: try CertificateVerifier(trustAnchor: ca.certificate), role: .trs)
            let s = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
            try s.setReceiveTimeout(milliseconds: 1500)
            let answer = try node.register(with: relay, over: s)
            guard case .registrationAck = answer.body else { throw SessionError.protocolViolation("not connected: \(answer.body)") }
            return (node, s)
        }

        func authorization(
            _ a: SimulatedNode, _ b: SimulatedNode, path: UInt64, expires: Int64 = unixNow() + 60, by key: Ed25519PrivateKey? = nil,
            relay: String? = nil
        )
            throws -> PathAuthorization
        {
            try PathAuthorization.sign(
                processCode: .relay, pathID: path, expires: UInt64(expires), initiatorKey: a.key.publicKey.bytes,
                responderKey: b.key.publicKey.bytes, relayID: relay.map { PathAuthorization.relayID(name: $0) } ?? PathAuthorization.anyRelay,
                with: key ?? signing)
        }

        /// Sends a relay request and returns the relay's answer.
        func request(
            _ node: SimulatedNode, _ s: UDPSocket, _ a: PathAuthorization, certificate: Certificate? = nil, indices: [UInt32] = []
        )
            throws -> (SignalingBody, [UInt8])
        {
            let (datagram, _) = try node.seal(
                .relayRequest(
                    RelayRequest(
                        pathID: a.pathID, authorization: a.bytes, signingCertificate: (certificate ?? signingCertificate).derBytes,
                        sessionIndices: indices)))
            return (try node.open(try node.exchange(s, datagram, to: relay)).body, datagram)
        }

        var status: TRSStatus { try! JSONDecoder().decode(TRSStatus.self, from: Data(server.control("status"))) }
    }

    /// A tunnel datagram as a node would send it (the relay reads only the header and,
    /// for a TunnelRequest, the sender index and path id).
    static func datagram(_ type: MessageType, receiver: UInt32, counter: UInt64, body: [UInt8]) -> [UInt8] {
        Header(type: type, receiverIndex: receiver, counter: counter).bytes + body
    }

    static func receive(_ s: UDPSocket) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 2048)
        guard let (n, _) = try? buffer.withUnsafeMutableBytes({ try s.receive(into: $0) }) else { return nil }
        return Array(buffer[0..<n])
    }

    @Test func anAuthorizedPathIsRelayedInOrderBetweenItsTwoNodesOnly() throws {
        let f = try Fixture()
        let (a, sa) = try f.node("a")
        let (b, sb) = try f.node("b")
        defer {
            sa.close()
            sb.close()
        }
        let auth = try f.authorization(a, b, path: 42)
        #expect(try f.request(a, sa, auth).0 == .relayGrant(RelayGrant(pathID: 42, peerBound: false, idleSeconds: 120)))
        #expect(try f.request(b, sb, auth).0 == .relayGrant(RelayGrant(pathID: 42, peerBound: true, idleSeconds: 120)))
        // The first end is told that the second bound.
        #expect(try a.open(try a.receive(sa)).body == .relayGrant(RelayGrant(pathID: 42, peerBound: true, idleSeconds: 120)))

        // The handshake passes unchanged; the relay learns both sides' indices from it.
        var w = ByteWriter(capacity: 200)
        w.u32(0x11)
        w.u64(42)
        w.raw([UInt8](repeating: 0x5a, count: 100))
        let request = Self.datagram(.tunnelRequest, receiver: 0, counter: 0, body: w.bytes)
        try sa.send(request, to: f.relay)
        #expect(Self.receive(sb) == request)
        let response = Self.datagram(.tunnelResponse, receiver: 0x11, counter: 0, body: [0, 0, 0, 0x22] + [UInt8](repeating: 7, count: 80))
        try sb.send(response, to: f.relay)
        #expect(Self.receive(sa) == response)

        // 2000 capsules A -> B arrive complete and in order (sent in bursts of 100, so
        // the receiving socket's buffer, not the relay, is never the limit).
        let count = 2000
        try? sb.setReceiveBufferSize(8 << 20)
        for i in 0..<count {
            try sa.send(Self.datagram(.capsule, receiver: 0x22, counter: UInt64(i), body: [UInt8](repeating: 1, count: 64)), to: f.relay)
            if i % 100 == 99 { usleep(2000) }
        }
        var last: UInt64?
        var received = 0
        var outOfOrder = 0
        while received < count, let d = Self.receive(sb) {
            let h = try d.withUnsafeBytes { try Header.decode($0) }
            if let l = last, h.counter <= l { outOfOrder += 1 }
            last = h.counter
            received += 1
        }
        #expect(received == count)
        #expect(outOfOrder == 0)
        // And back B -> A.
        let back = Self.datagram(.capsule, receiver: 0x11, counter: 9, body: [2, 2, 2])
        try sb.send(back, to: f.relay)
        #expect(Self.receive(sa) == back)

        // A stranger's datagrams (its own address, a known index) go nowhere.
        let stranger = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        defer { stranger.close() }
        try stranger.send(Self.datagram(.capsule, receiver: 0x22, counter: 99_999, body: [3]), to: f.relay)
        try stranger.send(request, to: f.relay)
        try sb.setReceiveTimeout(milliseconds: 300)
        #expect(Self.receive(sb) == nil)
        let s = f.status
        #expect(s.sessions == 1 && s.boundEnds == 2 && s.relayedPackets == UInt64(count + 3))
        #expect(s.dropped["unknown_index"] == 1 && s.dropped["not_bound"] == 1)
    }

    @Test func forgedExpiredForeignAndReplayedRequestsAreRefusedAndCounted() throws {
        let f = try Fixture()
        let (a, sa) = try f.node("a")
        let (b, sb) = try f.node("b")
        defer {
            sa.close()
            sb.close()
        }
        let other = try CertificateAuthority.create(name: "another CA", key: try Ed25519PrivateKey(), serial: 7)
        let foreignSigning = try Ed25519PrivateKey()
        let foreignCertificate = try other.issue(
            .service(.nms, name: try FQDN("nms.cyphonic.internal"), serial: 8, validFrom: unixNow() - 300, days: 1),
            signingKey: foreignSigning.publicKey)
        // Signed by a key that is not the certificate's.
        guard case .error(let c1, _) = try f.request(a, sa, try f.authorization(a, b, path: 1, by: try Ed25519PrivateKey())).0 else {
            Issue.record("a forged signature was granted")
            return
        }
        // Signed properly by an NMS of another CA.
        guard case .error(_, _) = try f.request(a, sa, try f.authorization(a, b, path: 2, by: foreignSigning), certificate: foreignCertificate).0
        else {
            Issue.record("a foreign NMS was trusted")
            return
        }
        // Expired.
        guard case .error(let c3, _) = try f.request(a, sa, try f.authorization(a, b, path: 3, expires: unixNow() - 5)).0 else {
            Issue.record("an expired authorization was granted")
            return
        }
        // Valid, but for two other nodes.
        let (c, sc) = try f.node("c")
        defer { sc.close() }
        guard case .error(let c4, _) = try f.request(c, sc, try f.authorization(a, b, path: 4)).0 else {
            Issue.record("a node not named by the authorization was bound")
            return
        }
        // A node of another CA cannot even connect.
        #expect(throws: (any Error).self) { try f.node("foreign", issuer: other) }
        #expect(c1 == .unauthorized && c3 == .expired && c4 == .forbidden)
        // A valid request, then its datagram replayed: the replay is dropped.
        let (granted, datagram) = try f.request(a, sa, try f.authorization(a, b, path: 5))
        #expect(granted == .relayGrant(RelayGrant(pathID: 5, peerBound: false, idleSeconds: 120)))
        try sa.setReceiveTimeout(milliseconds: 300)
        try sa.send(datagram, to: f.relay)
        #expect(Self.receive(sa) == nil)
        let s = f.status
        #expect(s.refused["bad_signature"] == 1 && s.refused["untrusted_signer"] == 1 && s.refused["expired"] == 1 && s.refused["wrong_node"] == 1)
        #expect(s.dropped["replay"] == 1 && s.sessions == 1)
    }

    /// With several relay hosts the NMS names the one that carries a path: this relay
    /// binds paths named for it (or for any relay), and refuses those for another host.
    @Test func anAuthorizationNamingAnotherRelayIsRefused() throws {
        let f = try Fixture()
        let (a, sa) = try f.node("a")
        let (b, sb) = try f.node("b")
        defer {
            sa.close()
            sb.close()
        }
        guard case .error(let code, let text) = try f.request(a, sa, try f.authorization(a, b, path: 11, relay: "trs2.cyphonic.internal")).0
        else {
            Issue.record("a path named for another relay was bound")
            return
        }
        #expect(code == .forbidden && text.contains("another relay"))
        let mine = try f.request(a, sa, try f.authorization(a, b, path: 12, relay: "TRS.cyphonic.internal")).0
        #expect(mine == .relayGrant(RelayGrant(pathID: 12, peerBound: false, idleSeconds: 120)))
        let any = try f.request(b, sb, try f.authorization(a, b, path: 13)).0
        #expect(any == .relayGrant(RelayGrant(pathID: 13, peerBound: false, idleSeconds: 120)))
        #expect(f.status.refused["wrong_relay"] == 1)
    }

    @Test func aFloodingEndIsCutToItsRateWithoutStarvingTheOther() throws {
        let f = try Fixture(packetsPerSecond: 2000)
        let (a, sa) = try f.node("a")
        let (b, sb) = try f.node("b")
        defer {
            sa.close()
            sb.close()
        }
        let auth = try f.authorization(a, b, path: 9)
        _ = try f.request(a, sa, auth, indices: [0x11])
        _ = try f.request(b, sb, auth, indices: [0x22])
        _ = try a.receive(sa)  // the grant saying B bound
        // A floods 20 000 datagrams as fast as it can; B's one datagram still gets through.
        for i in 0..<20_000 { try sa.send(Self.datagram(.capsule, receiver: 0x22, counter: UInt64(i), body: [1]), to: f.relay) }
        let back = Self.datagram(.capsule, receiver: 0x11, counter: 1, body: [2])
        try sb.send(back, to: f.relay)
        #expect(Self.receive(sa) == back)
        try sb.setReceiveTimeout(milliseconds: 300)
        var delivered = 0
        while Self.receive(sb) != nil { delivered += 1 }
        let s = f.status
        #expect(delivered < 5_000 && delivered >= 200, "delivered \(delivered)")
        #expect((s.dropped["rate_limited"] ?? 0) >= 15_000)
    }
}
