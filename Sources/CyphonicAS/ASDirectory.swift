import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicPostgres
import Foundation

/// The AS data directory: `as.db` (SQLite) — or `database` (0600), one PostgreSQL URL
/// shared by every AS replica —, `ca.key` (the root CA's Ed25519 key, mode 0600),
/// `ca.pem`, `as.key` (the AS's X25519 service key, 0600) and `as.pem`.
/// ``initialise(at:settings:serviceName:database:now:)`` creates all of it and refuses an
/// existing directory (or a PostgreSQL database that already holds an AS); ``open(at:)``
/// loads it. A further replica is a copy of the directory on another host.
public final class ASDirectory: Sendable {
    public let path: String
    public let store: ASStore
    public let ca: CertificateAuthority
    public let serviceKey: X25519PrivateKey
    public let serviceCertificate: Certificate
    public let settings: ASSettings

    public static func file(_ dir: String, _ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    private init(
        path: String, store: ASStore, ca: CertificateAuthority, serviceKey: X25519PrivateKey,
        serviceCertificate: Certificate, settings: ASSettings
    ) {
        self.path = path
        self.store = store
        self.ca = ca
        self.serviceKey = serviceKey
        self.serviceCertificate = serviceCertificate
        self.settings = settings
    }

    /// Creates a new AS: database with schema, root CA, the AS service certificate
    /// (named `serviceName`, default `as.<domain>`), and an empty CRL.
    public static func initialise(
        at path: String, settings: ASSettings, serviceName: FQDN? = nil, database: String? = nil,
        now: Int64 = unixNow()
    ) throws -> ASDirectory {
        let fm = FileManager.default
        for name in ["as.db", databaseFile, "ca.key", "ca.pem", "as.key", "as.pem"] where fm.fileExists(atPath: file(path, name)) {
            throw InitError.alreadyInitialised(file(path, name))
        }
        let target = try database.map { try PostgresTarget(url: $0) }
        // Connect (and refuse a database that holds an AS) before any key is made.
        let postgres = try target.map { try ASStore(postgres: $0, create: true) }
        try fm.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let caKey = try Ed25519PrivateKey()
        let ca = try CertificateAuthority.create(
            name: "CYPHONIC Root CA \(settings.domain)", key: caKey,
            serial: try CertificateAuthority.randomSerial(), validFrom: now - 300,
            days: 3650)
        let asKey = try X25519PrivateKey()
        let name = try serviceName ?? FQDN("as." + settings.domain.value)
        let asCert = try ca.issue(
            .service(
                .as, name: name, serial: try CertificateAuthority.randomSerial(),
                validFrom: now - 300, days: 3650), publicKey: asKey.publicKey)
        try writeSecret(file(path, "ca.key"), try KeyFiles.pem(caKey))
        try writePublic(file(path, "ca.pem"), ca.certificate.pemString)
        try writeSecret(file(path, "as.key"), try KeyFiles.pem(asKey))
        try writePublic(file(path, "as.pem"), asCert.pemString)
        if let database { try writeSecret(file(path, databaseFile), database + "\n") }
        let store = try postgres ?? ASStore(path: file(path, "as.db"), create: true)
        try settings.save(to: store)
        try store.addService(
            name: name.value, role: CertificateRole.as.rawValue,
            certificate: IssuedCertificate(
                serial: asCert.serial ?? 0, subject: name.value, role: "as",
                notBefore: asCert.notBefore ?? now, notAfter: asCert.notAfter ?? now,
                der: asCert.derBytes), now: now)
        try store.refreshCRL(now: now) { serials, number in
            try RevocationList.sign(
                by: ca, serials: serials, number: number, thisUpdate: now,
                nextUpdate: now + 7 * 86_400
            ).derBytes
        }
        try store.audit("as.init", settings.domain.value, "pool=\(settings.pool)", now: now)
        return ASDirectory(path: path, store: store, ca: ca, serviceKey: asKey, serviceCertificate: asCert, settings: settings)
    }

    /// Opens an initialised directory.
    public static func open(at path: String) throws -> ASDirectory {
        let store = try openStore(at: path)
        let caKey = try KeyFiles.ed25519(pem: try readTextFile(file(path, "ca.key"), what: "the CA key"))
        let caCert = try Certificate(pem: try readTextFile(file(path, "ca.pem"), what: "the CA certificate"))
        let ca = try CertificateAuthority(certificate: caCert, key: caKey)
        let asKey = try KeyFiles.x25519(pem: try readTextFile(file(path, "as.key"), what: "the AS key"))
        let asCert = try Certificate(pem: try readTextFile(file(path, "as.pem"), what: "the AS certificate"))
        guard asCert.x25519PublicKey == asKey.publicKey else {
            throw InitError.mismatch("as.pem does not carry the key in as.key")
        }
        return ASDirectory(
            path: path, store: store, ca: ca, serviceKey: asKey, serviceCertificate: asCert,
            settings: try ASSettings.load(from: store))
    }

    /// The file that names a PostgreSQL database; without it the AS keeps `as.db`.
    public static let databaseFile = "database"

    /// The PostgreSQL database named in the directory's `database` file, if there is one.
    public static func postgresTarget(at path: String) throws -> PostgresTarget? {
        let name = file(path, databaseFile)
        guard access(name, F_OK) == 0 else { return nil }
        let url = try readTextFile(name, what: "the database URL").trimmingCharacters(in: .whitespacesAndNewlines)
        do { return try PostgresTarget(url: url) } catch { throw InitError.mismatch("\(name): \(error)") }
    }

    /// The store of the AS in `path`: its PostgreSQL database, or else its `as.db`.
    public static func openStore(at path: String) throws -> ASStore {
        if let target = try postgresTarget(at: path) { return try ASStore(postgres: target) }
        return try ASStore(path: file(path, "as.db"))
    }

    /// Signs a CRL over `serials` valid for a week (the store calls this inside its transaction).
    public func signCRL(now: Int64) -> ([UInt64], UInt64) throws -> [UInt8] {
        { [ca] serials, number in
            try RevocationList.sign(by: ca, serials: serials, number: number, thisUpdate: now, nextUpdate: now + 7 * 86_400).derBytes
        }
    }

    /// A private key: created 0600 from the first byte; never over or through an existing file.
    static func writeSecret(_ path: String, _ text: String) throws { try writeNewFile(path, text, mode: 0o600) }

    /// A certificate: 0644.
    static func writePublic(_ path: String, _ text: String) throws { try writeNewFile(path, text, mode: 0o644) }
}

public enum InitError: Error, CustomStringConvertible, Equatable {
    case alreadyInitialised(String)
    case cannotWrite(String)
    case mismatch(String)

    public var description: String {
        switch self {
        case .alreadyInitialised(let p): return "\(p) exists: this directory is already initialised; refusing to overwrite it"
        case .cannotWrite(let p): return "cannot write \(p)"
        case .mismatch(let s): return s
        }
    }
}
