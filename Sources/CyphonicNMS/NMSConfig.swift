import CyphonicCore
import CyphonicPKI
import CyphonicPosix
import CyphonicPostgres
import CyphonicService
import CyphonicSignaling
import Glibc
import Logging

/// `nms-server serve`'s configuration: the config file (JSON, examples/nms-server.json)
/// and the flags, one key per flag named as the flag in camelCase (`--max-nodes` is
/// `maxNodes`; the repeatable `--relay` and `--allow` are lists), every key optional
/// (unset: the default ``NMSSettings`` and `serve --help` give). Flags override the file;
/// ``launch()`` checks every value, naming the key.
public struct NMSConfig: ServiceConfig, HandshakeGuardKeys, RevocationKeys {
    public var bundle: String?
    public var name: String?
    public var listen: [String]?
    public var probeListen: [String]?
    public var metrics: String?
    public var control: String?
    public var logLevel: String?
    public var `as`: String?
    public var crl: String?
    public var crlRefresh: Double?
    public var keepalive: Int?
    public var expireAfter: Int?
    public var directionTimeout: Int?
    public var authorizationLifetime: Int?
    public var allow: [String]?
    public var policy: String?
    public var relay: [String]?
    public var relayAuthorizationLifetime: Int?
    public var maxNodes: Int?
    public var maxPendingHandshakes: Int?
    public var maxPendingDirections: Int?
    public var maxPendingDirectionsPerNode: Int?
    public var handshakeLoadThreshold: Int?
    public var handshakesPerSource: Double?
    public var handshakesPerSecond: Double?
    public var workers: Int?
    public var receiveThreads: Int?
    public var udpReceiveBuffer: Int?
    public var database: String?
    public var replica: String?

    public init() {}

    public static let defaultMetrics = "127.0.0.1:9453"
    public static let defaultControl = "/run/nms-server.sock"

    /// Paths in a file are relative to the file's folder.
    public mutating func resolvePaths(in file: String) {
        bundle = ConfigFile.path(bundle, in: file)
        crl = ConfigFile.path(crl, in: file)
        policy = ConfigFile.path(policy, in: file)
        control = ConfigFile.path(control, in: file)
    }

    /// Every value checked and every file read (the bundle, the policy, the revocation
    /// list): what `serve` runs with, and all that `--check-config` checks.
    public func launch() throws -> NMSLaunch {
        var s = NMSSettings()
        let d = s
        s.listen = try ConfigCheck.bind(listen, "listen", default: d.listen)
        s.probeListen = try ConfigCheck.bind(probeListen, "probeListen", default: d.probeListen)
        do {
            s.relayHosts = try RelayHost.parse(relay ?? []) { try ConfigCheck.resolve([$0], "relay") }
        } catch let e as RelayConfigError {
            throw ConfigFileError.invalid("relay", e.description)
        }
        s.keepAliveSeconds = try ConfigCheck.range(keepalive, "keepalive", 1...3600, default: d.keepAliveSeconds)
        s.expireAfterIntervals = try ConfigCheck.range(expireAfter, "expireAfter", 2...100, default: d.expireAfterIntervals)
        s.directionTimeoutMilliseconds = try ConfigCheck.range(
            directionTimeout, "directionTimeout", 50...60_000, default: d.directionTimeoutMilliseconds)
        s.authorizationSeconds = try ConfigCheck.range(authorizationLifetime, "authorizationLifetime", 10...86_400, default: d.authorizationSeconds)
        s.relayAuthorizationSeconds = try ConfigCheck.range(
            relayAuthorizationLifetime, "relayAuthorizationLifetime", 60...(30 * 86_400), default: d.relayAuthorizationSeconds)
        s.maxNodes = try ConfigCheck.range(maxNodes, "maxNodes", 1...100_000_000, default: d.maxNodes)
        s.maxPendingHandshakes = try ConfigCheck.range(maxPendingHandshakes, "maxPendingHandshakes", 1...1_000_000, default: d.maxPendingHandshakes)
        s.maxPendingDirections = try ConfigCheck.range(maxPendingDirections, "maxPendingDirections", 1...10_000_000, default: d.maxPendingDirections)
        s.maxPendingDirectionsPerNode = try ConfigCheck.range(
            maxPendingDirectionsPerNode, "maxPendingDirectionsPerNode", 1...1_000_000, default: d.maxPendingDirectionsPerNode)
        s.handshakeGuard = try .configured(loadThreshold: handshakeLoadThreshold, perSource: handshakesPerSource, perSecond: handshakesPerSecond)
        s.workers = try ConfigCheck.range(workers, "workers", 0...256, default: d.workers)
        s.receiveThreads = try ConfigCheck.range(receiveThreads, "receiveThreads", 0...64, default: d.receiveThreads)
        s.receiveBufferBytes = try ConfigCheck.range(udpReceiveBuffer, "udpReceiveBuffer", 0...(256 << 20), default: d.receiveBufferBytes)
        var rules = try (allow ?? []).map {
            guard let r = AccessPolicy.Rule($0) else { throw ConfigFileError.invalid("allow", "\($0) is not GROUP_A:GROUP_B") }
            return r
        }
        if let policy {
            let text: String
            do { text = try readTextFile(policy, what: "the policy file") } catch { throw ConfigFileError.invalid("policy", "\(error)") }
            do { rules += try AccessPolicy.parse(file: text) } catch { throw ConfigFileError.invalid("policy", "\(policy): \(error)") }
        }
        s.policy = AccessPolicy(rules: rules)
        if let database {
            do { s.database = try PostgresTarget(url: database) } catch {
                throw ConfigFileError.invalid("database", "\(error)".replacingOccurrences(of: "--database: ", with: ""))
            }
            // Unique among the replicas: this host's name and where it listens.
            s.replica = replica ?? "\(Self.hostName())/\(s.listen.first?.description ?? "nms")"
            guard (1...200).contains(s.replica.utf8.count) else { throw ConfigFileError.invalid("replica", "give 1-200 bytes") }
        } else if replica != nil {
            throw ConfigFileError.invalid("replica", "names this NMS among replicas sharing a database: give database too")
        }
        return try .check(
            settings: s, role: "nms", bundle: bundle, load: { try NMSIdentity.load(bundle: $0, name: name) }, logLevel: logLevel, metrics: metrics,
            defaultMetrics: Self.defaultMetrics, control: control, defaultControl: Self.defaultControl, crl: crl, crlRefresh: crlRefresh,
            as: `as`)
    }
}

extension NMSConfig {
    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "nms" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An NMS's configuration with every value checked and its files read.
public typealias NMSLaunch = ServiceLaunch<NMSSettings, NMSIdentity>
