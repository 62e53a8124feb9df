import CyphonicPostgres
import Foundation
import NIOCore
import PostgresNIO

/// The AS database on PostgreSQL: ``StoreConnection`` over one
/// ``BlockingPostgresConnection`` (statements waited for on the calling thread: the AS
/// calls its store from its receive threads, its login workers and the command line,
/// never an event loop). Not thread-safe: ``ASStore`` holds it under its lock.
final class PostgresStoreConnection: StoreConnection {
    let dialect = StoreDialect.postgres
    let connection: BlockingPostgresConnection
    var location: String { connection.target.description }

    /// The advisory lock every write transaction takes (one writer at a time across all
    /// AS replicas, as SQLite's `BEGIN IMMEDIATE` gives one host): "CYPHONIC" in ASCII.
    static let writerLock: Int64 = 0x4359_5048_4f4e_4943

    init(_ target: PostgresTarget) throws { connection = try BlockingPostgresConnection(target) }

    /// `?` placeholders become `$1`, `$2`, … (the store's SQL has no `?` in literals).
    static func numbered(_ sql: String) -> String {
        var out = ""
        var n = 0
        for ch in sql {
            if ch == "?" {
                n += 1
                out += "$\(n)"
            } else {
                out.append(ch)
            }
        }
        return out
    }

    private func run(_ sql: String, _ parameters: [StoreValue]) throws -> PostgresQueryResult {
        var binds = PostgresBindings(capacity: parameters.count)
        for p in parameters {
            switch p {
            case .null: binds.appendNull()
            case .integer(let v): binds.append(v)
            case .text(let s): binds.append(s)
            case .blob(let b): binds.append(ByteBuffer(bytes: b))
            }
        }
        return try connection.run(Self.numbered(sql), binds)
    }

    @discardableResult
    func query(_ sql: String, _ parameters: [StoreValue]) throws -> [[StoreValue]] {
        try run(sql, parameters).rows.map { row in try row.map(Self.value) }
    }

    @discardableResult
    func execute(_ sql: String, _ parameters: [StoreValue]) throws -> Int {
        try run(sql, parameters).metadata.rows ?? 0
    }

    static func value(_ cell: PostgresCell) throws -> StoreValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8: return .integer(try cell.decode(Int64.self))
        case .text, .varchar, .name, .bpchar: return .text(try cell.decode(String.self))
        case .bytea:
            let buffer = try cell.decode(ByteBuffer.self)
            return .blob(Array(buffer.readableBytesView))
        case .bool: return .integer(try cell.decode(Bool.self) ? 1 : 0)
        default:
            throw PostgresStoreError(message: "column \(cell.columnName) has type \(cell.dataType), which the AS store does not use", sqlState: nil)
        }
    }

    func transaction<R>(_ body: () throws -> R) throws -> R {
        try connection.transaction {
            try execute("SELECT pg_advisory_xact_lock(\(Self.writerLock))", [])
            return try body()
        }
    }

    func schemaVersion() throws -> Int64 {
        let exists = try query("SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_version'", [])
        guard !exists.isEmpty else { return 0 }
        return try query("SELECT version FROM schema_version", []).first?.first?.int ?? 0
    }

    /// All pending migrations in one transaction under the writer lock: two replicas
    /// starting at once migrate once (PostgreSQL's DDL is transactional).
    func migrate(_ migrations: [String]) throws {
        try transaction {
            try execute("CREATE TABLE IF NOT EXISTS schema_version(version BIGINT NOT NULL)", [])
            if try query("SELECT version FROM schema_version", []).isEmpty {
                try execute("INSERT INTO schema_version(version) VALUES(0)", [])
            }
            let version = try query("SELECT version FROM schema_version", []).first?.first?.int ?? 0
            guard version <= Int64(migrations.count) else { throw StoreError.schemaTooNew(version) }
            for (i, sql) in migrations.enumerated() where Int64(i) >= version {
                // One statement per call (the extended protocol takes one).
                for statement in dialect.translate(sql).split(separator: ";") {
                    let text = statement.trimmingCharacters(in: .whitespacesAndNewlines)
                    if !text.isEmpty { try execute(text, []) }
                }
                try execute("UPDATE schema_version SET version = ?", [.integer(Int64(i + 1))])
            }
        }
    }
}
