import CyphonicCore
import CyphonicCrypto
import CyphonicNMS
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Glibc
import Testing

/// The NMS over real UDP on loopback with real Noise sessions (issue 10): registration
/// and its refusals, keepalive, NAT probes, the direction exchange, and bad input.
@Suite(.serialized) struct NMSServerTests {
    @Test func aNodeRegistersAndLearnsWhereItIsSeen() throws {
        let f = try NMSFixture()
        defer { f.stop() }
        let node = try f.node("init01")
        let s = try f.socket()
        defer { s.close() }
        let answer = try node.register(with: f.nms, over: s, localEndpoints: [try s.localEndpoint()])
        guard case .registrationAck(let ack) = answer.body else {
            Issue.record("\(answer.body)")
            return
        }
        #expect(ack.observed == (try s.localEndpoint()) && ack.keepAliveSeconds == 5 && ack.probeToken.count == 16)
        // The signing certificate the ack carries chains to our CA with role nms.
        let signer = try nmsSigningKey(certificate: ack.signingCertificate, verifier: try CertificateVerifier(trustAnchor: f.ca.certificate))
        #expect(signer == f.identity.signingKey.publicKey)
        let record = try #require(f.server.registry.node(named: "init01.cyphonic.internal"))
        #expect(record.network.v4?.mapping == NATProbeResult.Mapping.none && record.staticKey == node.key.publicKey.bytes)
        // Keepalive: answered with the observed address.
        let (keepAlive, _) = try node.seal(.keepAlive)
        let reply = try node.open(try node.exchange(s, keepAlive, to: f.nms))
        #expect(reply.body == .keepAliveAck(observed: try s.localEndpoint()))
        // Finalization: forgotten at once.
        try s.send(try node.seal(.finalization(.shutdown)).datagram, to: f.nms)
        try waitUntil { f.server.registry.count == 0 }
    }

    @Test func foreignExpiredRevokedAndMismatchedCertificatesAreRefused() throws {
        let other = try NMSFixture.makeCA("another CA")
        let probe = try NMSFixture()
        let revokedNode = try probe.node("revoked")
        probe.stop()
        let f = try NMSFixture(revoked: [revokedNode.certificate.serial!]) { _ in }
        defer { f.stop() }
        // The revoked node must be issued by f's CA: issue it again under f with the same serial.
        let now = unixNow()
        let rkey = try X25519PrivateKey()
        let rcert = try f.ca.issue(
            .node(
                fqdn: try FQDN("revoked.cyphonic.internal"), addresses: [IPAddress("198.18.9.1")!, IPAddress("2001:db8:c0ff:ee::901")!],
                serial: revokedNode.certificate.serial!, validFrom: now - 300, days: 1), publicKey: rkey.publicKey)
        let revoked = SimulatedNode(key: rkey, certificate: rcert, verifier: try CertificateVerifier(trustAnchor: f.ca.certificate))
        // A certificate for another key than the one the handshake proves.
        let victim = try f.node("victim")
        let thief = SimulatedNode(
            key: try X25519PrivateKey(), certificate: victim.certificate, verifier: try CertificateVerifier(trustAnchor: f.ca.certificate))
        let cases: [(SimulatedNode, StatusCode)] = [
            (try f.node("foreign", by: other), .unauthorized), (try f.node("old", expired: true), .expired), (revoked, .revoked),
            (thief, .unauthorized),
        ]
        for (node, code) in cases {
            let s = try f.socket()
            defer { s.close() }
            let answer = try node.register(with: f.nms, over: s)
            guard case .error(let got, _) = answer.body else {
                Issue.record("\(node.fqdn) registered: \(answer.body)")
                continue
            }
            #expect(got == code, "\(node.fqdn)")
        }
        #expect(f.server.registry.count == 0)
    }

    @Test func aDirectionReachesBothSidesWithAVerifiableAuthorization() throws {
        let f = try NMSFixture()
        defer { f.stop() }
        let (a, sa) = try f.registered("init01")
        let (b, sb) = try f.registered("responder")
        defer {
            sa.close()
            sb.close()
        }
        let (request, tid) = try a.seal(.directionRequest(target: try FQDN("responder.cyphonic.internal")))
        try sa.send(request, to: f.nms)
        // The responder is directed first...
        let toB = try b.open(try b.receive(sb))
        guard case .routeDirection(let db) = toB.body else {
            Issue.record("\(toB.body)")
            return
        }
        #expect(db.role == .responder && db.peerFQDN.value == "init01.cyphonic.internal" && db.processCode == .direct)
        #expect(db.peerEndpoints == [try sa.localEndpoint()] && db.peerStaticKey == a.key.publicKey.bytes)
        let auth = try PathAuthorization(bytes: db.authorization)
        try auth.verify(signer: f.identity.signingKey.publicKey, pathID: db.pathID, between: b.key.publicKey.bytes, and: a.key.publicKey.bytes)
        #expect(throws: AuthorizationError.wrongNodes) {
            try auth.verify(signer: f.identity.signingKey.publicKey, pathID: db.pathID, between: b.key.publicKey.bytes, and: b.key.publicKey.bytes)
        }
        // ...and once it confirms, the initiator gets the same path, to the responder's address.
        let confirm = try b.seal(
            .routeDirectionConfirmation(RouteDirectionConfirmation(pathID: db.pathID, status: .ok, localEndpoints: [])),
            transactionID: toB.transactionID)
        try sb.send(confirm, to: f.nms)
        let toA = try a.open(try a.receive(sa))
        guard case .routeDirection(let da) = toA.body else {
            Issue.record("\(toA.body)")
            return
        }
        #expect(toA.transactionID == tid && da.role == .initiator && da.pathID == db.pathID && da.authorization == db.authorization)
        #expect(da.peerEndpoints == [try sb.localEndpoint()] && da.peerVirtualIPv4 == b.certificate.ipAddresses.first { $0.isIPv4 })
    }

    @Test func unknownNamesForeignGroupsSelfAndSilentRespondersGetClearAnswers() throws {
        let f = try NMSFixture { $0.directionTimeoutMilliseconds = 300 }
        defer { f.stop() }
        let (a, sa) = try f.registered("init01", group: "lab")
        let (_, sb) = try f.registered("office", group: "office")
        let (_, sc) = try f.registered("silent", group: "lab")
        defer {
            sa.close()
            sb.close()
            sc.close()
        }
        func ask(_ name: String) throws -> SignalingBody {
            let (request, _) = try a.seal(.directionRequest(target: try FQDN(name)))
            return try a.open(try a.exchange(sa, request, to: f.nms)).body
        }
        guard case .error(.notFound, _) = try ask("nobody.cyphonic.internal") else {
            Issue.record("unknown name")
            return
        }
        guard case .error(.forbidden, let why) = try ask("office.cyphonic.internal") else {
            Issue.record("other group")
            return
        }
        #expect(why.contains("policy"))
        guard case .error(.badRequest, _) = try ask("init01.cyphonic.internal") else {
            Issue.record("self")
            return
        }
        // "silent" never confirms: the initiator hears so after the timeout (not never).
        guard case .error(.unavailable, let text) = try ask("silent.cyphonic.internal") else {
            Issue.record("silent responder")
            return
        }
        #expect(text.contains("did not answer"))
    }

    @Test func oneNodeCannotFillTheDirectionTable() throws {
        let f = try NMSFixture {
            $0.directionTimeoutMilliseconds = 5000
            $0.maxPendingDirectionsPerNode = 2
        }
        defer { f.stop() }
        let (a, sa) = try f.registered("greedy")
        let (_, sb) = try f.registered("silent")
        let (c, sc) = try f.registered("other")
        defer {
            sa.close()
            sb.close()
            sc.close()
        }
        // Two directions to a responder that never confirms take the greedy node's share...
        let target = try FQDN("silent.cyphonic.internal")
        try sa.send(try a.seal(.directionRequest(target: target), transactionID: 900), to: f.nms)
        try sa.send(try a.seal(.directionRequest(target: target), transactionID: 901), to: f.nms)
        try waitUntil { f.server.status().pendingDirections == 2 }
        // (a request repeated under its transaction id is the same request: no third one)
        try sa.send(try a.seal(.directionRequest(target: target), transactionID: 900), to: f.nms)
        usleep(200_000)
        #expect(f.server.status().pendingDirections == 2)
        let (third, _) = try a.seal(.directionRequest(target: try FQDN("silent.cyphonic.internal")))
        guard case .error(.unavailable, let text) = try a.open(try a.exchange(sa, third, to: f.nms)).body else {
            Issue.record("a third direction was not refused")
            return
        }
        #expect(text.contains("too many"))
        // ...and nobody else's.
        let (other, _) = try c.seal(.directionRequest(target: try FQDN("silent.cyphonic.internal")))
        try sc.send(other, to: f.nms)
        try waitUntil { f.server.status().pendingDirections == 3 }
    }

    @Test func probesTellEndpointIndependentFromDependentMapping() throws {
        let f = try NMSFixture()
        defer { f.stop() }
        // Not listing its own address, the node looks NATed; one socket on both ports: EIM.
        let (a, sa) = try f.registered("eim", local: false)
        defer { sa.close() }
        let token = try #require(f.server.registry.node(named: "eim.cyphonic.internal")?.probeToken)
        try sa.send(try Datagram(.natProbe(token: token)).encode(), to: f.probe)
        let result = try a.open(try a.receive(sa))
        #expect(
            result.body
                == .natProbeResult(NATProbeResult(primary: try sa.localEndpoint(), probe: try sa.localEndpoint(), mapping: .endpointIndependent)))
        // The probe port sees another source port: endpoint-dependent (symmetric).
        let (b, sb) = try f.registered("edm", local: false)
        let other = try f.socket()
        defer {
            sb.close()
            other.close()
        }
        let tokenB = try #require(f.server.registry.node(named: "edm.cyphonic.internal")?.probeToken)
        try other.send(try Datagram(.natProbe(token: tokenB)).encode(), to: f.probe)
        guard case .natProbeResult(let r) = try b.open(try b.receive(sb)).body else {
            Issue.record("no probe result")
            return
        }
        #expect(r.mapping == .endpointDependent)
        #expect(f.server.registry.node(named: "edm.cyphonic.internal")?.network.v4?.mapping == .endpointDependent)
    }

    @Test func garbageAndReplaysAreDroppedWithoutDisturbingOthers() throws {
        let f = try NMSFixture()
        defer { f.stop() }
        let (a, sa) = try f.registered("init01")
        defer { sa.close() }
        let attacker = try f.socket(timeoutMilliseconds: 300)
        defer { attacker.close() }
        for junk in [[UInt8](), [1, 2, 3], [UInt8](repeating: 0xff, count: 100), Array(repeating: 0, count: 1500)] {
            try attacker.send(junk, to: f.nms)
            try attacker.send(junk, to: f.probe)
        }
        // A replayed keepalive is answered once.
        let (keepAlive, _) = try a.seal(.keepAlive)
        _ = try a.exchange(sa, keepAlive, to: f.nms)
        try sa.send(keepAlive, to: f.nms)
        try sa.setReceiveTimeout(milliseconds: 300)
        #expect(throws: (any Error).self) { _ = try a.receive(sa) }
        // A probe with an unknown token gets nothing back.
        try attacker.send(try Datagram(.natProbe(token: [UInt8](repeating: 7, count: 16))).encode(), to: f.probe)
        #expect(throws: (any Error).self) { _ = try a.receive(attacker) }
        // The node is still served.
        try sa.setReceiveTimeout(milliseconds: 2000)
        let (again, _) = try a.seal(.keepAlive)
        #expect(try a.open(try a.exchange(sa, again, to: f.nms)).body == .keepAliveAck(observed: try sa.localEndpoint()))
        #expect(f.server.registry.count == 1)
    }

    @Test func silentNodesExpire() throws {
        let f = try NMSFixture {
            $0.keepAliveSeconds = 1
            $0.expireAfterIntervals = 2
        }
        defer { f.stop() }
        let (_, s) = try f.registered("init01")
        defer { s.close() }
        #expect(f.server.registry.count == 1)
        try waitUntil(seconds: 6) { f.server.registry.count == 0 }
    }
}

/// Polls `condition` every 50 ms for up to `seconds`.
func waitUntil(seconds: Double = 3, _ condition: () -> Bool) throws {
    let end = monotonicSeconds() + seconds
    while !condition() {
        guard monotonicSeconds() < end else { throw TimeoutError() }
        usleep(50_000)
    }
}

struct TimeoutError: Error {}
