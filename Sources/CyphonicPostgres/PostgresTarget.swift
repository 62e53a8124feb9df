import Foundation

/// Where a PostgreSQL AS database is, from a URL in libpq's form:
/// `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` over TCP, or
/// `postgresql://USER@/DATABASE?host=/run/postgresql` over the Unix socket in that
/// directory (libpq's `host=` parameter; the port, also as `port=`, names the socket
/// file). Parsing names
/// what is wrong (as `--database: …`); ``description`` never shows the password. A URL
/// without a password takes `PGPASSWORD` from the environment, as libpq does.
public struct PostgresTarget: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    public var password: String?
    /// A TCP host (name or address); nil with ``socketDirectory``.
    public var host: String?
    public var port: Int
    /// The directory of the server's Unix socket (`.s.PGSQL.PORT` in it).
    public var socketDirectory: String?
    public var database: String

    public init(url: String) throws {
        let what = "--database"
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased() else {
            throw PostgresTargetError(what, "not a URL; give postgresql://USER@HOST[:PORT]/DATABASE")
        }
        guard scheme == "postgresql" || scheme == "postgres" else {
            throw PostgresTargetError(what, "scheme \(scheme): only postgresql:// is supported")
        }
        guard let user = c.user, !user.isEmpty else { throw PostgresTargetError(what, "no user (postgresql://USER@…)") }
        let database = String(c.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else {
            throw PostgresTargetError(what, "no database name (postgresql://USER@HOST/DATABASE)")
        }
        var socketDirectory: String?
        var queryPort: Int?
        for item in c.queryItems ?? [] {
            switch item.name {
            case "host":
                guard let dir = item.value, dir.hasPrefix("/") else {
                    throw PostgresTargetError(what, "host= must be the absolute directory of the server's Unix socket")
                }
                socketDirectory = dir
            case "port":
                guard let p = item.value.flatMap({ Int($0) }) else { throw PostgresTargetError(what, "port= must be a number") }
                queryPort = p
            default:
                throw PostgresTargetError(what, "unknown parameter \(item.name) (only host= and port= are understood)")
            }
        }
        let host = c.host.flatMap { $0.isEmpty ? nil : $0 }
        guard (host == nil) != (socketDirectory == nil) else {
            throw PostgresTargetError(what, "give either a host (postgresql://USER@HOST/DB) or host=/socket/dir, not both or neither")
        }
        let port = queryPort ?? c.port ?? 5432
        guard (1...65535).contains(port) else { throw PostgresTargetError(what, "port \(port) out of range") }
        self.user = user
        // Not in the URL (which may sit in a config or on a command line): libpq's variable.
        self.password = c.password ?? ProcessInfo.processInfo.environment["PGPASSWORD"]
        self.host = host
        self.port = port
        self.socketDirectory = socketDirectory
        self.database = database
    }

    /// The Unix socket's path, when connecting through one.
    public var socketPath: String? { socketDirectory.map { "\($0)/.s.PGSQL.\(port)" } }

    public var description: String {
        if let socketDirectory { return "postgresql://\(user)@/\(database)?host=\(socketDirectory) (port \(port))" }
        return "postgresql://\(user)@\(host ?? ""):\(port)/\(database)"
    }
}

/// A database URL that cannot be used: the flag and why (`--database: no user …`).
public struct PostgresTargetError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    init(_ flag: String, _ why: String) { description = "\(flag): \(why)" }
}
