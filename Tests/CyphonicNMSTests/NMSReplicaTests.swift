import CyphonicCore
import CyphonicNMS
import CyphonicPKI
import CyphonicPosix
import CyphonicPostgres
import CyphonicSignaling
import CyphonicWire
import Foundation
import Synchronization
import Testing

/// The PostgreSQL server of `make test`'s throwaway cluster (scripts/with-postgres.sh).
enum NMSTestPostgres {
    static var admin: PostgresTarget? {
        ProcessInfo.processInfo.environment["CYPHONIC_TEST_POSTGRES"].flatMap { try? PostgresTarget(url: $0) }
    }

    /// A new empty database on the cluster; dropped by `drop`.
    static func create(_ admin: PostgresTarget) throws -> PostgresTarget {
        let name = "nms_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try BlockingPostgresConnection(admin).run("CREATE DATABASE \(name)")
        return try PostgresTarget(url: "postgresql://\(admin.user)@/\(name)?host=\(admin.socketDirectory ?? "")&port=\(admin.port)")
    }

    static func drop(_ admin: PostgresTarget, _ target: PostgresTarget) {
        _ = try? BlockingPostgresConnection(admin).run("DROP DATABASE IF EXISTS \(target.database) WITH (FORCE)")
    }
}

/// Two NMS replicas (the same bundle) sharing one PostgreSQL directory, over real UDP
/// (issue 15): a node registered with replica 1 gets a tunnel to a node registered with
/// replica 2, the direction and the confirmation passing between the replicas; when
/// replica 2 stops, its node registers with replica 1 and is found there.
@Suite(.serialized, .enabled(if: NMSTestPostgres.admin != nil, "needs PostgreSQL: make test (as root) starts a throwaway cluster"))
struct NMSReplicaTests {
    @Test func aDirectionToANodeOfTheOtherReplicaGoesThroughItAndFailoverKeepsItFound() throws {
        let admin = try #require(NMSTestPostgres.admin)
        let database = try NMSTestPostgres.create(admin)
        defer { NMSTestPostgres.drop(admin, database) }
        // A long direction timeout: the direction must reach the other replica at once,
        // not by the resend at half the timeout.
        let one = try NMSFixture {
            $0.database = database
            $0.replica = "nms-one"
            $0.directionTimeoutMilliseconds = 60_000
        }
        defer { one.stop() }
        let two = try NMSFixture(sharing: one) {
            $0.database = database
            $0.replica = "nms-two"
        }
        var twoRunning = true
        defer { if twoRunning { two.stop() } }

        let (a, sa) = try one.registered("init01")
        let (b, sb) = try two.registered("responder")
        defer {
            sa.close()
            sb.close()
        }
        // Both replicas see both nodes in the directory (written within 50 ms).
        try waitUntil { (try? one.server.shared!.counts()) == ["nms-one": 1, "nms-two": 1] }
        #expect(try one.server.shared!.lookup("responder.cyphonic.internal")?.replica == "nms-two")
        #expect(one.server.registry.node(named: "responder.cyphonic.internal") == nil)

        // A asks replica one; B hears from replica two, in its own session, and confirms there.
        let (request, tid) = try a.seal(.directionRequest(target: try FQDN("responder.cyphonic.internal")))
        try sa.send(request, to: one.nms)
        let toB = try b.open(try b.receive(sb))
        guard case .routeDirection(let db) = toB.body else {
            Issue.record("\(toB.body)")
            return
        }
        #expect(db.role == .responder && db.peerFQDN.value == "init01.cyphonic.internal" && db.peerStaticKey == a.key.publicKey.bytes)
        let auth = try PathAuthorization(bytes: db.authorization)
        try auth.verify(signer: one.identity.signingKey.publicKey, pathID: db.pathID, between: b.key.publicKey.bytes, and: a.key.publicKey.bytes)
        try sb.send(
            try b.seal(
                .routeDirectionConfirmation(RouteDirectionConfirmation(pathID: db.pathID, status: .ok, localEndpoints: [])),
                transactionID: toB.transactionID), to: two.nms)
        let toA = try a.open(try a.receive(sa))
        guard case .routeDirection(let da) = toA.body else {
            Issue.record("\(toA.body)")
            return
        }
        #expect(toA.transactionID == tid && da.role == .initiator && da.pathID == db.pathID && da.authorization == db.authorization)
        #expect(da.peerEndpoints == [try sb.localEndpoint()] && da.peerStaticKey == b.key.publicKey.bytes)

        // A name no replica holds: not found, from the directory.
        let (unknown, _) = try a.seal(.directionRequest(target: try FQDN("nobody.cyphonic.internal")))
        let answer = try a.open(try a.exchange(sa, unknown, to: one.nms))
        guard case .error(let code, _) = answer.body else {
            Issue.record("\(answer.body)")
            return
        }
        #expect(code == .notFound)

        // Replica two stops (its entries go with it); B registers with replica one.
        two.stop()
        twoRunning = false
        #expect(try one.server.shared!.lookup("responder.cyphonic.internal") == nil)
        // (A replica killed instead leaves its entries, returned as not alive once it is
        // silent for SharedDirectory.staleSeconds: see the HA lab.)
        guard case .registrationAck = try b.register(with: one.nms, over: sb).body else {
            Issue.record("failover registration refused")
            return
        }
        try waitUntil { (try? one.server.shared!.counts()) == ["nms-one": 2] }
        let (again, _) = try a.seal(.directionRequest(target: try FQDN("responder.cyphonic.internal")))
        try sa.send(again, to: one.nms)
        guard case .routeDirection(let local) = try b.open(try b.receive(sb)).body else {
            Issue.record("no direction after failover")
            return
        }
        #expect(local.role == .responder && local.peerFQDN.value == "init01.cyphonic.internal")
        #expect(one.server.shared!.counters.withLock { $0.received } >= 1 && one.server.shared!.counters.withLock { $0.sent } >= 1)
    }

    @Test func entriesRoundTripAndBadOnesAreRefused() throws {
        let f = try NMSFixture()
        defer { f.stop() }
        let (_, s) = try f.registered("init01", group: "lab")
        defer { s.close() }
        let record = try #require(f.server.registry.node(named: "init01.cyphonic.internal"))
        let entry = DirectoryEntry(record)
        #expect(try DirectoryEntry(bytes: try entry.encoded()) == entry)
        #expect(entry.group == "lab" && entry.network == record.network)
        var bytes = try entry.encoded()
        bytes[0] = 9
        #expect(throws: DecodeError.self) { try DirectoryEntry(bytes: bytes) }
        #expect(throws: DecodeError.self) { try DirectoryEntry(bytes: Array(try entry.encoded().dropLast())) }
        let m = ReplicaMessage.deliver(pathID: 7, target: try FQDN("a.cyphonic.internal"), origin: "nms-one", message: [1, 2, 3])
        #expect(try ReplicaMessage(bytes: try m.encoded()) == m)
        #expect(throws: DecodeError.self) { try ReplicaMessage(bytes: [3]) }
    }
}
