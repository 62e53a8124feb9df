import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire

/// Why a route authorization was refused.
public enum AuthorizationError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed
    case badSignature
    case expired
    case wrongPath
    case wrongNodes

    public var description: String {
        switch self {
        case .malformed: return "malformed route authorization"
        case .badSignature: return "route authorization not signed by the NMS"
        case .expired: return "route authorization expired"
        case .wrongPath: return "route authorization is for another path"
        case .wrongNodes: return "route authorization names other nodes"
        }
    }
}

/// The authorization an NMS puts in every ``RouteDirection`` (docs/protocol.md §4):
/// which two nodes (by their X25519 static keys) may build path `pathID` and how, until
/// `expires`, signed with the NMS's Ed25519 signing key. A node, and later a TRS,
/// checks it offline against the NMS signing certificate (issued by the CA, role nms).
/// Fixed layout, 146 bytes: version (1), process code, path id (u64), expires (u64),
/// initiator key (32), responder key (32), Ed25519 signature (64) over the domain
/// string followed by everything before the signature.
public struct PathAuthorization: Equatable, Sendable {
    public static let version: UInt8 = 1
    public static let size = 2 + 8 + 8 + 32 + 32 + 64
    static let domain = Array("CYPHONIC path authorization v1".utf8)

    public var processCode: ProcessCode
    public var pathID: UInt64
    /// Unix seconds after which it is void.
    public var expires: UInt64
    public var initiatorKey: [UInt8]
    public var responderKey: [UInt8]
    public var signature: [UInt8]

    var signedPart: [UInt8] {
        var w = ByteWriter(capacity: Self.size)
        w.u8(Self.version)
        w.u8(processCode.rawValue)
        w.u64(pathID)
        w.u64(expires)
        w.raw(initiatorKey)
        w.raw(responderKey)
        return w.bytes
    }

    /// Signs a new authorization.
    public static func sign(
        processCode: ProcessCode, pathID: UInt64, expires: UInt64, initiatorKey: [UInt8], responderKey: [UInt8],
        with key: Ed25519PrivateKey
    ) throws -> PathAuthorization {
        guard initiatorKey.count == 32, responderKey.count == 32 else { throw AuthorizationError.malformed }
        var a = PathAuthorization(
            processCode: processCode, pathID: pathID, expires: expires, initiatorKey: initiatorKey,
            responderKey: responderKey, signature: [])
        a.signature = try key.signature(for: domain + a.signedPart)
        return a
    }

    public var bytes: [UInt8] { signedPart + signature }

    /// Reads the fixed layout; throws ``AuthorizationError/malformed`` for anything else.
    public init(bytes: [UInt8]) throws(AuthorizationError) {
        guard bytes.count == Self.size, bytes[0] == Self.version, let code = ProcessCode(rawValue: bytes[1]) else {
            throw .malformed
        }
        func u64(_ at: Int) -> UInt64 { bytes[at..<(at + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
        pathID = u64(2)
        expires = u64(10)
        initiatorKey = Array(bytes[18..<50])
        responderKey = Array(bytes[50..<82])
        signature = Array(bytes[82..<146])
        processCode = code
    }

    init(processCode: ProcessCode, pathID: UInt64, expires: UInt64, initiatorKey: [UInt8], responderKey: [UInt8], signature: [UInt8]) {
        self.processCode = processCode
        self.pathID = pathID
        self.expires = expires
        self.initiatorKey = initiatorKey
        self.responderKey = responderKey
        self.signature = signature
    }

    /// Checks the signature with `signer` (the NMS signing key), the expiry, the path
    /// id, and that the two keys are `a` and `b` in either role.
    public func verify(
        signer: Ed25519PublicKey, pathID: UInt64, between a: [UInt8], and b: [UInt8], now: Int64 = unixNowSeconds()
    )
        throws(AuthorizationError)
    {
        guard signer.isValidSignature(signature, for: Self.domain + signedPart) else { throw .badSignature }
        guard Int64(clamping: expires) >= now else { throw .expired }
        guard self.pathID == pathID else { throw .wrongPath }
        guard (initiatorKey == a && responderKey == b) || (initiatorKey == b && responderKey == a) else { throw .wrongNodes }
    }

    /// The 16-byte authenticator of a hole-punching probe on this path from `sender`:
    /// HMAC-SHA-256 keyed by the authorization, which only the two nodes (and the NMS) hold.
    public func punchAuthenticator(senderNodeID: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 16)
        w.u64(pathID)
        w.u64(senderNodeID)
        let tag = (try? HMACSHA256.authenticate(key: bytes, data: w.bytes)) ?? []
        return Array(tag.prefix(HolePunch.authenticatorSize))
    }
}

/// Checks an NMS signing certificate: chains to the CA, role nms, an Ed25519 key.
public func nmsSigningKey(
    certificate der: [UInt8], verifier: CertificateVerifier, now: Int64 = unixNowSeconds()
) throws
    -> Ed25519PublicKey
{
    let cert = try Certificate(der: der)
    try verifier.verify(cert, role: .nms, at: now)
    guard let key = cert.ed25519PublicKey else { throw PKIError.wrongKeyType("the NMS signing certificate holds no Ed25519 key") }
    return key
}
