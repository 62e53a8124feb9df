import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPostgres
import CyphonicSignaling
import CyphonicWire
import Foundation
import Testing

@testable import CyphonicAS

/// Two `as-server serve` processes on one PostgreSQL database, the second on a copy of
/// the first's data directory (as a second host): enrolment on one, login on the other,
/// a revocation made through one in the list the other serves, and one replica killed
/// with SIGKILL while the other goes on. Needs the throwaway cluster of `make test`.
@Suite(
    .serialized,
    .enabled(if: TestPostgres.admin != nil, "needs PostgreSQL: make test (as root) starts a throwaway cluster for it"),
    .enabled(if: ServerProcessTests.hasCurl, "needs /usr/bin/curl for the metrics endpoint"))
struct PostgresReplicaProcessTests {
    @Test func twoServingReplicasShareEnrolmentLoginAndRevocationAndOutliveAKill() throws {
        let admin = try #require(TestPostgres.admin)
        let database = try TestPostgres.createDatabase(admin)
        let dir = NSTemporaryDirectory() + "cyphonic-as-replicas-\(UUID().uuidString)"
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            TestPostgres.dropDatabase(admin, url: database)
        }
        let asServer = productPath("as-server")
        let initRun = try runTool(
            asServer, ["init", "--data-dir", dir + "/a", "--domain", "cyphonic.internal", "--database", database])
        #expect(initRun.status == 0 && initRun.output.contains("postgresql://"), "\(initRun.output)")
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/a/database")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(!FileManager.default.fileExists(atPath: dir + "/a/as.db"))
        // The second replica: a copy of the directory (keys, certificates, the database URL).
        try FileManager.default.copyItem(atPath: dir + "/a", toPath: dir + "/b")
        let second = try runTool(asServer, ["init", "--data-dir", dir + "/c", "--database", database])
        #expect(second.status != 0 && second.output.contains("already holds an AS"), "\(second.output)")
        try #"{"dataDir": "b"}"#.write(toFile: dir + "/b.json", atomically: true, encoding: .utf8)
        let check = try runTool(asServer, ["--check-config", dir + "/b.json"])
        #expect(check.status == 0, "\(check.output)")

        // Nodes added through either replica's command line, seen by both.
        var tokens: [String: String] = [:]
        for (name, replica) in [("init01", "a"), ("init02", "b")] {
            let r = try runTool(asServer, ["node", "add", name, "--data-dir", dir + "/" + replica, "--json"])
            let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
            tokens[name] = try #require(json?["token"] as? String, "\(r.output)")
        }
        let status = try runTool(asServer, ["status", "--data-dir", dir + "/a"])
        #expect(status.output.contains("nodes         2") && status.output.contains("postgresql://"), "\(status.output)")

        let a = try ServerProcessTests.Server(dataDir: dir + "/a")
        let b = try ServerProcessTests.Server(dataDir: dir + "/b")
        try a.start()
        try b.start()
        let ca = try Certificate(pem: try String(contentsOfFile: dir + "/a/ca.pem", encoding: .utf8))
        let viaA = ASClient(server: a.endpoint, caCertificate: ca)
        let viaB = ASClient(server: b.endpoint, caCertificate: ca)
        let k1 = try X25519PrivateKey()
        let k2 = try X25519PrivateKey()
        // Enrol on one replica, log in with the certificate on the other.
        let p1 = try viaA.login(name: "init01", credential: .token(tokens["init01"]!), key: k1)
        let p2 = try viaB.login(name: "init02", credential: .token(tokens["init02"]!), key: k2)
        #expect(p1.virtualIPv4 != p2.virtualIPv4)
        let again = try viaB.login(name: "init01", credential: .certificate(der: p1.certificate), key: k1)
        #expect(again.virtualIPv4 == p1.virtualIPv4 && again.nodeID == p1.nodeID)
        // A token used on A is used on B too.
        #expect(throws: LoginError.refused(.unauthorized, LoginFailure.tokenUsed.clientMessage)) {
            try viaB.login(name: "init01", credential: .token(tokens["init01"]!), key: try X25519PrivateKey())
        }

        // Revoked through A's command line: B's list has it and B refuses the login.
        #expect(try runTool(asServer, ["node", "revoke", "init02", "--data-dir", dir + "/a"]).status == 0)
        let crl = try viaB.revocationList(key: try X25519PrivateKey())
        #expect(crl.contains(try Certificate(der: p2.certificate).serial!))
        #expect(throws: LoginError.refused(.revoked, LoginFailure.revoked.clientMessage)) {
            try viaB.login(name: "init02", credential: .certificate(der: p2.certificate), key: k2)
        }

        // A killed: B goes on serving logins and new enrolments.
        #expect(a.kill(SIGKILL) != 0)
        let r = try runTool(asServer, ["node", "add", "init03", "--data-dir", dir + "/b", "--json"])
        let token3 = try #require((try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any])?["token"] as? String)
        let p3 = try viaB.login(name: "init03", credential: .token(token3), key: try X25519PrivateKey())
        #expect(Set([p1.virtualIPv4, p2.virtualIPv4, p3.virtualIPv4]).count == 3)
        _ = try viaB.login(name: "init01", credential: .certificate(der: p1.certificate), key: k1)
        #expect(try b.metric("as_pool_used") >= 2)
        #expect(b.kill(SIGTERM) == 0)
    }
}
