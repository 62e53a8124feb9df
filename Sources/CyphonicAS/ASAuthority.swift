import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire
import Synchronization

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

    /// What the client is told: as much as is safe. An unknown name and a wrong token get
    /// the same words (a prober learns nothing); a used token, revocation and rate limits
    /// are told only to a client that proved the token or the node's key (or, for rate
    /// limits, before any secret is checked: they say nothing about the name).
    public var clientMessage: String {
        switch self {
        case .unknownNode, .badCredential("token"): return "unknown node or wrong token (the AS log says which)"
        case .badCredential: return "the certificate or key is not the one this node enrolled with"
        case .tokenUsed: return "this enrolment token was already used; ask the operator for a new one (as-server node add)"
        case .revoked: return "this node is revoked"
        case .rateLimited: return "too many token logins from this address or for this name; wait a minute and try again"
        case .internalError: return "internal error at the AS (its log says more)"
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
///
/// Abuse guarantees of ``login(_:clientKey:source:now:)``:
/// - a valid certificate login is never refused by rate limits (it costs no PBKDF2);
///   failed certificate logins count against their source only;
/// - token logins are refused (`rateLimited`, without PBKDF2) when their source
///   (IPv4 address, IPv6 /64) or the node name has `maxFailures` failures in the window,
///   or when the global budget of `maxPasswordChecksPerSecond` PBKDF2 checks is spent;
/// - `revoked` is answered only to a client that proved the node's enrolled key (or token).
public final class ASAuthority: Sendable {
    public let directory: ASDirectory
    public let limiter: RateLimiter
    /// Iterations for token hashes made from now on (tests may lower it).
    public let tokenIterations: Int
    /// Bounds the PBKDF2 token checks (real or dummy) per second across all sources.
    public let passwordChecks: TokenBucket
    private let passwordChecksRun = Atomic<Int>(0)
    private let dummySalt: [UInt8]
    private let dummyHash: [UInt8]

    public init(
        directory: ASDirectory, limiter: RateLimiter = RateLimiter(),
        tokenIterations: Int = PasswordHash.defaultIterations, maxPasswordChecksPerSecond: Int = 20
    ) throws {
        guard maxPasswordChecksPerSecond > 0 else {
            throw ConfigError.invalid("max-password-checks", "must be at least 1 per second")
        }
        self.directory = directory
        self.limiter = limiter
        self.tokenIterations = tokenIterations
        passwordChecks = TokenBucket(perSecond: maxPasswordChecksPerSecond)
        dummySalt = try SecureRandom.bytes(16)
        dummyHash = try PasswordHash.derive(secret: Array("no such node".utf8), salt: dummySalt, iterations: tokenIterations)
    }

    /// PBKDF2 token checks run by logins so far (refusals before PBKDF2 not counted).
    public var passwordChecksPerformed: Int { passwordChecksRun.load(ordering: .relaxed) }

    var store: ASStore { directory.store }
    var settings: ASSettings { directory.settings }

    /// `node add`: a pending node with addresses and a one-time token `NAME.SECRET`.
    public func addNode(name: String, group: String?, now: Int64 = unixNow()) throws -> EnrolmentTicket {
        guard FQDN.isValidLabel(name) else { throw StoreError.invalidName(name) }
        if let group, !(1...64).contains(group.utf8.count) || !group.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) {
            throw ConfigError.invalid("group", "1-64 printable characters without spaces")
        }
        let fqdn = try FQDN(name.lowercased() + "." + settings.domain.value)
        // Nor the AS's own name.
        if fqdn.value == directory.serviceCertificate.commonName { throw StoreError.nameTaken("\(fqdn.value) (the AS itself)") }
        let token = name.lowercased() + "." + Hex.encode(try SecureRandom.bytes(20))
        let salt = try SecureRandom.bytes(16)
        let hash = try PasswordHash.derive(secret: Array(token.utf8), salt: salt, iterations: tokenIterations)
        let node = try store.addNode(
            name: name.lowercased(), fqdn: fqdn, group: group, pool: settings.pool, tokenHash: hash,
            salt: salt, iterations: tokenIterations, now: now)
        return EnrolmentTicket(node: node, token: token)
    }

    /// `node revoke`: the node's certificates go on a newly signed CRL.
    @discardableResult
    public func revokeNode(name: String, now: Int64 = unixNow()) throws -> [UInt64] {
        try store.revokeNode(named: name, now: now, signCRL: directory.signCRL(now: now))
    }

    /// `node remove`: revokes, deletes, and quarantines the addresses while a certificate naming them is valid.
    @discardableResult
    public func removeNode(name: String, now: Int64 = unixNow()) throws -> RemovedNode {
        try store.removeNode(named: name, now: now, signCRL: directory.signCRL(now: now))
    }

    /// `service add nms|trs NAME`: a key and certificate for a service host.
    public func addService(
        role: CertificateRole, name: FQDN, days: Int = 365, now: Int64 = unixNow()
    )
        throws -> ServiceBundle
    {
        guard role == .nms || role == .trs else { throw ConfigError.invalid("role", "must be nms or trs") }
        let key = try X25519PrivateKey()
        let cert = try directory.ca.issue(
            .service(
                role, name: name, serial: try CertificateAuthority.randomSerial(),
                validFrom: now - 300, days: days), publicKey: key.publicKey)
        try store.addService(
            name: name.value, role: role.rawValue,
            certificate: IssuedCertificate(
                serial: cert.serial ?? 0, subject: name.value, role: role.rawValue,
                notBefore: cert.notBefore ?? now, notAfter: cert.notAfter ?? now,
                der: cert.derBytes), now: now)
        // The NMS also signs route authorizations that nodes and relays check offline:
        // an Ed25519 key of its own with a certificate of the same name and role.
        var signing: (key: Ed25519PrivateKey, certificate: Certificate)?
        if role == .nms {
            let signingKey = try Ed25519PrivateKey()
            let signingCert = try directory.ca.issue(
                .service(role, name: name, serial: try CertificateAuthority.randomSerial(), validFrom: now - 300, days: days),
                signingKey: signingKey.publicKey)
            signing = (signingKey, signingCert)
        }
        return ServiceBundle(key: key, certificate: cert, signing: signing)
    }

    /// The current signed CRL.
    public func revocationList() throws -> RevocationList? {
        try store.latestCRL().map { try RevocationList(der: $0.der) }
    }

    /// Re-publishes the CRL (same serials, new number, validity from `now`) when less
    /// than half of the current one's validity remains, or it is unreadable or missing,
    /// so nodes never hold an expired CRL while the AS runs. Returns the new number.
    @discardableResult
    public func refreshRevocationListIfDue(now: Int64 = unixNow()) throws -> UInt64? {
        try store.refreshCRL(
            now: now,
            if: { der in
                guard let crl = try? RevocationList(der: der), let this = crl.thisUpdate, let next = crl.nextUpdate else { return true }
                return next - now < (next - this) / 2
            }, sign: directory.signCRL(now: now))
    }

    /// Decides a login whose Noise handshake proved `clientKey` (see the type's guarantees).
    /// Every token refusal after the rate checks costs the same PBKDF2 work as a real check.
    public func login(
        _ login: Login, clientKey: X25519PublicKey, source: IPAddress, now: Int64 = unixNow()
    )
        -> Result<LoginSuccess, LoginFailure>
    {
        let name = login.name.lowercased()
        let sourceKey = RateLimiter.sourceKey(source)
        let result: Result<LoginSuccess, LoginFailure>
        switch login.credential {
        case .token(let token):
            // Name and source limits guard the expensive path only; the token-name key
            // is separate from anything the certificate path looks at.
            // (counted by label, so NAME and NAME.DOMAIN share one budget).
            let suffix = "." + settings.domain.value.lowercased()
            let nameKey = "token-name:" + (name.hasSuffix(suffix) ? String(name.dropLast(suffix.count)) : name)
            if limiter.isBlocked(sourceKey, now: now) || limiter.isBlocked(nameKey, now: now) || !passwordChecks.take(now: now) {
                return .failure(.rateLimited)
            }
            result = Self.catching { try tokenLogin(name: name, token: token, clientKey: clientKey, now: now) }
            if Self.counts(result) {
                limiter.recordFailure(sourceKey, now: now)
                limiter.recordFailure(nameKey, now: now)
            }
        case .certificate(let der):
            result = Self.catching { try certificateLogin(name: name, der: der, clientKey: clientKey, now: now) }
            if Self.counts(result) { limiter.recordFailure(sourceKey, now: now) }
        }
        return result
    }

    private static func catching(_ body: () throws -> Result<LoginSuccess, LoginFailure>) -> Result<LoginSuccess, LoginFailure> {
        do { return try body() } catch { return .failure(.internalError("\(error)")) }
    }

    /// Whether a result counts as a failed attempt for the rate limiter.
    private static func counts(_ result: Result<LoginSuccess, LoginFailure>) -> Bool {
        switch result {
        case .success, .failure(.rateLimited), .failure(.internalError): return false
        case .failure: return true
        }
    }

    private func tokenLogin(
        name: String, token: String, clientKey: X25519PublicKey, now: Int64
    ) throws
        -> Result<LoginSuccess, LoginFailure>
    {
        passwordChecksRun.add(1, ordering: .relaxed)
        guard let node = try store.node(named: name), let verifier = try store.tokenVerifier(nodeID: node.id) else {
            _ = PasswordHash.verify(secret: Array(token.utf8), salt: dummySalt, iterations: tokenIterations, expected: dummyHash)
            return .failure(.unknownNode)
        }
        let matches = PasswordHash.verify(
            secret: Array(token.utf8), salt: verifier.salt, iterations: verifier.iterations,
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

    private func certificateLogin(
        name: String, der: [UInt8], clientKey: X25519PublicKey, now: Int64
    ) throws
        -> Result<LoginSuccess, LoginFailure>
    {
        guard let node = try store.node(named: name) else { return .failure(.unknownNode) }
        // The key first: whoever has not proven the enrolled key learns nothing about the
        // node's state (docs/protocol.md §6), `revoked` included.
        guard let stored = node.publicKey, stored == Hex.encode(clientKey.bytes) else { return .failure(.badCredential("key")) }
        guard node.state == .active else { return .failure(node.state == .revoked ? .revoked : .badCredential("state")) }
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
        // Renewal is decided on the node's newest certificate, not the one presented: a
        // node gets at most one new certificate per (cert-days - renew-before-days) days
        // however often it logs in with an old one; the store re-checks in its transaction.
        let threshold = now + Int64(settings.renewBeforeDays) * 86_400
        let newestExpiry = try store.newestCertificate(nodeID: node.id)?.notAfter ?? cert.notAfter ?? now
        let renewed = newestExpiry <= threshold ? try issue(node: node, key: clientKey, now: now) : nil
        switch try store.recordCertificateLogin(
            nodeID: node.id, publicKey: clientKey.bytes, renewed: renewed,
            renewUnlessNewestExpiresAfter: threshold, now: now)
        {
        case .notActive:
            // Revoked (or removed) between the checks above and the write: nothing issued.
            return .failure(.revoked)
        case .recorded(let current, let issued):
            return .success(LoginSuccess(value: try provision(node: node, certificate: current), issued: issued))
        }
    }

    private func issue(node: NodeRecord, key: X25519PublicKey, now: Int64) throws -> IssuedCertificate {
        guard let fqdn = try? FQDN(node.fqdn), let v4 = IPAddress(node.vip4), let v6 = IPAddress(node.vip6) else {
            throw LoginFailure.internalError("stored node \(node.name) is inconsistent")
        }
        let cert = try directory.ca.issue(
            .node(
                fqdn: fqdn, addresses: [v4, v6], group: node.group, serial: try CertificateAuthority.randomSerial(),
                validFrom: now - 300, days: settings.certificateDays), publicKey: key)
        return IssuedCertificate(
            serial: cert.serial ?? 0, subject: node.fqdn, role: "node", notBefore: cert.notBefore ?? now,
            notAfter: cert.notAfter ?? now, der: cert.derBytes)
    }

    private func provision(node: NodeRecord, certificate: [UInt8]) throws -> Provision {
        Provision(
            nodeID: UInt64(node.id), fqdn: try FQDN(node.fqdn), virtualIPv4: IPAddress(node.vip4)!,
            virtualIPv6: IPAddress(node.vip6)!, certificate: certificate,
            caCertificate: directory.ca.certificate.derBytes, nmsEndpoints: settings.nmsEndpoints,
            trsEndpoints: settings.trsEndpoints)
    }
}

/// What `as-server service add` writes for a service host: its X25519 static key and
/// certificate (Noise), and for an NMS the Ed25519 key and certificate it signs route
/// authorizations with.
public struct ServiceBundle {
    public let key: X25519PrivateKey
    public let certificate: Certificate
    public let signing: (key: Ed25519PrivateKey, certificate: Certificate)?
}
