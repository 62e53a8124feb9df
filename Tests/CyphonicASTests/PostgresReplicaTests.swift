import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPostgres
import CyphonicWire
import Foundation
import Synchronization
import Testing

@testable import CyphonicAS

/// Two AS replicas on one PostgreSQL database: the second opens a copy of the first's
/// data directory, as a second host would. Runs when `make test` has started its
/// throwaway cluster (``TestPostgres``); skipped otherwise.
@Suite(.enabled(if: TestPostgres.admin != nil, "needs PostgreSQL: make test (as root) starts a throwaway cluster for it"))
struct PostgresReplicaTests {
    let source = IPAddress("198.19.1.2")!

    /// Replica A on `t`'s directory, replica B on a copy of it; generous rate limits so
    /// hundreds of logins at once are decided on their merits.
    static func replicas(_ t: TempAS) throws -> (a: ASAuthority, b: ASAuthority, copy: String) {
        let copy = t.path + "-replica"
        try FileManager.default.copyItem(atPath: t.path, toPath: copy)
        func authority(_ dir: ASDirectory) throws -> ASAuthority {
            try ASAuthority(
                directory: dir, limiter: RateLimiter(maxFailures: 10_000, windowSeconds: 60), tokenIterations: 1000,
                maxPasswordChecksPerSecond: 100_000)
        }
        return (try authority(t.directory), try authority(try ASDirectory.open(at: copy)), copy)
    }

    @Test func concurrentEnrolmentOnTwoReplicasNeverAssignsAnAddressNameOrTokenTwice() throws {
        let t = try TempAS()
        // Registered before the replica is made: a failure making it leaves nothing behind.
        defer {
            t.cleanup()
            try? FileManager.default.removeItem(atPath: t.path + "-replica")
        }
        let (a, b, _) = try Self.replicas(t)
        #expect(a.directory.store.location.hasPrefix("postgresql://"))
        // 2 x 100 node adds at once, half on each replica; and each of the first 100 names
        // requested a second time on the other replica at the same moment.
        let names = (0..<200).map { String(format: "n%03d", $0) }
        let tickets = Mutex<[String: EnrolmentTicket]>([:])
        let refused = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 300) { i in
            let name = names[i % 200]
            let replica = (i < 200 ? i % 2 == 0 : i % 2 == 1) ? a : b
            do {
                let ticket = try replica.addNode(name: name, group: "load")
                tickets.withLock { $0[name] = ticket }
            } catch StoreError.nameTaken {
                refused.withLock { $0.append(name) }
            } catch {
                Issue.record("node add \(name): \(error)")
            }
        }
        let issued = tickets.withLock { $0 }
        #expect(issued.count == 200)
        #expect(refused.withLock { $0.count } == 100)
        let nodes = try b.directory.store.nodes()
        #expect(nodes.count == 200)
        #expect(Set(nodes.map(\.vip4)).count == 200 && Set(nodes.map(\.vip6)).count == 200)
        #expect(Set(nodes.map(\.fqdn)).count == 200)
        // The pool is filled from the bottom without gaps: addresses 1...200.
        let pool = try AddressPool(ipv4: IPPrefix("198.18.0.0/16")!, ipv6: IPPrefix("2001:db8:c0ff:ee::/64")!)
        #expect(Set(nodes.map(\.vip4)) == Set((1...200).map { pool.addresses(index: Int64($0))!.0.description }))

        // Each token presented on both replicas at once: it works exactly once.
        let keys = try names.map { _ in try X25519PrivateKey() }
        let successes = Mutex<[String: Int]>([:])
        let tokenUsed = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 400) { i in
            let n = i % 200
            let replica = i < 200 ? a : b
            let result = replica.login(
                Login(name: names[n], credential: .token(issued[names[n]]!.token)), clientKey: keys[n].publicKey, source: source)
            switch result {
            case .success: successes.withLock { $0[names[n], default: 0] += 1 }
            case .failure(.tokenUsed): tokenUsed.add(1, ordering: .relaxed)
            case .failure(let f): Issue.record("login \(names[n]): \(f)")
            }
        }
        let wins = successes.withLock { $0 }
        #expect(wins.count == 200 && wins.values.allSatisfy { $0 == 1 })
        #expect(tokenUsed.load(ordering: .relaxed) == 200)
        let enrolled = try a.directory.store.nodes()
        #expect(enrolled.allSatisfy { $0.state == .active })
        #expect(Set(enrolled.compactMap(\.publicKey)).count == 200)
        #expect(Set(enrolled.compactMap(\.serial)).count == 200)
    }

    @Test func revocationOnOneReplicaIsInTheListTheOtherServesAndRefusesTheLogin() throws {
        let t = try TempAS()
        // Registered before the replica is made: a failure making it leaves nothing behind.
        defer {
            t.cleanup()
            try? FileManager.default.removeItem(atPath: t.path + "-replica")
        }
        let (a, b, _) = try Self.replicas(t)
        let ticket = try a.addNode(name: "init01", group: nil)
        let key = try X25519PrivateKey()
        let first = try b.login(Login(name: "init01", credential: .token(ticket.token)), clientKey: key.publicKey, source: source).get()
        let serial = try #require(try Certificate(der: first.value.certificate).serial)
        let before = try #require(try b.revocationList())
        #expect(try a.revokeNode(name: "init01") == [serial])
        let after = try #require(try b.revocationList())
        #expect(after.contains(serial) && !before.contains(serial))
        #expect(after.number > before.number)
        let again = b.login(
            Login(name: "init01", credential: .certificate(der: first.value.certificate)), clientKey: key.publicKey, source: source)
        #expect(again.failureValue == LoginFailure.revoked)
    }

    @Test func twoReplicasStartingAtOnceMigrateOnceAndInitRefusesADatabaseWithAnAS() throws {
        let admin = try #require(TestPostgres.admin)
        let url = try TestPostgres.createDatabase(admin)
        defer { TestPostgres.dropDatabase(admin, url: url) }
        let target = try PostgresTarget(url: url)
        let versions = Mutex<[Int64]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            do {
                let store = try ASStore(postgres: target)
                versions.withLock { $0.append(store.schemaVersion) }
            } catch {
                Issue.record("open: \(error)")
            }
        }
        #expect(versions.withLock { $0 } == Array(repeating: Int64(ASStore.migrations.count), count: 4))

        let t = try TempAS()
        defer { t.cleanup() }
        let other = NSTemporaryDirectory() + "cyphonic-as-second-init-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: other) }
        #expect(throws: StoreError.alreadyHoldsAnAS(try PostgresTarget(url: t.database!).description)) {
            try ASDirectory.initialise(at: other, settings: t.directory.settings, database: t.database)
        }
        // Refused before any key was made.
        #expect(!FileManager.default.fileExists(atPath: other))
    }
}

extension Result {
    var failureValue: Failure? { if case .failure(let f) = self { return f } else { return nil } }
}

extension PostgresReplicaTests {
    @Test func backupOfAPostgreSQLASPointsToPgDump() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        let out = t.path + "-backup"
        #expect {
            try ASBackup.backup(dataDir: t.path, to: out)
        } throws: { "\($0)".contains("pg_dump") }
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
