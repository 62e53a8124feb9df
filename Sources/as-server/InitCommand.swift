import ArgumentParser
import CyphonicAS
import CyphonicCore

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the database, the root CA (Ed25519) and the AS service certificate. Refuses an initialised directory.")

    @OptionGroup var dataDir: DataDirOption
    @Option(help: "Overlay domain: node names become NAME.DOMAIN.") var domain = "cyphonic.internal"
    @Option(help: "Virtual IPv4 pool (prefix).") var vip4 = "198.18.0.0/16"
    @Option(help: "Virtual IPv6 pool (prefix).") var vip6 = "2001:db8:c0ff:ee::/64"
    @Option(help: "NMS endpoint handed to nodes at login (repeatable), e.g. 198.19.0.2:4502.") var nms: [String] = []
    @Option(help: "TRS endpoint handed to nodes at login (repeatable), e.g. 198.19.0.3:4503.") var trs: [String] = []
    @Option(name: .customLong("cert-days"), help: "Lifetime of node certificates in days.") var certDays = 30
    @Option(name: .customLong("renew-before-days"), help: "Renew a node certificate at login when it expires within this many days.")
    var renewBeforeDays = 10
    @Option(name: .customLong("service-name"), help: "Name in the AS's own certificate (default as.DOMAIN).")
    var serviceName: String?

    func run() throws {
        let settings = try parseSettings()
        let dir = try ASDirectory.initialise(
            at: dataDir.path, settings: settings,
            serviceName: try serviceName.map { try FQDN($0) })
        print("initialised \(dataDir.path)")
        print("  domain      \(settings.domain)")
        print("  pools       \(settings.pool) (\(settings.pool.capacity) nodes)")
        print("  CA          \(dir.ca.certificate.commonName ?? "?"), SHA-256 \(Hex.encode(dir.ca.certificate.sha256Fingerprint))")
        print("  CA file     \(ASDirectory.file(dataDir.path, "ca.pem")) (give it to every node)")
        print("  AS name     \(dir.serviceCertificate.commonName ?? "?")")
    }

    func parseSettings() throws -> ASSettings {
        let domain: FQDN
        do { domain = try FQDN(self.domain) } catch { throw ValidationError("--domain: \(error)") }
        guard let v4 = IPPrefix(vip4) else { throw ValidationError("--vip4: \(vip4) is not a prefix like 198.18.0.0/16") }
        guard let v6 = IPPrefix(vip6) else { throw ValidationError("--vip6: \(vip6) is not a prefix like 2001:db8:c0ff:ee::/64") }
        func endpoints(_ list: [String], _ flag: String) throws -> [Endpoint] {
            try list.map {
                guard let e = Endpoint($0) else { throw ValidationError("--\(flag): \($0) is not HOST:PORT or [V6]:PORT") }
                return e
            }
        }
        do {
            return try ASSettings(
                domain: domain, pool: try AddressPool(ipv4: v4, ipv6: v6), certificateDays: certDays,
                renewBeforeDays: renewBeforeDays, nmsEndpoints: try endpoints(nms, "nms"),
                trsEndpoints: try endpoints(trs, "trs"))
        } catch let e as ConfigError {
            throw ValidationError(e.description)
        }
    }
}
