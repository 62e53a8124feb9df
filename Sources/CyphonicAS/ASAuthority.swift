import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire

/// Why a login was refused. Callers answer `unknownNode` and `badCredential` with the
/// same status (`unauthorized`) so a prober cannot tell names that exist.
public enum LoginFailure: Error, Equatable, Sendable {
    case unknownNode
    case badCredential(String)
    case tokenUsed
    case revoked
    case rateLimited
    case internalError(String)

    public var status: StatusCode {
        switch self {
        case .unknownNode, .badCredential, .tokenUsed: return .unauthorized
        case .revoked: return .revoked
        case .rateLimited: return .rateLimited
        case .internalError: return .internalError
        }
    }

    /// The label used in metrics and logs.
    public var reason: String {
        switch self {
        case .unknownNode: return "unknown_node"
        case .badCredential: return "bad_credential"
        case .tokenUsed: return "token_used"
        case .revoked: return "revoked"
        case .rateLimited: return "rate_limited"
        case .internalError: return "internal"
        }
    }
}

/// A successful login: what to provision, and whether a certificate was issued for it.
public struct LoginSuccess: Sendable {
    public let value: Provision
    public let issued: Bool
}

/// The result of an operator's `node add`: the record and its one-time token, which is
/// shown once and stored only as a salted PBKDF2 hash.
public struct EnrolmentTicket: Sendable {
    public let node: NodeRecord
    public let token: String
}

/// The AS's decisions: enrolment tickets, logins (first with a token, later with the
/// certificate), revocation. Pure of I/O apart from the store. `Sendable`.
public final class ASAuthority: Sendable {
    public let directory: ASDirectory
    public let limiter: RateLimiter
    /// Iterations for token hashes made from now on (tests may lower it).
    public let tokenIterations: Int
    private let dummySalt: [UInt8]
    private let dummyHash: [UInt8]

    public init(directory: ASDirectory, limiter: RateLimiter = RateLimiter(),
                tokenIterations: Int = PasswordHash.defaultIterations) throws {
        self.directory = directory
        self.limiter = limiter
        self.tokenIterations = tokenIterations
        dummySalt = try SecureRandom.bytes(16)
        dummyHash = try PasswordHash.derive(secret: Array("no such node".utf8), salt: dummySalt, iterations: tokenIterations)
    }

    var store: ASStore { directory.store }
    var settings: ASSettings { directory.settings }

    /// `node add`: a pending node with addresses and a one-time token `NAME.SECRET`.
    public func addNode(name: String, group: String?, now: Int64 = unixNow()) throws -> EnrolmentTicket {
        guard FQDN.isValidLabel(name) else { throw StoreError.invalidName(name) }
        if let group, !(1...64).contains(group.utf8.count) || !group.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) {
            throw ConfigError.invalid("group", "1-64 printable characters without spaces")
        }
        let fqdn = try FQDN(name.lowercased() + "." + settings.domain.value)
        let token = name.lowercased() + "." + Hex.encode(try SecureRandom.bytes(20))
        let salt = try SecureRandom.bytes(16)
        let hash = try PasswordHash.derive(secret: Array(token.utf8), salt: salt, iterations: tokenIterations)
        let node = try store.addNode(name: name.lowercased(), fqdn: fqdn, group: group, pool: settings.pool, tokenHash: hash,
                                     salt: salt, iterations: tokenIterations, now: now)
        return EnrolmentTicket(node: node, token: token)
    }

    /// `node revoke`: the node's certificates go on a newly signed CRL.
    @discardableResult
    public func revokeNode(name: String, now: Int64 = unixNow()) throws -> [UInt64] {
        try store.revokeNode(named: name, now: now, signCRL: directory.signCRL(now: now))
    }

    public func removeNode(name: String, now: Int64 = unixNow()) throws {
        try store.removeNode(named: name, now: now, signCRL: directory.signCRL(now: now))
    }

    /// `service add nms|trs NAME`: a key and certificate for a service host.
    public func addService(role: CertificateRole, name: FQDN, days: Int = 365, now: Int64 = unixNow())
        throws -> (key: X25519PrivateKey, certificate: Certificate) {
        guard role == .nms || role == .trs else { throw ConfigError.invalid("role", "must be nms or trs") }
        let key = try X25519PrivateKey()
        let cert = try directory.ca.issue(.service(role, name: name, serial: try CertificateAuthority.randomSerial(),
                                                   validFrom: now - 300, days: days), publicKey: key.publicKey)
        try store.addService(name: name.value, role: role.rawValue,
                             certificate: IssuedCertificate(serial: cert.serial ?? 0, subject: name.value, role: role.rawValue,
                                                            notBefore: cert.notBefore ?? now, notAfter: cert.notAfter ?? now,
                                                            der: cert.derBytes), now: now)
        return (key, cert)
    }

    /// The current signed CRL.
    public func revocationList() throws -> RevocationList? {
        try store.latestCRL().map { try RevocationList(der: $0.der) }
    }

    /// Decides a login whose Noise handshake proved `clientKey`. Rate limits per source
    /// address and per name; every refusal costs the same PBKDF2 work as a real check.
    public func login(_ login: Login, clientKey: X25519PublicKey, source: IPAddress, now: Int64 = unixNow())
        -> Result<LoginSuccess, LoginFailure> {
        let name = login.name.lowercased()
        let sourceKey = "ip:\(source)", nameKey = "name:\(name)"
        if limiter.isBlocked(sourceKey, now: now) || limiter.isBlocked(nameKey, now: now) { return .failure(.rateLimited) }
        let result: Result<LoginSuccess, LoginFailure>
        do {
            switch login.credential {
            case let .token(token): result = try tokenLogin(name: name, token: token, clientKey: clientKey, now: now)
            case let .certificate(der): result = try certificateLogin(name: name, der: der, clientKey: clientKey, now: now)
            }
        } catch {
            result = .failure(.internalError("\(error)"))
        }
        switch result {
        case .failure(.rateLimited), .failure(.internalError), .success:
            break
        case .failure:
            limiter.recordFailure(sourceKey, now: now)
            limiter.recordFailure(nameKey, now: now)
        }
        return result
    }

    private func tokenLogin(name: String, token: String, clientKey: X25519PublicKey, now: Int64) throws
        -> Result<LoginSuccess, LoginFailure> {
        guard let node = try store.node(named: name), let verifier = try store.tokenVerifier(nodeID: node.id) else {
            _ = PasswordHash.verify(secret: Array(token.utf8), salt: dummySalt, iterations: tokenIterations, expected: dummyHash)
            return .failure(.unknownNode)
        }
        let matches = PasswordHash.verify(secret: Array(token.utf8), salt: verifier.salt, iterations: verifier.iterations,
                                          expected: verifier.hash)
        guard matches else { return .failure(.badCredential("token")) }
        guard node.state == .pending, !verifier.used else {
            return .failure(node.state == .revoked ? .revoked : .tokenUsed)
        }
        let issued = try issue(node: node, key: clientKey, now: now)
        do {
            try store.enrol(nodeID: node.id, publicKey: clientKey.bytes, certificate: issued, now: now)
        } catch StoreError.tokenAlreadyUsed {
            return .failure(.tokenUsed)
        }
        return .success(LoginSuccess(value: try provision(node: node, certificate: issued.der), issued: true))
    }

    private func certificateLogin(name: String, der: [UInt8], clientKey: X25519PublicKey, now: Int64) throws
        -> Result<LoginSuccess, LoginFailure> {
        guard let node = try store.node(named: name) else { return .failure(.unknownNode) }
        guard node.state != .revoked else { return .failure(.revoked) }
        guard node.state == .active, let stored = node.publicKey, stored == Hex.encode(clientKey.bytes) else {
            return .failure(.badCredential("key"))
        }
        let cert: Certificate
        do {
            cert = try Certificate(der: der)
            let verifier = try CertificateVerifier(trustAnchor: directory.ca.certificate, revocations: try revocationList())
            try verifier.verify(cert, role: .node, name: node.fqdn, at: now)
        } catch PKIError.revoked {
            return .failure(.revoked)
        } catch {
            return .failure(.badCredential("certificate: \(error)"))
        }
        guard cert.x25519PublicKey == clientKey else { return .failure(.badCredential("certificate key")) }
        var current = der
        var renewed: IssuedCertificate?
        if let notAfter = cert.notAfter, notAfter - now < Int64(settings.renewBeforeDays) * 86_400 {
            let fresh = try issue(node: node, key: clientKey, now: now)
            renewed = fresh
            current = fresh.der
        } else if let newest = try store.currentCertificate(nodeID: node.id) {
            current = newest
        }
        try store.recordLogin(nodeID: node.id, renewed: renewed, now: now)
        return .success(LoginSuccess(value: try provision(node: node, certificate: current), issued: renewed != nil))
    }

    private func issue(node: NodeRecord, key: X25519PublicKey, now: Int64) throws -> IssuedCertificate {
        guard let fqdn = try? FQDN(node.fqdn), let v4 = IPAddress(node.vip4), let v6 = IPAddress(node.vip6) else {
            throw LoginFailure.internalError("stored node \(node.name) is inconsistent")
        }
        let cert = try directory.ca.issue(
            .node(fqdn: fqdn, addresses: [v4, v6], group: node.group, serial: try CertificateAuthority.randomSerial(),
                  validFrom: now - 300, days: settings.certificateDays), publicKey: key)
        return IssuedCertificate(serial: cert.serial ?? 0, subject: node.fqdn, role: "node", notBefore: cert.notBefore ?? now,
                                 notAfter: cert.notAfter ?? now, der: cert.derBytes)
    }

    private func provision(node: NodeRecord, certificate: [UInt8]) throws -> Provision {
        Provision(nodeID: UInt64(node.id), fqdn: try FQDN(node.fqdn), virtualIPv4: IPAddress(node.vip4)!,
                  virtualIPv6: IPAddress(node.vip6)!, certificate: certificate,
                  caCertificate: directory.ca.certificate.derBytes, nmsEndpoints: settings.nmsEndpoints,
                  trsEndpoints: settings.trsEndpoints)
    }
}
