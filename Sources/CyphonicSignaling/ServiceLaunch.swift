import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicService
import Logging

/// The identity a service bundle holds (`as-server service add nms|trs NAME`): its name,
/// its X25519 key and the CA it trusts.
public protocol BundledIdentity: Sendable {
    var name: String { get }
    var key: X25519PrivateKey { get }
    var ca: Certificate { get }
}

/// What a bundled service (the NMS, the relay) runs with: its own checked `settings`, its
/// bundle's identity, and what both share — the revocation list to start with (checked
/// against the bundle's CA), the AS to fetch newer ones from, the metrics endpoint, the
/// control socket and the log level. ``check(settings:...)`` makes one from config values,
/// every error naming its key.
public struct ServiceLaunch<Settings: Sendable, Identity: BundledIdentity>: Sendable {
    public let settings: Settings
    public let identity: Identity
    /// The revocation list to start with (`crl`), checked against the bundle's CA.
    public let revocations: RevocationList?
    /// The AS to fetch revocation lists from, resolved.
    public let asEndpoint: Endpoint?
    public let crlRefreshSeconds: Double
    public let metrics: Endpoint?
    public let control: String
    public let logLevel: Logger.Level

    /// The shared keys checked and the bundle read with `load`; `role` names the service
    /// in the `bundle` key's message.
    public static func check(
        settings: Settings, role: String, bundle: String?, load: (String) throws -> Identity, logLevel: String?, metrics: String?,
        defaultMetrics: String, control: String?, defaultControl: String, crl: String?, crlRefresh: Double?, as asEndpoint: String?
    ) throws -> Self {
        let level = try ConfigCheck.logLevel(logLevel)
        let metricsEndpoint = try ConfigCheck.metrics(metrics, default: defaultMetrics)
        let refreshEvery = try ConfigCheck.range(crlRefresh, "crlRefresh", 1...86_400, default: 60)
        let bundlePath = try ConfigCheck.required(bundle, "bundle", "the directory `as-server service add \(role) NAME --out DIR` wrote")
        let identity: Identity
        do { identity = try load(bundlePath) } catch { throw ConfigFileError.invalid("bundle", "\(error)") }
        var revocations: RevocationList?
        if let crl {
            do { revocations = try loadRevocationList(crl, issuedBy: identity.ca) } catch { throw ConfigFileError.invalid("crl", "\(error)") }
        }
        return ServiceLaunch(
            settings: settings, identity: identity, revocations: revocations,
            asEndpoint: try asEndpoint.map { try ConfigCheck.resolve([$0], "as")[0] }, crlRefreshSeconds: refreshEvery,
            metrics: metricsEndpoint, control: control ?? defaultControl, logLevel: level)
    }

    /// Fetches the CA's revocation list from the AS every `crlRefreshSeconds` and hands
    /// each to `apply`; nil without an AS.
    public func revocationRefresher(
        logger: Logger, apply: @escaping @Sendable (RevocationList) throws -> Void
    ) -> PeriodicRefresher<
        RevocationList
    >? {
        asEndpoint.map {
            ASClient(server: $0, caCertificate: identity.ca).revocationRefresher(key: identity.key, every: crlRefreshSeconds, logger: logger) {
                list in
                do { try apply(list) } catch { logger.error("\(logger.label): revocation list not applied: \(error)") }
            }
        }
    }
}
