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
/// `expires`, and through which relay (``relayID``: SHA-256 of the relay's certificate
/// name, all zero for any relay of the CA), signed with the NMS's Ed25519 signing key. A
/// node, and a TRS, checks it offline against the NMS signing certificate (issued by the
/// CA, role nms); a TRS refuses an authorization that names another relay.
///
/// Under load the NMS signs authorizations in batches (one Ed25519 signature bounds it
/// at ~22 000 a second per core here): each is a leaf of a Merkle tree (SHA-256, leaf
/// and node hashes domain-separated), the signature covers the root, and every
/// authorization carries its leaf index and the sibling hashes up to the root. A batch
/// of one has no siblings. Layout: version (1 = 3), process code, path id (u64),
/// expires (u64), initiator key (32), responder key (32), relay id (32), leaf index
/// (u8), depth (u8, at most ``maxDepth``), depth × 32 bytes of siblings, Ed25519
/// signature (64) over the domain string followed by the root. 180 bytes alone, 340 in
/// a batch of 32.
public struct PathAuthorization: Equatable, Sendable {
    public static let version: UInt8 = 3
    public static let maxDepth = 5
    /// The largest batch one signature covers.
    public static let maxBatch = 1 << maxDepth
    static let fieldsSize = 2 + 8 + 8 + 32 + 32 + 32
    public static let maxSize = fieldsSize + 2 + maxDepth * 32 + 64
    static let domain = Array("CYPHONIC path authorization v3".utf8)
    /// The relay id that lets any relay of the CA carry the path.
    public static let anyRelay = [UInt8](repeating: 0, count: 32)

    /// The id an authorization names a relay by: SHA-256 of its certificate name.
    public static func relayID(name: String) -> [UInt8] { SHA256.hash(Array(name.lowercased().utf8)) }

    public var processCode: ProcessCode
    public var pathID: UInt64
    /// Unix seconds after which it is void.
    public var expires: UInt64
    public var initiatorKey: [UInt8]
    public var responderKey: [UInt8]
    /// The relay that may carry the path (``relayID(name:)``), or ``anyRelay``.
    public var relayID: [UInt8]
    /// The leaf's position in its batch and the sibling hashes up to the root.
    public var leafIndex: UInt8 = 0
    public var siblings: [[UInt8]] = []
    public var signature: [UInt8] = []

    public init(
        processCode: ProcessCode, pathID: UInt64, expires: UInt64, initiatorKey: [UInt8], responderKey: [UInt8],
        relayID: [UInt8] = PathAuthorization.anyRelay
    ) {
        self.processCode = processCode
        self.pathID = pathID
        self.expires = expires
        self.initiatorKey = initiatorKey
        self.responderKey = responderKey
        self.relayID = relayID
    }

    /// Whether the relay whose certificate name is `name` may carry this path.
    public func allowsRelay(named name: String) -> Bool { relayID == Self.anyRelay || relayID == Self.relayID(name: name) }

    var fields: [UInt8] {
        var w = ByteWriter(capacity: Self.fieldsSize)
        w.u8(Self.version)
        w.u8(processCode.rawValue)
        w.u64(pathID)
        w.u64(expires)
        w.raw(initiatorKey)
        w.raw(responderKey)
        w.raw(relayID)
        return w.bytes
    }

    var leaf: [UInt8] { SHA256.hash([0] + fields) }
    static func node(_ l: [UInt8], _ r: [UInt8]) -> [UInt8] { SHA256.hash([1] + l + r) }

    /// Signs a new authorization on its own.
    public static func sign(
        processCode: ProcessCode, pathID: UInt64, expires: UInt64, initiatorKey: [UInt8], responderKey: [UInt8],
        relayID: [UInt8] = PathAuthorization.anyRelay, with key: Ed25519PrivateKey
    ) throws -> PathAuthorization {
        try signBatch(
            [
                PathAuthorization(
                    processCode: processCode, pathID: pathID, expires: expires, initiatorKey: initiatorKey, responderKey: responderKey,
                    relayID: relayID)
            ], with: key)[0]
    }

    /// Signs up to ``maxBatch`` authorizations with one signature over their Merkle root.
    public static func signBatch(_ batch: [PathAuthorization], with key: Ed25519PrivateKey) throws -> [PathAuthorization] {
        guard !batch.isEmpty, batch.count <= maxBatch,
            batch.allSatisfy({ $0.initiatorKey.count == 32 && $0.responderKey.count == 32 && $0.relayID.count == 32 })
        else { throw AuthorizationError.malformed }
        var depth = 0
        while 1 << depth < batch.count { depth += 1 }
        // Levels bottom-up; the last leaf repeats to fill the tree (it is signed anyway).
        var levels: [[[UInt8]]] = [batch.map(\.leaf) + Array(repeating: batch.last!.leaf, count: (1 << depth) - batch.count)]
        while levels.last!.count > 1 {
            let below = levels.last!
            levels.append(stride(from: 0, to: below.count, by: 2).map { node(below[$0], below[$0 + 1]) })
        }
        let signature = try key.signature(for: domain + levels.last![0])
        return batch.enumerated().map { i, a in
            var signed = a
            signed.leafIndex = UInt8(i)
            signed.siblings = (0..<depth).map { level in levels[level][(i >> level) ^ 1] }
            signed.signature = signature
            return signed
        }
    }

    public var bytes: [UInt8] { fields + [leafIndex, UInt8(siblings.count)] + siblings.flatMap { $0 } + signature }

    /// Reads the layout; throws ``AuthorizationError/malformed`` for anything else.
    public init(bytes: [UInt8]) throws(AuthorizationError) {
        let f = Self.fieldsSize
        guard bytes.count >= f + 2 + 64, bytes[0] == Self.version, let code = ProcessCode(rawValue: bytes[1]) else { throw .malformed }
        let depth = Int(bytes[f + 1])
        guard depth <= Self.maxDepth, Int(bytes[f]) < 1 << depth || (depth == 0 && bytes[f] == 0),
            bytes.count == f + 2 + depth * 32 + 64
        else { throw .malformed }
        func u64(_ at: Int) -> UInt64 { bytes[at..<(at + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
        processCode = code
        pathID = u64(2)
        expires = u64(10)
        initiatorKey = Array(bytes[18..<50])
        responderKey = Array(bytes[50..<82])
        relayID = Array(bytes[82..<114])
        leafIndex = bytes[f]
        siblings = (0..<depth).map { Array(bytes[(f + 2 + $0 * 32)..<(f + 2 + $0 * 32 + 32)]) }
        signature = Array(bytes[(f + 2 + depth * 32)...])
    }

    /// The Merkle root this authorization's path leads to.
    var root: [UInt8] {
        var h = leaf
        for (level, sibling) in siblings.enumerated() {
            h = (Int(leafIndex) >> level) & 1 == 0 ? Self.node(h, sibling) : Self.node(sibling, h)
        }
        return h
    }

    /// Checks the signature with `signer` (the NMS signing key) over the root its path
    /// leads to, the expiry, the path id, and that the two keys are `a` and `b` in
    /// either role.
    public func verify(
        signer: Ed25519PublicKey, pathID: UInt64, between a: [UInt8], and b: [UInt8], now: Int64 = unixNowSeconds()
    )
        throws(AuthorizationError)
    {
        guard signer.isValidSignature(signature, for: Self.domain + root) else { throw .badSignature }
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
