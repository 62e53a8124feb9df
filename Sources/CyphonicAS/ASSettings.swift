import CyphonicCore
import CyphonicPKI

/// The AS configuration fixed at `init` (the NMS/TRS endpoints changeable with `endpoints`) and stored in the database (`settings` table):
/// overlay domain, address pools, certificate lifetimes, and the NMS/TRS endpoints
/// handed to nodes at login.
public struct ASSettings: Sendable, Equatable {
    public var domain: FQDN
    public var pool: AddressPool
    /// Lifetime of node certificates, days.
    public var certificateDays: Int
    /// A login with a certificate that expires within this many days gets a new one.
    public var renewBeforeDays: Int
    public var nmsEndpoints: [Endpoint]
    public var trsEndpoints: [Endpoint]

    public init(
        domain: FQDN, pool: AddressPool, certificateDays: Int = 30, renewBeforeDays: Int = 10,
        nmsEndpoints: [Endpoint] = [], trsEndpoints: [Endpoint] = []
    ) throws(ConfigError) {
        guard certificateDays >= 1 else { throw .invalid("cert-days", "must be at least 1") }
        guard renewBeforeDays >= 0, renewBeforeDays < certificateDays else {
            throw .invalid("renew-before-days", "must be between 0 and cert-days - 1")
        }
        guard nmsEndpoints.count <= WireLimitsBridge.maxEndpoints, trsEndpoints.count <= WireLimitsBridge.maxEndpoints else {
            throw .invalid("nms", "at most \(WireLimitsBridge.maxEndpoints) endpoints")
        }
        self.domain = domain
        self.pool = pool
        self.certificateDays = certificateDays
        self.renewBeforeDays = renewBeforeDays
        self.nmsEndpoints = nmsEndpoints
        self.trsEndpoints = trsEndpoints
    }

    var keyValues: [String: String] {
        [
            "domain": domain.value, "vip4": pool.ipv4.description, "vip6": pool.ipv6.description,
            "cert_days": String(certificateDays), "renew_before_days": String(renewBeforeDays),
            "nms": nmsEndpoints.map(\.description).joined(separator: ","),
            "trs": trsEndpoints.map(\.description).joined(separator: ","),
        ]
    }

    func save(to store: ASStore) throws { try store.setSettings(keyValues) }

    static func load(from store: ASStore) throws -> ASSettings {
        func get(_ k: String) throws -> String {
            guard let v = try store.setting(k) else { throw ConfigError.missing(k) }
            return v
        }
        func endpoints(_ k: String) throws -> [Endpoint] {
            try get(k).split(separator: ",").map {
                guard let e = Endpoint(String($0)) else { throw ConfigError.invalid(k, "bad endpoint \($0)") }
                return e
            }
        }
        guard let v4 = IPPrefix(try get("vip4")) else { throw ConfigError.invalid("vip4", "unreadable") }
        guard let v6 = IPPrefix(try get("vip6")) else { throw ConfigError.invalid("vip6", "unreadable") }
        return try ASSettings(
            domain: try FQDN(try get("domain")), pool: try AddressPool(ipv4: v4, ipv6: v6),
            certificateDays: Int(try get("cert_days")) ?? 30,
            renewBeforeDays: Int(try get("renew_before_days")) ?? 10,
            nmsEndpoints: try endpoints("nms"), trsEndpoints: try endpoints("trs"))
    }
}

extension ASDirectory {
    /// Replaces the NMS and/or TRS endpoints handed to nodes at login (nil keeps a list),
    /// saved and audited at once; a running `serve` hands them out after its restart.
    /// Returns the settings now stored.
    public func updateServiceEndpoints(nms: [Endpoint]?, trs: [Endpoint]?, now: Int64 = unixNow()) throws -> ASSettings {
        let current = try ASSettings.load(from: store)
        let updated = try ASSettings(
            domain: current.domain, pool: current.pool, certificateDays: current.certificateDays, renewBeforeDays: current.renewBeforeDays,
            nmsEndpoints: nms ?? current.nmsEndpoints, trsEndpoints: trs ?? current.trsEndpoints)
        try updated.save(to: store)
        try store.audit(
            "as.endpoints", current.domain.value,
            "nms=\(updated.nmsEndpoints.map(\.description).joined(separator: ",")) trs=\(updated.trsEndpoints.map(\.description).joined(separator: ","))",
            now: now)
        return updated
    }
}

/// The wire limit on endpoint lists, restated here so configuration fails early.
enum WireLimitsBridge { static let maxEndpoints = 16 }
