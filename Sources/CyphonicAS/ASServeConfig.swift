import CyphonicCore
import CyphonicPKI
import CyphonicPosix
import CyphonicService
import CyphonicSignaling
import Foundation
import Logging

/// `as-server serve`'s configuration: the config file (JSON, examples/as-server.json) and
/// the flags, one key per flag named as the flag in camelCase (`--max-failures` is
/// `maxFailures`), every key optional (unset: the defaults `serve --help` gives). Flags
/// override the file; ``launch()`` checks every value, naming the key. What `init` fixed
/// (domain, pools, NMS and TRS endpoints) lives in the database, not here.
public struct ASServeConfig: ServiceConfig, HandshakeGuardKeys {
    public var dataDir: String?
    public var listen: [String]?
    public var metrics: String?
    public var logLevel: String?
    public var maxFailures: Int?
    public var failureWindow: Int?
    public var maxSessions: Int?
    public var maxPasswordChecks: Int?
    public var handshakeLoadThreshold: Int?
    public var handshakesPerSource: Double?
    public var handshakesPerSecond: Double?

    public init() {}

    public static let defaultDataDir = "/var/lib/cyphonic-as"
    public static let defaultListen = ["0.0.0.0:4501", "[::]:4501"]
    public static let defaultMetrics = "127.0.0.1:9451"

    /// Paths in a file are relative to the file's folder.
    public mutating func resolvePaths(in file: String) { dataDir = ConfigFile.path(dataDir, in: file) }

    /// Every value checked, and the data directory found initialised (its keys and
    /// certificates read, the database present): what `serve` runs with, and all that
    /// `--check-config` checks.
    public func launch() throws -> ASLaunch {
        let dir = dataDir ?? Self.defaultDataDir
        do { try ASDirectory.check(at: dir) } catch { throw ConfigFileError.invalid("dataDir", "\(error)") }
        var limits = ASServerLimits()
        let sessions = try ConfigCheck.range(maxSessions, "maxSessions", 1...10_000_000, default: limits.maxSessions)
        limits.maxSessions = sessions
        limits.maxPendingHandshakes = sessions
        limits.handshakeGuard = try .configured(loadThreshold: handshakeLoadThreshold, perSource: handshakesPerSource, perSecond: handshakesPerSecond)
        return ASLaunch(
            dataDir: dir,
            listen: try ConfigCheck.bind(listen, "listen", default: Self.defaultListen.compactMap(Endpoint.init)),
            metrics: try ConfigCheck.metrics(metrics, default: Self.defaultMetrics),
            logLevel: try ConfigCheck.logLevel(logLevel),
            maxFailures: try ConfigCheck.range(maxFailures, "maxFailures", 1...1_000_000, default: 5),
            failureWindowSeconds: try ConfigCheck.range(failureWindow, "failureWindow", 1...86_400 * 7, default: 60),
            maxPasswordChecksPerSecond: try ConfigCheck.range(maxPasswordChecks, "maxPasswordChecks", 1...100_000, default: 20),
            limits: limits)
    }
}

/// An AS's serve configuration with every value checked.
public struct ASLaunch: Sendable {
    public let dataDir: String
    public let listen: [Endpoint]
    public let metrics: Endpoint?
    public let logLevel: Logger.Level
    public let maxFailures: Int
    public let failureWindowSeconds: Int
    public let maxPasswordChecksPerSecond: Int
    public let limits: ASServerLimits
}

extension ASDirectory {
    /// Checks, without writing anything, that `path` holds an initialised AS: the CA and
    /// AS keys and certificates read and match, and the database is an SQLite file (or
    /// the `database` file names a PostgreSQL URL that parses; it is not connected to).
    public static func check(at path: String) throws {
        let caKey = try KeyFiles.ed25519(pem: try readTextFile(file(path, "ca.key"), what: "the CA key"))
        let caCert = try Certificate(pem: try readTextFile(file(path, "ca.pem"), what: "the CA certificate"))
        _ = try CertificateAuthority(certificate: caCert, key: caKey)
        let asKey = try KeyFiles.x25519(pem: try readTextFile(file(path, "as.key"), what: "the AS key"))
        let asCert = try Certificate(pem: try readTextFile(file(path, "as.pem"), what: "the AS certificate"))
        guard asCert.x25519PublicKey == asKey.publicKey else { throw InitError.mismatch("as.pem does not carry the key in as.key") }
        if try postgresTarget(at: path) != nil { return }
        let db = file(path, "as.db")
        guard let handle = FileHandle(forReadingAtPath: db) else { throw InitError.mismatch("cannot read \(db) (missing, or permission denied)") }
        defer { try? handle.close() }
        guard (try? handle.read(upToCount: 16)).map(Array.init) == Array("SQLite format 3\0".utf8) else {
            throw InitError.mismatch("\(db) is not an SQLite database")
        }
    }
}
