import ArgumentParser
import CyphonicAS
import CyphonicCore
import CyphonicPosix
import CyphonicService
import Foundation

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
    @Option(
        help: ArgumentHelp(
            "Keep the database in PostgreSQL instead of the directory's as.db (several AS replicas share it).",
            discussion: """
                postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE, or postgresql://USER@/DATABASE?host=/run/postgresql \
                for the Unix socket. The database must exist and hold no AS yet; the URL is kept in DATA-DIR/database \
                (0600). A further replica is a copy of DATA-DIR on another host.
                """))
    var database: String?

    func run() throws {
        guard !dataDir.path.isEmpty else { throw ValidationError("--data-dir: give a directory (it is created, mode 0700)") }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: dataDir.path, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw ValidationError("--data-dir: \(dataDir.path) is a file, not a directory")
        }
        let settings = try parseSettings()
        let dir = try ASDirectory.initialise(
            at: dataDir.path, settings: settings,
            serviceName: try serviceName.map { name in
                do { return try FQDN(name) } catch { throw ValidationError("--service-name: \(error)") }
            }, database: database)
        // The directory holds the CA key and token hashes: only its owner may enter it.
        try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: dataDir.path)
        print("initialised \(dataDir.path)")
        print("  database    \(dir.store.location)")
        print("  domain      \(settings.domain)")
        print("  pools       \(settings.pool) (\(settings.pool.capacity) nodes)")
        print("  CA          \(dir.ca.certificate.commonName ?? "?"), SHA-256 \(Hex.encode(dir.ca.certificate.sha256Fingerprint))")
        print("  CA file     \(ASDirectory.file(dataDir.path, "ca.pem")) (give it to every node)")
        print("  AS name     \(dir.serviceCertificate.commonName ?? "?")")
    }

    func parseSettings() throws -> ASSettings {
        let domain: FQDN
        do { domain = try FQDN(self.domain) } catch { throw ValidationError("--domain: \(error)") }
        guard let v4 = IPPrefix(vip4), v4.address.isIPv4 else { throw ValidationError("--vip4: \(vip4) is not an IPv4 prefix like 198.18.0.0/16") }
        guard let v6 = IPPrefix(vip6), !v6.address.isIPv4 else {
            throw ValidationError("--vip6: \(vip6) is not an IPv6 prefix like 2001:db8:c0ff:ee::/64")
        }
        // A pool a real network can route: not everything, not multicast.
        guard (8...30).contains(v4.length), !(224...255).contains(v4.address.bytes[0]), v4.address.bytes[0] != 0 else {
            throw ValidationError("--vip4: \(vip4) must be a unicast prefix of length 8...30 (e.g. 198.18.0.0/16)")
        }
        guard (48...120).contains(v6.length), v6.address.bytes[0] != 0xff, !v6.address.bytes.allSatisfy({ $0 == 0 }) else {
            throw ValidationError("--vip6: \(vip6) must be a unicast prefix of length 48...120 (e.g. 2001:db8:c0ff:ee::/64)")
        }
        do {
            return try ASSettings(
                domain: domain, pool: try AddressPool(ipv4: v4, ipv6: v6), certificateDays: certDays,
                renewBeforeDays: renewBeforeDays, nmsEndpoints: try ServiceEndpoints.resolve(nms, "nms"),
                trsEndpoints: try ServiceEndpoints.resolve(trs, "trs"))
        } catch let e as ConfigError {
            throw ValidationError(e.description)
        }
    }
}
