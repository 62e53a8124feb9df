import Logging
import NIOCore
import NIOPosix
import PostgresNIO

/// A PostgreSQL failure: what was being done and what the server (or the connection)
/// said. Carries the SQLSTATE so a unique violation can be told apart.
public struct PostgresStoreError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let sqlState: String?
    public var description: String { message + (sqlState.map { " (SQLSTATE \($0))" } ?? "") }
    /// A UNIQUE or other integrity constraint failed (SQLSTATE class 23).
    public var isConstraint: Bool { sqlState?.hasPrefix("23") ?? false }

    public init(message: String, sqlState: String?) {
        self.message = message
        self.sqlState = sqlState
    }
}

/// One PostgreSQL connection (postgres-nio) used from ordinary threads: each statement
/// is sent on the NIO singleton event-loop group and waited for on the calling thread,
/// which must never be an event-loop thread (NIO refuses). A connection that failed is
/// dropped and made anew by the next statement, so its user rides out a PostgreSQL
/// restart (``connectionCount`` tells it happened). Not thread-safe: its owner holds it
/// under a lock. No TLS (docs/scale.md: a Unix socket or a private network).
public final class BlockingPostgresConnection {
    public let target: PostgresTarget
    private var connection: PostgresConnection?
    /// Connections made so far (a new one after a failure).
    public private(set) var connectionCount = 0
    /// Inside ``transaction(_:)``: a lost connection is an error then, never replaced
    /// (statements after a reconnect would run outside the transaction and its locks).
    private var inTransaction = false
    /// Seconds a statement may take before the connection is closed (a dead TCP peer
    /// would otherwise hold the caller, and any lock it holds, for hours).
    public static let statementDeadlineSeconds: Int64 = 30
    /// Whether the connection is up (it is made again by the next statement otherwise).
    public var isOpen: Bool { connection.map { !$0.isClosed } ?? false }
    let logger: Logger

    public init(_ target: PostgresTarget, logger: Logger = Logger(label: "cyphonic.postgres")) throws {
        self.target = target
        var quiet = logger
        quiet.logLevel = .warning
        self.logger = quiet
        _ = try connected()
    }

    deinit { close() }

    public func close() {
        if let connection { try? connection.close().wait() }
        connection = nil
    }

    static func configuration(_ target: PostgresTarget) -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        if let socket = target.socketPath {
            configuration = .init(unixSocketPath: socket, username: target.user, password: target.password, database: target.database)
        } else {
            configuration = .init(
                host: target.host ?? "", port: target.port, username: target.user, password: target.password,
                database: target.database, tls: .disable)
        }
        configuration.options.connectTimeout = .seconds(5)
        // Server-side bounds: no statement, lock wait or idle transaction (a client that
        // vanished mid-transaction, holding the writer lock) lasts past them.
        configuration.options.additionalStartupParameters = [
            ("options", "-c statement_timeout=10000 -c lock_timeout=10000 -c idle_in_transaction_session_timeout=15000")
        ]
        return configuration
    }

    /// The live connection, connecting (again) when there is none.
    public func connected() throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        connection = nil
        if inTransaction {
            throw PostgresStoreError(message: "the connection to \(target) was lost inside a transaction, which is void", sqlState: nil)
        }
        connectionCount += 1
        do {
            let made = try PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.next(), configuration: Self.configuration(target), id: connectionCount,
                logger: logger
            ).wait()
            connection = made
            return made
        } catch {
            throw Self.failure(error, doing: "cannot connect to \(target)")
        }
    }

    /// Runs one statement (`$1`, `$2`, … parameters) and collects its rows.
    @discardableResult
    public func run(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) throws -> PostgresQueryResult {
        let connection = try connected()
        let deadline = connection.eventLoop.scheduleTask(in: .seconds(Self.statementDeadlineSeconds)) {
            _ = connection.close() as EventLoopFuture<Void>
        }
        defer { deadline.cancel() }
        do {
            return try connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).wait()
        } catch {
            if connection.isClosed { self.connection = nil }
            throw Self.failure(error, doing: "the database \(target)")
        }
    }

    /// Runs `body` in one transaction (BEGIN … COMMIT; ROLLBACK if it throws) on this
    /// one connection: a connection lost meanwhile fails the transaction, whole.
    public func transaction<R>(_ body: () throws -> R) throws -> R {
        precondition(!inTransaction, "transactions do not nest")
        try run("BEGIN")
        inTransaction = true
        defer { inTransaction = false }
        do {
            let r = try body()
            try run("COMMIT")
            return r
        } catch {
            if isOpen { _ = try? run("ROLLBACK") }
            throw error
        }
    }

    /// The server's message (and SQLSTATE) for a postgres-nio error.
    public static func failure(_ error: any Error, doing what: String) -> PostgresStoreError {
        if let e = error as? PostgresStoreError { return e }
        if let e = error as? PSQLError {
            if let info = e.serverInfo {
                return PostgresStoreError(
                    message: "\(what): \(info[.message] ?? "error")\(info[.detail].map { ": \($0)" } ?? "")", sqlState: info[.sqlState])
            }
            return PostgresStoreError(message: "\(what): \(e.code.description)\(e.underlying.map { ": \($0)" } ?? "")", sqlState: nil)
        }
        return PostgresStoreError(message: "\(what): \(error)", sqlState: nil)
    }
}
