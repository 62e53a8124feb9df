import CyphonicCore
import CyphonicPostgres

/// A node as the AS knows it.
public struct NodeRecord: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable { case pending, active, revoked }
    public var id: Int64
    public var name: String
    public var fqdn: String
    public var group: String?
    public var vip4: String
    public var vip6: String
    public var state: State
    /// Hex of the X25519 static key, once enrolled.
    public var publicKey: String?
    public var serial: UInt64?
    public var certificateNotAfter: Int64?
    public var createdAt: Int64
    public var enrolledAt: Int64?
    public var lastLoginAt: Int64?
}

/// A service (NMS, TRS) certificate the AS issued.
public struct ServiceRecord: Sendable, Equatable, Codable {
    public var name: String
    public var role: String
    public var serial: UInt64
    public var notAfter: Int64
    public var createdAt: Int64
}

/// Why an operation on the store was refused; messages name the offending value.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    case notInitialised(String)
    case nameTaken(String)
    case invalidName(String)
    case poolExhausted(String)
    case notFound(String)
    case tokenAlreadyUsed(String)
    case schemaTooNew(Int64)
    case alreadyHoldsAnAS(String)

    public var description: String {
        switch self {
        case .notInitialised(let p): return "no AS database at \(p): run `as-server init` first"
        case .nameTaken(let n): return "name \(n) is taken"
        case .invalidName(let n): return "invalid node name \(n): use one DNS label (letters, digits, '-', 1-63 chars)"
        case .poolExhausted(let p): return "virtual address pool \(p) is exhausted"
        case .notFound(let n): return "no node or service named \(n)"
        case .tokenAlreadyUsed(let n): return "the enrolment token of \(n) was already used"
        case .schemaTooNew(let v): return "database schema version \(v) is newer than this as-server understands"
        case .alreadyHoldsAnAS(let d):
            return "\(d) already holds an AS; a further replica copies the first one's data directory instead of running init"
        }
    }
}

/// The AS's durable state: SQLite on one host (WAL mode), or PostgreSQL shared by several
/// AS replicas; the same statements and versioned migrations on both. One transaction
/// per operation, so a `kill -9` loses nothing that was committed, and one writer at a
/// time across every replica (see ``StoreConnection``), so addresses, names and tokens
/// are never handed out twice. Uniqueness of names, FQDNs and virtual addresses is also
/// enforced by the schema. `Sendable`: the connection is used under a mutex.
public final class ASStore: Sendable {
    let db: Locked<any StoreConnection>
    /// Where the database is: the SQLite file, or the PostgreSQL URL without password.
    public let location: String
    /// SQLite or PostgreSQL.
    let dialect: StoreDialect

    /// Schema migrations in SQLite's words (``StoreDialect/translate(_:)`` makes them
    /// PostgreSQL's), applied in order; the database records how many ran.
    static let migrations: [String] = [
        """
        CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE nodes(
          id INTEGER PRIMARY KEY,
          name TEXT NOT NULL UNIQUE,
          fqdn TEXT NOT NULL UNIQUE,
          grp TEXT,
          addr_index INTEGER NOT NULL UNIQUE CHECK(addr_index > 0),
          vip4 TEXT NOT NULL UNIQUE,
          vip6 TEXT NOT NULL UNIQUE,
          token_hash BLOB NOT NULL,
          token_salt BLOB NOT NULL,
          token_iterations INTEGER NOT NULL,
          token_used INTEGER NOT NULL DEFAULT 0,
          public_key BLOB UNIQUE,
          state TEXT NOT NULL CHECK(state IN ('pending','active','revoked')),
          created_at INTEGER NOT NULL,
          enrolled_at INTEGER,
          last_login_at INTEGER);
        CREATE TABLE certificates(
          serial INTEGER PRIMARY KEY,
          node_id INTEGER REFERENCES nodes(id) ON DELETE SET NULL,
          subject TEXT NOT NULL,
          role TEXT NOT NULL,
          not_before INTEGER NOT NULL,
          not_after INTEGER NOT NULL,
          der BLOB NOT NULL,
          revoked_at INTEGER);
        CREATE INDEX certificates_node ON certificates(node_id);
        CREATE TABLE services(
          name TEXT PRIMARY KEY,
          role TEXT NOT NULL,
          serial INTEGER NOT NULL REFERENCES certificates(serial),
          created_at INTEGER NOT NULL);
        CREATE TABLE crls(number INTEGER PRIMARY KEY, der BLOB NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE audit(id INTEGER PRIMARY KEY, at INTEGER NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL,
                           detail TEXT NOT NULL DEFAULT '');
        """,
        // 2: addresses freed by `node remove` stay out of the pool until the last
        // certificate that named them has expired (no takeover by the next `node add`).
        """
        CREATE TABLE retired_addresses(
          addr_index INTEGER PRIMARY KEY CHECK(addr_index > 0),
          vip4 TEXT NOT NULL,
          vip6 TEXT NOT NULL,
          until INTEGER NOT NULL,
          node TEXT NOT NULL);
        """,
    ]

    /// Opens (and with `create`, creates) the SQLite database and applies pending migrations.
    public init(path: String, create: Bool = false) throws {
        if !create, access(path, F_OK) != 0 { throw StoreError.notInitialised(path) }
        let connection = try SQLiteDatabase(path: path)
        try connection.executeScript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        try connection.migrate(Self.migrations)
        (location, dialect, db) = (path, .sqlite, Locked(connection))
    }

    /// Opens an existing SQLite database without changing it: no migrations, no journal-mode
    /// switch (backups read the live database of a running, perhaps older, AS this way).
    /// A database newer than this binary is refused as at start-up.
    public init(readOnlyPath path: String) throws {
        if access(path, F_OK) != 0 { throw StoreError.notInitialised(path) }
        let connection = try SQLiteDatabase(path: path, readOnly: true)
        let version = try connection.schemaVersion()
        guard version <= Int64(Self.migrations.count) else { throw StoreError.schemaTooNew(version) }
        (location, dialect, db) = (path, .sqlite, Locked(connection))
    }

    /// Connects to a PostgreSQL database (which must exist) and applies pending migrations
    /// (once, whichever replica comes first). With `create`, a database that already holds
    /// an AS is refused: a second replica copies the first one's data directory instead.
    public init(postgres target: PostgresTarget, create: Bool = false) throws {
        let connection = try PostgresStoreConnection(target)
        if create, try connection.schemaVersion() > 0, try !connection.query("SELECT 1 FROM settings LIMIT 1").isEmpty {
            throw StoreError.alreadyHoldsAnAS(target.description)
        }
        try connection.migrate(Self.migrations)
        (location, dialect, db) = (target.description, .postgres, Locked(connection))
    }

    public var schemaVersion: Int64 { (try? db.withLock { try $0.schemaVersion() }) ?? 0 }

    // MARK: settings

    public func setting(_ key: String) throws -> String? {
        try db.withLock { try $0.query("SELECT value FROM settings WHERE key = ?", [.text(key)]).first?.first?.string }
    }

    public func setSettings(_ values: [String: String]) throws {
        try db.withLock { db in
            try db.transaction {
                for (k, v) in values.sorted(by: { $0.key < $1.key }) {
                    try db.query(
                        "INSERT INTO settings(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        [.text(k), .text(v)])
                }
            }
        }
    }

    // MARK: nodes

    static let nodeColumns = """
        n.id, n.name, n.fqdn, n.grp, n.vip4, n.vip6, n.state, n.public_key, n.created_at, n.enrolled_at, n.last_login_at,
        (SELECT serial FROM certificates c WHERE c.node_id = n.id AND c.revoked_at IS NULL ORDER BY not_after DESC LIMIT 1),
        (SELECT not_after FROM certificates c WHERE c.node_id = n.id AND c.revoked_at IS NULL ORDER BY not_after DESC LIMIT 1)
        """

    static func node(_ r: [StoreValue]) -> NodeRecord {
        NodeRecord(
            id: r[0].int ?? 0, name: r[1].string ?? "", fqdn: r[2].string ?? "", group: r[3].string,
            vip4: r[4].string ?? "", vip6: r[5].string ?? "", state: NodeRecord.State(rawValue: r[6].string ?? "") ?? .revoked,
            publicKey: r[7].bytes.map { Hex.encode($0) }, serial: r[11].int.map { UInt64(bitPattern: $0) },
            certificateNotAfter: r[12].int, createdAt: r[8].int ?? 0, enrolledAt: r[9].int, lastLoginAt: r[10].int)
    }

    /// The node with this name (label) or FQDN.
    public func node(named name: String) throws -> NodeRecord? {
        try db.withLock { db in
            try db.query("SELECT \(Self.nodeColumns) FROM nodes n WHERE n.name = ? OR n.fqdn = ?", [.text(name), .text(name)])
                .first.map(Self.node)
        }
    }

    public func nodes() throws -> [NodeRecord] {
        try db.withLock { try $0.query("SELECT \(Self.nodeColumns) FROM nodes n ORDER BY n.addr_index").map(Self.node) }
    }

    /// The stored token hash, salt and iterations, and whether the token was used.
    public func tokenVerifier(nodeID: Int64) throws -> (hash: [UInt8], salt: [UInt8], iterations: Int, used: Bool)? {
        try db.withLock { db in
            try db.query("SELECT token_hash, token_salt, token_iterations, token_used FROM nodes WHERE id = ?", [.integer(nodeID)])
                .first.map { ($0[0].bytes ?? [], $0[1].bytes ?? [], Int($0[2].int ?? 1), ($0[3].int ?? 1) != 0) }
        }
    }

    /// First login: consumes the token (only if still unused), activates the node with its
    /// public key, and records the certificate — all in one transaction.
    public func enrol(nodeID: Int64, publicKey: [UInt8], certificate: IssuedCertificate, now: Int64) throws {
        try db.withLock { db in
            try db.transaction {
                let changed = try db.execute(
                    """
                    UPDATE nodes SET token_used = 1, state = 'active', public_key = ?, enrolled_at = ?, last_login_at = ?
                    WHERE id = ? AND token_used = 0 AND state = 'pending'
                    """, [.blob(publicKey), .integer(now), .integer(now), .integer(nodeID)])
                guard changed == 1 else {
                    throw StoreError.tokenAlreadyUsed("node \(nodeID)")
                }
                try Self.insertCertificate(db, certificate, nodeID: nodeID)
                try Self.audit(db, now, "node.enrol", "\(nodeID)", "serial=\(certificate.serial)")
            }
        }
    }

    /// The newest unrevoked certificate of a node (DER).
    public func currentCertificate(nodeID: Int64) throws -> [UInt8]? {
        try db.withLock { db in
            try db.query(
                "SELECT der FROM certificates WHERE node_id = ? AND revoked_at IS NULL ORDER BY not_after DESC LIMIT 1",
                [.integer(nodeID)]
            ).first?.first?.bytes
        }
    }

    /// Revokes a node (state and every certificate); `signCRL` makes the new CRL from the
    /// full revoked-serial list inside the same transaction. Returns the revoked serials.
    public func revokeNode(named name: String, now: Int64, signCRL: ([UInt64], UInt64) throws -> [UInt8]) throws -> [UInt64] {
        try db.withLock { db in
            try db.transaction {
                guard
                    let id = try db.query("SELECT id FROM nodes WHERE name = ? OR fqdn = ?", [.text(name), .text(name)])
                        .first?.first?.int
                else { throw StoreError.notFound(name) }
                try db.query("UPDATE nodes SET state = 'revoked' WHERE id = ?", [.integer(id)])
                let serials = try Self.revokeCertificates(db, nodeID: id, now: now)
                try Self.publishCRL(db, now: now, sign: signCRL)
                try Self.audit(db, now, "node.revoke", name, "serials=\(serials)")
                return serials
            }
        }
    }

    /// The current CRL (number, DER), if any was published.
    public func latestCRL() throws -> (number: UInt64, der: [UInt8])? {
        try db.withLock { db in
            try db.query("SELECT number, der FROM crls ORDER BY number DESC LIMIT 1").first.map {
                (UInt64($0[0].int ?? 0), $0[1].bytes ?? [])
            }
        }
    }

    /// Publishes a fresh CRL (for example an empty one at init, or before the old one expires).
    public func refreshCRL(now: Int64, sign: ([UInt64], UInt64) throws -> [UInt8]) throws {
        try db.withLock { db in try db.transaction { try Self.publishCRL(db, now: now, sign: sign) } }
    }

    public func revokedSerials() throws -> [UInt64] {
        try db.withLock { db in
            try db.query("SELECT serial FROM certificates WHERE revoked_at IS NOT NULL ORDER BY serial").compactMap {
                $0[0].int.map { UInt64(bitPattern: $0) }
            }
        }
    }

    // MARK: services

    public func addService(name: String, role: String, certificate: IssuedCertificate, now: Int64) throws {
        try db.withLock { db in
            try db.transaction {
                if try !db.query("SELECT 1 FROM services WHERE name = ?", [.text(name)]).isEmpty { throw StoreError.nameTaken(name) }
                if try !db.query("SELECT 1 FROM nodes WHERE fqdn = ?", [.text(name)]).isEmpty { throw StoreError.nameTaken("\(name) (a node)") }
                try Self.insertCertificate(db, certificate, nodeID: nil)
                try db.query(
                    "INSERT INTO services(name, role, serial, created_at) VALUES(?, ?, ?, ?)",
                    [.text(name), .text(role), .integer(Int64(bitPattern: certificate.serial)), .integer(now)])
                try Self.audit(db, now, "service.add", name, "role=\(role) serial=\(certificate.serial)")
            }
        }
    }

    public func services() throws -> [ServiceRecord] {
        try db.withLock { db in
            try db.query(
                """
                SELECT s.name, s.role, s.serial, c.not_after, s.created_at FROM services s
                JOIN certificates c ON c.serial = s.serial ORDER BY s.name
                """
            ).map {
                ServiceRecord(
                    name: $0[0].string ?? "", role: $0[1].string ?? "", serial: UInt64(bitPattern: $0[2].int ?? 0),
                    notAfter: $0[3].int ?? 0, createdAt: $0[4].int ?? 0)
            }
        }
    }

    /// Records an audit entry outside any other operation (logins refused, init).
    public func audit(_ action: String, _ subject: String, _ detail: String = "", now: Int64) throws {
        try db.withLock { try Self.audit($0, now, action, subject, detail) }
    }

    /// How many nodes the AS holds (any state).
    public func nodeCount() throws -> Int {
        try db.withLock { Int(try $0.query("SELECT COUNT(*) FROM nodes").first?.first?.int ?? 0) }
    }

    public func auditCount(action: String) throws -> Int {
        try db.withLock { Int(try $0.query("SELECT COUNT(*) FROM audit WHERE action = ?", [.text(action)]).first?.first?.int ?? 0) }
    }

    // MARK: helpers (run inside the caller's lock and transaction)

    static func insertCertificate(_ db: any StoreConnection, _ c: IssuedCertificate, nodeID: Int64?) throws {
        try db.query(
            """
            INSERT INTO certificates(serial, node_id, subject, role, not_before, not_after, der) VALUES(?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .integer(Int64(bitPattern: c.serial)), nodeID.map { .integer($0) } ?? .null, .text(c.subject),
                .text(c.role), .integer(c.notBefore), .integer(c.notAfter), .blob(c.der),
            ])
    }

    static func revokeCertificates(_ db: any StoreConnection, nodeID: Int64, now: Int64) throws -> [UInt64] {
        let serials = try db.query("SELECT serial FROM certificates WHERE node_id = ? AND revoked_at IS NULL", [.integer(nodeID)])
            .compactMap { $0[0].int.map { UInt64(bitPattern: $0) } }
        try db.query("UPDATE certificates SET revoked_at = ? WHERE node_id = ? AND revoked_at IS NULL", [.integer(now), .integer(nodeID)])
        return serials
    }

    static func publishCRL(_ db: any StoreConnection, now: Int64, sign: ([UInt64], UInt64) throws -> [UInt8]) throws {
        // Expired certificates are refused anyway: listing them would only grow the list.
        let serials = try db.query(
            "SELECT serial FROM certificates WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY serial",
            [.integer(now)]
        )
        .compactMap { $0[0].int.map { UInt64(bitPattern: $0) } }
        let number = UInt64(try db.query("SELECT COALESCE(MAX(number), 0) + 1 FROM crls").first?.first?.int ?? 1)
        let der = try sign(serials, number)
        try db.query("INSERT INTO crls(number, der, created_at) VALUES(?, ?, ?)", [.integer(Int64(number)), .blob(der), .integer(now)])
        // The newest lists are all anyone needs; older ones go (the table stays small).
        try db.query("DELETE FROM crls WHERE number <= ?", [.integer(Int64(number) - 16)])
    }

    static func audit(_ db: any StoreConnection, _ now: Int64, _ action: String, _ subject: String, _ detail: String) throws {
        try db.query(
            "INSERT INTO audit(at, action, subject, detail) VALUES(?, ?, ?, ?)",
            [.integer(now), .text(action), .text(subject), .text(detail)])
    }
}

/// A certificate as the store records it.
public struct IssuedCertificate: Sendable {
    public var serial: UInt64
    public var subject: String
    public var role: String
    public var notBefore: Int64
    public var notAfter: Int64
    public var der: [UInt8]

    public init(serial: UInt64, subject: String, role: String, notBefore: Int64, notAfter: Int64, der: [UInt8]) {
        self.serial = serial
        self.subject = subject
        self.role = role
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.der = der
    }
}

#if canImport(Glibc)
import Glibc
#endif
