import CCyphonicSQLite

/// A SQLite failure: the call, SQLite's result code and message.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public var description: String { "\(message) (SQLite error \(code))" }
    /// A UNIQUE or other constraint failed.
    public var isConstraint: Bool { code & 0xff == SQLITE_CONSTRAINT }
}

/// A thin wrapper over one `sqlite3` connection: prepared statements, transactions.
/// Not thread-safe: the owner serialises access (``ASStore`` holds it under a lock).
final class SQLiteDatabase: StoreConnection {
    let dialect = StoreDialect.sqlite
    var location: String { path }
    private let db: OpaquePointer
    /// The file, named in every error.
    let path: String

    init(path: String, readOnly: Bool = false) throws(SQLiteError) {
        self.path = path
        var handle: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open \(path)"
            sqlite3_close(handle)
            throw SQLiteError(code: rc, message: "the database \(path): \(message)")
        }
        db = handle
        sqlite3_busy_timeout(db, 5000)
    }

    deinit { sqlite3_close(db) }

    private func error(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: rc, message: "the database \(path): \(String(cString: sqlite3_errmsg(db)))")
    }

    /// Runs SQL with no parameters (schema, pragmas); several statements allowed.
    func executeScript(_ sql: String) throws(SQLiteError) {
        let rc = sqlite3_exec(db, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(rc) }
    }

    /// Runs one statement with parameters; returns every row.
    @discardableResult
    func query(_ sql: String, _ parameters: [StoreValue]) throws(SQLiteError) -> [[StoreValue]] {
        var stmt: OpaquePointer?
        var rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc) }
        defer { sqlite3_finalize(stmt) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (i, p) in parameters.enumerated() {
            let index = Int32(i + 1)
            switch p {
            case .null: rc = sqlite3_bind_null(stmt, index)
            case .integer(let v): rc = sqlite3_bind_int64(stmt, index, v)
            case .text(let s): rc = sqlite3_bind_text(stmt, index, s, -1, transient)
            case .blob(let b):
                rc = b.withUnsafeBytes {
                    sqlite3_bind_blob(stmt, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(b.count), transient)
                }
            }
            guard rc == SQLITE_OK else { throw error(rc) }
        }
        var rows: [[StoreValue]] = []
        while true {
            rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc) }
            var row: [StoreValue] = []
            for c in 0..<sqlite3_column_count(stmt) {
                switch sqlite3_column_type(stmt, c) {
                case SQLITE_INTEGER: row.append(.integer(sqlite3_column_int64(stmt, c)))
                case SQLITE_TEXT: row.append(.text(String(cString: sqlite3_column_text(stmt, c))))
                case SQLITE_BLOB:
                    let n = Int(sqlite3_column_bytes(stmt, c))
                    let p = sqlite3_column_blob(stmt, c)
                    row.append(.blob(n == 0 || p == nil ? [] : Array(UnsafeRawBufferPointer(start: p, count: n))))
                default: row.append(.null)
                }
            }
            rows.append(row)
        }
        return rows
    }

    @discardableResult
    func execute(_ sql: String, _ parameters: [StoreValue]) throws(SQLiteError) -> Int {
        try query(sql, parameters)
        return Int(sqlite3_changes(db))
    }

    /// Runs `body` in one IMMEDIATE transaction: committed if it returns, rolled back if it throws.
    func transaction<R>(_ body: () throws -> R) throws -> R {
        try executeScript("BEGIN IMMEDIATE")
        do {
            let r = try body()
            try executeScript("COMMIT")
            return r
        } catch {
            try? executeScript("ROLLBACK")
            throw error
        }
    }

    func schemaVersion() throws -> Int64 { try query("PRAGMA user_version", []).first?.first?.int ?? 0 }

    func migrate(_ migrations: [String]) throws {
        let version = try schemaVersion()
        guard version <= Int64(migrations.count) else { throw StoreError.schemaTooNew(version) }
        for (i, sql) in migrations.enumerated() where Int64(i) >= version {
            try transaction {
                try executeScript(dialect.translate(sql))
                try executeScript("PRAGMA user_version = \(i + 1)")
            }
        }
    }
}
