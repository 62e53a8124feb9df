import CyphonicCore
import CyphonicPosix
import CyphonicSignaling
import CyphonicTRS
import CyphonicWire
import XCTest

/// The relay's session table: binding by authorization, matching by path id and
/// receiver index, learning indices from the handshake, limits, expiry.
final class RelayTableTests: XCTestCase {
    let a = [UInt8](repeating: 0xaa, count: 32)
    let b = [UInt8](repeating: 0xbb, count: 32)
    let atA = SocketAddress(Endpoint("198.19.1.2:30000")!)
    let atB = SocketAddress(Endpoint("[2001:db8:1::9]:30000")!)

    func authorization(_ path: UInt64 = 7) -> PathAuthorization {
        PathAuthorization(processCode: .relay, pathID: path, expires: 0, initiatorKey: a, responderKey: b)
    }

    func table(pps: Int = 1_000_000) -> RelayTable {
        RelayTable(maxSessions: 10, maxEndsPerNode: 2, packetsPerSecondPerEnd: pps, idleSeconds: 60)
    }

    /// A datagram's body: sender index and (TunnelRequest) path id.
    func body(sender: UInt32, path: UInt64? = nil) -> [UInt8] {
        var w = ByteWriter(capacity: 12)
        w.u32(sender)
        if let path { w.u64(path) }
        return w.bytes
    }

    func route(
        _ t: inout RelayTable, from: SocketAddress, _ type: MessageType, index: UInt32, body: [UInt8] = [0, 0, 0, 0], now: Double = 1
    )
        -> RelayTable.Verdict
    {
        body.withUnsafeBytes { t.route(source: from, type: type, receiverIndex: index, body: $0, length: body.count + 16, now: now) }
    }

    func testBindsOnlyTheNodesTheAuthorizationNames() {
        var t = table()
        XCTAssertEqual(
            t.bind(authorization(), nodeKey: [UInt8](repeating: 1, count: 32), address: atA, socketIndex: 0, indices: [], now: 0),
            .refused("wrong_node"))
        XCTAssertEqual(t.count, 0)
        XCTAssertEqual(t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [], now: 0), .bound(peerBound: false, notify: nil))
        // The second end completes the session: the first is told.
        XCTAssertEqual(t.bind(authorization(), nodeKey: b, address: atB, socketIndex: 1, indices: [], now: 0), .bound(peerBound: true, notify: a))
        // A refresh changes nothing and tells no one.
        XCTAssertEqual(t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [], now: 0), .bound(peerBound: true, notify: nil))
        // Another authorization with the same path id but other keys is a conflict.
        let other = PathAuthorization(processCode: .relay, pathID: 7, expires: 0, initiatorKey: b, responderKey: a)
        XCTAssertEqual(t.bind(other, nodeKey: a, address: atA, socketIndex: 0, indices: [], now: 0), .refused("conflict"))
        XCTAssertEqual(t.boundEnds, 2)
    }

    func testForwardsTheHandshakeAndCapsulesBetweenBoundEndsOnly() {
        var t = table()
        _ = t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [], now: 0)
        // The responder is not bound yet: the request has nowhere to go.
        XCTAssertEqual(route(&t, from: atA, .tunnelRequest, index: 0, body: body(sender: 0x11, path: 7)), .drop("peer_not_bound"))
        _ = t.bind(authorization(), nodeKey: b, address: atB, socketIndex: 1, indices: [], now: 0)
        XCTAssertEqual(route(&t, from: atA, .tunnelRequest, index: 0, body: body(sender: 0x11, path: 7)), .forward(to: atB, socketIndex: 1))
        XCTAssertEqual(route(&t, from: atA, .tunnelRequest, index: 0, body: body(sender: 0x11, path: 8)), .drop("unknown_path"))
        let stranger = SocketAddress(Endpoint("198.19.0.66:1234")!)
        XCTAssertEqual(route(&t, from: stranger, .tunnelRequest, index: 0, body: body(sender: 0x11, path: 7)), .drop("not_bound"))
        // The response names the initiator's index (learned from the request) and carries the responder's.
        XCTAssertEqual(route(&t, from: atB, .tunnelResponse, index: 0x11, body: body(sender: 0x22)), .forward(to: atA, socketIndex: 0))
        XCTAssertEqual(route(&t, from: atA, .handshakeCompletion, index: 0x22), .forward(to: atB, socketIndex: 1))
        XCTAssertEqual(route(&t, from: atA, .capsule, index: 0x22), .forward(to: atB, socketIndex: 1))
        XCTAssertEqual(route(&t, from: atB, .capsule, index: 0x11), .forward(to: atA, socketIndex: 0))
        XCTAssertEqual(route(&t, from: atA, .capsule, index: 0x33), .drop("unknown_index"))
        XCTAssertEqual(route(&t, from: stranger, .capsule, index: 0x22), .drop("unknown_index"))
        // Spoofing B's index from A's side does not reach A: indices are per side.
        XCTAssertEqual(route(&t, from: atB, .capsule, index: 0x22), .drop("unknown_index"))
        XCTAssertEqual(route(&t, from: atA, .holePunching, index: 0), .drop("unexpected_type"))
        XCTAssertEqual(t.sessions[7]?.packets, 6)
    }

    func testARestartedRelayLearnsIndicesFromTheRequests() {
        var t = table()
        _ = t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [0x11], now: 0)
        _ = t.bind(authorization(), nodeKey: b, address: atB, socketIndex: 0, indices: [0x22], now: 0)
        XCTAssertEqual(route(&t, from: atA, .capsule, index: 0x22), .forward(to: atB, socketIndex: 0))
        XCTAssertEqual(route(&t, from: atB, .capsule, index: 0x11), .forward(to: atA, socketIndex: 0))
    }

    func testAMovedEndIsFollowedAndItsOldAddressForgotten() {
        var t = table()
        _ = t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [0x11], now: 0)
        _ = t.bind(authorization(), nodeKey: b, address: atB, socketIndex: 1, indices: [0x22], now: 0)
        let moved = SocketAddress(Endpoint("198.19.1.2:40000")!)
        _ = t.bind(authorization(), nodeKey: a, address: moved, socketIndex: 0, indices: [], now: 1)
        XCTAssertEqual(route(&t, from: atA, .capsule, index: 0x22), .drop("unknown_index"))
        XCTAssertEqual(route(&t, from: moved, .capsule, index: 0x22), .forward(to: atB, socketIndex: 1))
        XCTAssertEqual(route(&t, from: atB, .capsule, index: 0x11), .forward(to: moved, socketIndex: 0))
    }

    func testAFloodingEndIsCutToItsRateAndTheOtherEndIsNot() {
        var t = table(pps: 100)
        _ = t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [0x11], now: 0)
        _ = t.bind(authorization(), nodeKey: b, address: atB, socketIndex: 0, indices: [0x22], now: 0)
        var forwarded = 0
        for _ in 0..<1000 where route(&t, from: atA, .capsule, index: 0x22, now: 0) != .drop("rate_limited") { forwarded += 1 }
        XCTAssertEqual(forwarded, 64, "the burst, then nothing within the same instant")
        XCTAssertEqual(route(&t, from: atB, .capsule, index: 0x11, now: 0), .forward(to: atA, socketIndex: 0))
        // A second later the budget is back.
        XCTAssertEqual(route(&t, from: atA, .capsule, index: 0x22, now: 1), .forward(to: atB, socketIndex: 0))
    }

    func testLimitsAndExpiry() {
        var t = table()
        for path in UInt64(1)...2 {
            XCTAssertNotEqual(t.bind(authorization(path), nodeKey: a, address: atA, socketIndex: 0, indices: [], now: 0), .refused("node_limit"))
        }
        XCTAssertEqual(t.bind(authorization(3), nodeKey: a, address: atA, socketIndex: 0, indices: [], now: 0), .refused("node_limit"))
        XCTAssertEqual(t.count, 2, "a refused bind leaves no empty session behind")
        _ = t.bind(authorization(1), nodeKey: b, address: atB, socketIndex: 0, indices: [0x22], now: 50)
        XCTAssertEqual(t.expire(now: 100), 1, "path 2 idle since 0; path 1 active at 50")
        XCTAssertEqual(t.count, 1)
        // Its end is given back: node a may bind another path.
        XCTAssertNotEqual(t.bind(authorization(4), nodeKey: a, address: atA, socketIndex: 0, indices: [], now: 100), .refused("node_limit"))
        XCTAssertEqual(t.expire(now: 1000), 2)
        XCTAssertEqual(route(&t, from: atA, .capsule, index: 0x22), .drop("unknown_index"))
    }

    func testNoEndCanClaimAnotherSessionsIndex() {
        var t = table()
        // X talks to B over path 7 and to C over path 8, from one address.
        let c = [UInt8](repeating: 0xcc, count: 32)
        let atC = SocketAddress(Endpoint("198.19.0.77:30000")!)
        let toC = PathAuthorization(processCode: .relay, pathID: 8, expires: 0, initiatorKey: a, responderKey: c)
        _ = t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [0x11], now: 0)
        _ = t.bind(toC, nodeKey: a, address: atA, socketIndex: 0, indices: [0x12], now: 0)
        _ = t.bind(toC, nodeKey: c, address: atC, socketIndex: 0, indices: [0x33], now: 0)
        // B claims C's index: ignored, first owner wins.
        _ = t.bind(authorization(), nodeKey: b, address: atB, socketIndex: 1, indices: [0x33], now: 0)
        XCTAssertEqual(route(&t, from: atA, .capsule, index: 0x33), .forward(to: atC, socketIndex: 0))
        // Spoofed handshakes from B's address churn only B's tentative indices: its
        // confirmed one keeps working, and the flood runs out of handshake budget.
        var forwarded = 0
        for i in UInt32(100)..<UInt32(200) where route(&t, from: atB, .tunnelResponse, index: 0x11, body: body(sender: i)) != .drop("rate_limited") {
            forwarded += 1
        }
        XCTAssertEqual(forwarded, 20)
        XCTAssertEqual(route(&t, from: atA, .capsule, index: 0x33), .forward(to: atC, socketIndex: 0))
        XCTAssertEqual(t.sessions[7]?.ends[1].confirmed, [0x33])
        XCTAssertEqual(t.sessions[7]?.ends[1].tentative.count, 8)
    }

    func testASessionEndsWithItsAuthorization() {
        var t = table()
        _ = t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [0x11], now: 0, validFor: 30)
        _ = t.bind(authorization(), nodeKey: b, address: atB, socketIndex: 0, indices: [0x22], now: 0, validFor: 30)
        XCTAssertEqual(route(&t, from: atA, .capsule, index: 0x22, now: 29), .forward(to: atB, socketIndex: 0))
        XCTAssertEqual(t.expire(now: 29.5), 0)
        XCTAssertEqual(t.expire(now: 31), 1, "active, but past its authorization")
        // An end that is refused later is unbound; the session goes with its last end.
        _ = t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [0x11], now: 40)
        t.unbind(7, nodeKey: a)
        XCTAssertEqual(t.count, 0)
    }

    func testARenewedAuthorizationMovesTheSessionsEndOn() {
        var t = table()
        _ = t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [0x11], now: 0, validFor: 30)
        _ = t.bind(authorization(), nodeKey: b, address: atB, socketIndex: 1, indices: [0x22], now: 0, validFor: 30)
        // At 25 s a node rebinds with the renewed authorization (same path, valid 30 s more).
        XCTAssertEqual(
            t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [0x11], now: 25, validFor: 30),
            .bound(peerBound: true, notify: nil))
        // A refresh with the old one (the other node, not renewed yet) takes nothing back.
        _ = t.bind(authorization(), nodeKey: b, address: atB, socketIndex: 1, indices: [0x22], now: 26, validFor: 4)
        XCTAssertEqual(t.expire(now: 31), 0, "past the first authorization, within the renewed one")
        XCTAssertEqual(route(&t, from: atA, .capsule, index: 0x22, now: 40), .forward(to: atB, socketIndex: 1))
        XCTAssertEqual(route(&t, from: atB, .capsule, index: 0x11, now: 40), .forward(to: atA, socketIndex: 0))
        XCTAssertEqual(t.expire(now: 56), 1, "the renewed authorization ends it")
    }

    /// 200 000 random datagrams (any type, length, index, path id, from the two ends and
    /// from strangers) never trap, and nothing from a stranger is ever forwarded.
    func testRandomDatagramsNeverTrapAndStrangersNeverReachAnEnd() {
        var t = table()
        _ = t.bind(authorization(), nodeKey: a, address: atA, socketIndex: 0, indices: [0x11], now: 0)
        _ = t.bind(authorization(), nodeKey: b, address: atB, socketIndex: 1, indices: [0x22], now: 0)
        var rng = SystemRandomNumberGenerator()
        let strangers = (0..<4).map { SocketAddress(Endpoint("198.19.0.\(100 + $0):\(1000 + $0)")!) }
        for n in 0..<200_000 {
            let from = n % 3 == 0 ? strangers[n % 4] : (n % 3 == 1 ? atA : atB)
            let type = MessageType.allCases.randomElement(using: &rng)!
            var body = (0..<Int.random(in: 0...20, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if type == .tunnelRequest, body.count >= 12, Bool.random(using: &rng) { body.replaceSubrange(4..<12, with: [0, 0, 0, 0, 0, 0, 0, 7]) }
            let index: UInt32 =
                Bool.random(using: &rng) ? [0x11, 0x22, 0].randomElement(using: &rng)! : UInt32.random(in: 0...UInt32.max, using: &rng)
            let verdict = route(&t, from: from, type, index: index, body: body, now: Double(n) / 1000)
            if case .forward = verdict { XCTAssertFalse(strangers.contains(from), "a stranger's datagram was forwarded") }
        }
    }
}
