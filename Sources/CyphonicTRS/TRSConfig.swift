import CyphonicCore
import CyphonicPKI
import CyphonicService
import CyphonicSignaling
import Logging

/// `trs-relay serve`'s configuration: the config file (JSON, examples/trs-relay.json) and
/// the flags, one key per flag named as the flag in camelCase (`--max-sessions` is
/// `maxSessions`), every key optional (unset: the default ``TRSSettings`` and `serve
/// --help` give). Flags override the file; ``launch()`` checks every value, naming the key.
public struct TRSConfig: ServiceConfig, HandshakeGuardKeys, RevocationKeys {
    public var bundle: String?
    public var name: String?
    public var listen: [String]?
    public var metrics: String?
    public var control: String?
    public var logLevel: String?
    public var `as`: String?
    public var crl: String?
    public var crlRefresh: Double?
    public var refresh: Int?
    public var sessionIdle: Int?
    public var nodeIdle: Int?
    public var maxSessions: Int?
    public var maxSessionsPerNode: Int?
    public var maxNodes: Int?
    public var maxPendingHandshakes: Int?
    public var packetsPerSecond: Int?
    public var handshakeLoadThreshold: Int?
    public var handshakesPerSource: Double?
    public var handshakesPerSecond: Double?
    public var socketBuffer: Int?
    public var noOffloads: Bool?

    public init() {}

    public static let defaultMetrics = "127.0.0.1:9454"
    public static let defaultControl = "/run/trs-relay.sock"

    /// Paths in a file are relative to the file's folder.
    public mutating func resolvePaths(in file: String) {
        bundle = ConfigFile.path(bundle, in: file)
        crl = ConfigFile.path(crl, in: file)
        control = ConfigFile.path(control, in: file)
    }

    /// Every value checked and every file read (the bundle, the revocation list): what
    /// `serve` runs with, and all that `--check-config` checks.
    public func launch() throws -> TRSLaunch {
        var s = TRSSettings()
        let d = s
        s.listen = try ConfigCheck.bind(listen, "listen", default: d.listen)
        s.refreshSeconds = try ConfigCheck.range(refresh, "refresh", 1...3600, default: d.refreshSeconds)
        s.sessionIdleSeconds = try ConfigCheck.range(sessionIdle, "sessionIdle", 5...86_400, default: d.sessionIdleSeconds)
        s.nodeIdleSeconds = try ConfigCheck.range(
            nodeIdle, "nodeIdle", (2 * s.refreshSeconds)...86_400, default: max(d.nodeIdleSeconds, 2 * s.refreshSeconds))
        s.maxSessions = try ConfigCheck.range(maxSessions, "maxSessions", 1...10_000_000, default: d.maxSessions)
        s.maxSessionsPerNode = try ConfigCheck.range(maxSessionsPerNode, "maxSessionsPerNode", 1...1_000_000, default: d.maxSessionsPerNode)
        s.maxNodes = try ConfigCheck.range(maxNodes, "maxNodes", 1...10_000_000, default: d.maxNodes)
        s.maxPendingHandshakes = try ConfigCheck.range(maxPendingHandshakes, "maxPendingHandshakes", 1...1_000_000, default: d.maxPendingHandshakes)
        s.packetsPerSecondPerEnd = try ConfigCheck.range(packetsPerSecond, "packetsPerSecond", 100...100_000_000, default: d.packetsPerSecondPerEnd)
        s.handshakeGuard = try .configured(loadThreshold: handshakeLoadThreshold, perSource: handshakesPerSource, perSecond: handshakesPerSecond)
        s.socketBufferBytes = try ConfigCheck.range(socketBuffer, "socketBuffer", 0...(256 << 20), default: d.socketBufferBytes)
        s.offloads = !(noOffloads ?? false)
        return try .check(
            settings: s, role: "trs", bundle: bundle, load: { try TRSIdentity.load(bundle: $0, name: name) }, logLevel: logLevel, metrics: metrics,
            defaultMetrics: Self.defaultMetrics, control: control, defaultControl: Self.defaultControl, crl: crl, crlRefresh: crlRefresh,
            as: `as`)
    }
}

/// A relay's configuration with every value checked and its files read.
public typealias TRSLaunch = ServiceLaunch<TRSSettings, TRSIdentity>
