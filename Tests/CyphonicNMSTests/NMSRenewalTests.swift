import CyphonicCore
import CyphonicCrypto
import CyphonicNMS
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Testing

/// AuthorizationRenewal over real UDP on loopback: the NMS renews a path authorization it
/// signed for one of its two nodes — same path, nodes, route and relay, a later expiry —
/// and sends it to both; a repeated request gets the same one; anything else gets a clear
/// refusal and reaches no one.
@Suite(.serialized) struct NMSRenewalTests {
    @Test func aPathsAuthorizationIsRenewedForBothNodesAndNothingElseIs() throws {
        let f = try NMSFixture {
            $0.relayAuthorizationSeconds = 600
            $0.relayHosts = [RelayHost(name: "trs.cyphonic.internal", endpoints: [Endpoint("127.0.0.1:4503")!])]
        }
        defer { f.stop() }
        let (a, sa) = try f.registered("init01", group: "lab")
        let (b, sb) = try f.registered("responder", group: "lab")
        let (c, sc) = try f.registered("office", group: "office")
        defer {
            sa.close()
            sb.close()
            sc.close()
        }
        let nmsKey = f.identity.signingKey
        let now = UInt64(unixNowSeconds())
        let trs = PathAuthorization.relayID(name: "trs.cyphonic.internal")
        func authorization(
            _ i: SimulatedNode, _ r: SimulatedNode, path: UInt64 = 4242, expires: UInt64, code: ProcessCode = .relay, relay: [UInt8]? = nil,
            key: Ed25519PrivateKey? = nil
        ) throws -> [UInt8] {
            try PathAuthorization.sign(
                processCode: code, pathID: path, expires: expires, initiatorKey: i.key.publicKey.bytes, responderKey: r.key.publicKey.bytes,
                relayID: relay ?? trs, with: key ?? nmsKey
            ).bytes
        }
        func renew(_ bytes: [UInt8], peer: String) throws -> SignalingMessage {
            let (request, _) = try a.seal(.authorizationRenewal(peer: try FQDN("\(peer).cyphonic.internal"), authorization: bytes))
            return try a.open(try a.exchange(sa, request, to: f.nms))
        }
        func renewed(_ answer: SignalingMessage, path: UInt64) throws -> [UInt8]? {
            guard case .authorizationRenewal(let peer, let bytes) = answer.body else {
                Issue.record("\(answer.body)")
                return nil
            }
            #expect(peer.value == "responder.cyphonic.internal")
            let fresh = try PathAuthorization(bytes: bytes)
            try fresh.verify(signer: nmsKey.publicKey, pathID: path, between: a.key.publicKey.bytes, and: b.key.publicKey.bytes)
            #expect(fresh.processCode == .relay && fresh.initiatorKey == a.key.publicKey.bytes && fresh.relayID == trs)
            #expect(fresh.expires >= now + 590 && fresh.expires <= UInt64(unixNowSeconds()) + 600)
            return bytes
        }

        // Due (in the last half of its 600 s), and one that ended less than a lifetime ago.
        for (path, expires) in [(UInt64(4242), now + 20), (4243, now - 100)] {
            guard let bytes = try renewed(try renew(try authorization(a, b, path: path, expires: expires), peer: "responder"), path: path)
            else { return }
            // The peer gets the same, naming us.
            let toB = try b.open(try b.receive(sb))
            #expect(toB.body == .authorizationRenewal(peer: try FQDN(a.fqdn), authorization: bytes))
        }
        // Asked again (the responder's turn, a resend, a replay): the same answer, to the
        // requester only (a renewal signed anew would go to the peer too: the check that
        // nothing reached b, at the end, is what catches that).
        let first = try renewed(try renew(try authorization(a, b, expires: now + 20), peer: "responder"), path: 4242)
        let again = try renewed(try renew(try authorization(a, b, expires: now + 10), peer: "responder"), path: 4242)
        #expect(first != nil && first == again)

        func refused(_ bytes: [UInt8], peer: String) throws -> StatusCode? {
            guard case .error(let code, _) = try renew(bytes, peer: peer).body else { return nil }
            return code
        }
        // Not the NMS's signature; not naming the requester; the peer named is not the
        // path's other node; not due yet; ended too long ago; a direct path; a relay not
        // configured; the peer is gone; policy does not allow it (any more); garbage.
        #expect(try refused(try authorization(a, b, path: 1, expires: now + 20, key: try Ed25519PrivateKey()), peer: "responder") == .badRequest)
        #expect(try refused(try authorization(b, c, path: 2, expires: now + 20), peer: "office") == .badRequest)
        #expect(try refused(try authorization(a, b, path: 3, expires: now + 20), peer: "office") == .badRequest)
        #expect(try refused(try authorization(a, b, path: 4, expires: now + 400), peer: "responder") == .badRequest)
        #expect(try refused(try authorization(a, b, path: 5, expires: now - 700), peer: "responder") == .badRequest)
        #expect(try refused(try authorization(a, b, path: 6, expires: now + 20, code: .direct), peer: "responder") == .badRequest)
        let elsewhere = PathAuthorization.relayID(name: "old-trs.cyphonic.internal")
        #expect(try refused(try authorization(a, b, path: 7, expires: now + 20, relay: elsewhere), peer: "responder") == .badRequest)
        #expect(try refused(try authorization(a, b, path: 8, expires: now + 20), peer: "nobody") == .notFound)
        #expect(try refused(try authorization(a, c, path: 9, expires: now + 20), peer: "office") == .forbidden)
        #expect(try refused([1, 2, 3], peer: "responder") == .badRequest)
        // None of that reached the other nodes.
        try sb.setReceiveTimeout(milliseconds: 200)
        try sc.setReceiveTimeout(milliseconds: 200)
        #expect((try? b.receive(sb)) == nil)
        #expect((try? c.receive(sc)) == nil)
    }
}
