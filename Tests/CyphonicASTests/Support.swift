import CyphonicCore
import CyphonicPostgres
import CyphonicTestSupport
import Foundation

@testable import CyphonicAS

/// The PostgreSQL server the AS suite also runs against: `make test` (as root) starts a
/// throwaway cluster (scripts/with-postgres.sh) and runs the suite a second time with
/// `CYPHONIC_TEST_POSTGRES` naming it; then every ``TempAS`` keeps its store there, each
/// in a database of its own.
enum TestPostgres {
    /// The cluster's `postgres` database (for CREATE/DROP DATABASE), if the suite runs on PostgreSQL.
    static var admin: PostgresTarget? {
        ProcessInfo.processInfo.environment["CYPHONIC_TEST_POSTGRES"].flatMap { try? PostgresTarget(url: $0) }
    }

    /// A new empty database: its URL.
    static func createDatabase(_ admin: PostgresTarget) throws -> String {
        let name = "as_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try PostgresStoreConnection(admin).execute("CREATE DATABASE \(name)", [])
        return url(admin, database: name)
    }

    static func url(_ admin: PostgresTarget, database: String) -> String {
        "postgresql://\(admin.user)@/\(database)?host=\(admin.socketDirectory ?? "/run/postgresql")&port=\(admin.port)"
    }

    static func dropDatabase(_ admin: PostgresTarget, url: String) {
        guard let name = try? PostgresTarget(url: url).database else { return }
        _ = try? PostgresStoreConnection(admin).execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)", [])
    }
}

/// A fresh AS data directory under /tmp, removed by `cleanup()` (tests call it in `defer`);
/// its store in PostgreSQL when the suite runs there (``TestPostgres``).
struct TempAS {
    let path: String
    let directory: ASDirectory
    let authority: ASAuthority
    /// The PostgreSQL database, when the store is there.
    let database: String?

    init(vip4: String = "198.18.0.0/16", vip6: String = "2001:db8:c0ff:ee::/64", renewBeforeDays: Int = 10) throws {
        path = NSTemporaryDirectory() + "cyphonic-as-test-\(UUID().uuidString)"
        let settings = try ASSettings(
            domain: try FQDN("cyphonic.internal"),
            pool: try AddressPool(ipv4: IPPrefix(vip4)!, ipv6: IPPrefix(vip6)!),
            certificateDays: 30, renewBeforeDays: renewBeforeDays,
            nmsEndpoints: [Endpoint("198.19.0.2:4502")!], trsEndpoints: [Endpoint("198.19.0.3:4503")!])
        database = try TestPostgres.admin.map(TestPostgres.createDatabase)
        directory = try ASDirectory.initialise(at: path, settings: settings, database: database)
        authority = try ASAuthority(
            directory: directory, limiter: RateLimiter(maxFailures: 5, windowSeconds: 60),
            tokenIterations: 1000)
    }

    func cleanup() {
        try? FileManager.default.removeItem(atPath: path)
        if let database, let admin = TestPostgres.admin { TestPostgres.dropDatabase(admin, url: database) }
    }
}

/// Path of a product built by `swift build` next to the test bundle.
func productPath(_ name: String) -> String { builtProduct(name) }

/// A socket of `type` bound to a free port on 127.0.0.1: the descriptor and the port.
func loopbackSocket(_ type: Int32) -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, type, 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return (fd, UInt16(bigEndian: addr.sin_port))
}

/// A free UDP/TCP port on loopback (bound to 0, then released).
func freePort() throws -> UInt16 {
    let (fd, port) = loopbackSocket(Int32(SOCK_DGRAM.rawValue))
    close(fd)
    return port
}

/// Runs a program to completion; returns status and combined output.
@discardableResult
func runTool(_ path: String, _ args: [String]) throws -> (status: Int32, output: String) { try runProcess(path, args) }
