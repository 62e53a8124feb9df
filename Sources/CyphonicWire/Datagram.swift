import CyphonicCore

/// Node ↔ node hole-punching probe (CYPHONIC HolePunching / HolePunchingForOptimization).
/// `authenticator` is an HMAC over the path id and sender, keyed by the path authorization
/// that NMS gave both nodes, so a third party cannot make a node answer.
public struct HolePunch: Equatable, Sendable {
    public static let authenticatorSize = 16
    public var pathID: UInt64
    public var senderNodeID: UInt64
    public var authenticator: [UInt8]

    public init(pathID: UInt64, senderNodeID: UInt64, authenticator: [UInt8]) {
        self.pathID = pathID
        self.senderNodeID = senderNodeID
        self.authenticator = authenticator
    }
}

/// What follows the header, by message type (docs/protocol.md §3).
public enum DatagramBody: Equatable, Sendable {
    case handshakeInitiation(senderIndex: UInt32, noise: [UInt8])
    case handshakeResponse(senderIndex: UInt32, noise: [UInt8])
    case handshakeCompletion(noise: [UInt8])
    case signaling(ciphertext: [UInt8])
    case tunnelRequest(senderIndex: UInt32, pathID: UInt64, noise: [UInt8])
    case tunnelResponse(senderIndex: UInt32, noise: [UInt8])
    case capsule(ciphertext: [UInt8])
    case holePunching(HolePunch)
    case holePunchingForOptimization(HolePunch)
    /// `token` (16 bytes) is the one NMS handed out in RegistrationAck.
    case natProbe(token: [UInt8])
    case error(message: String)
    /// The cookie (``Datagram/cookieSize`` bytes) for the initiation whose sender index
    /// is the header's receiver index.
    case cookieReply(cookie: [UInt8])

    public var type: MessageType {
        switch self {
        case .handshakeInitiation: return .handshakeInitiation
        case .handshakeResponse: return .handshakeResponse
        case .handshakeCompletion: return .handshakeCompletion
        case .signaling: return .signaling
        case .tunnelRequest: return .tunnelRequest
        case .tunnelResponse: return .tunnelResponse
        case .capsule: return .capsule
        case .holePunching: return .holePunching
        case .holePunchingForOptimization: return .holePunchingForOptimization
        case .natProbe: return .natProbe
        case .error: return .error
        case .cookieReply: return .cookieReply
        }
    }
}

/// One whole CYPHONIC datagram: header plus typed body. Decoding checks every length
/// and never traps; the data plane decodes only the ``Header`` and seals/opens the
/// capsule in place instead of going through this type.
public struct Datagram: Equatable, Sendable {
    public static let probeTokenSize = 16
    public static let cookieSize = 16
    /// A Noise handshake message is at least an ephemeral key (32 bytes) and at most 65535.
    static let noiseRange = 32...65_535

    public var header: Header
    public var body: DatagramBody

    /// `header.type` is always taken from `body`.
    public init(header: Header, body: DatagramBody) {
        self.header = header
        self.header.type = body.type
        self.body = body
    }

    public init(
        _ body: DatagramBody, status: StatusCode = .ok, flags: HeaderFlags = [], receiverIndex: UInt32 = 0,
        counter: UInt64 = 0
    ) {
        self.init(
            header: Header(
                type: body.type, status: status, flags: flags, receiverIndex: receiverIndex,
                counter: counter), body: body)
    }

    public func encode() throws(EncodeError) -> [UInt8] {
        var w = ByteWriter(capacity: Header.size + 64)
        header.encode(into: &w)
        switch body {
        case .handshakeInitiation(let index, let noise), .handshakeResponse(let index, let noise):
            w.u32(index)
            w.raw(noise)
        case .handshakeCompletion(let noise):
            w.raw(noise)
        case .signaling(let c), .capsule(let c):
            w.raw(c)
        case .tunnelRequest(let index, let path, let noise):
            w.u32(index)
            w.u64(path)
            w.raw(noise)
        case .tunnelResponse(let index, let noise):
            w.u32(index)
            w.raw(noise)
        case .holePunching(let p), .holePunchingForOptimization(let p):
            guard p.authenticator.count == HolePunch.authenticatorSize else { throw .fieldTooLong(p.authenticator.count) }
            w.u64(p.pathID)
            w.u64(p.senderNodeID)
            w.raw(p.authenticator)
        case .natProbe(let token):
            guard token.count == Datagram.probeTokenSize else { throw .fieldTooLong(token.count) }
            w.raw(token)
        case .error(let message):
            try w.string(message.truncatedToUTF8(WireLimits.maxMessageBytes))
        case .cookieReply(let cookie):
            guard cookie.count == Datagram.cookieSize else { throw .fieldTooLong(cookie.count) }
            w.raw(cookie)
        }
        guard w.bytes.count <= WireLimits.maxDatagramBytes else { throw .fieldTooLong(w.bytes.count) }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> Datagram {
        try bytes.withUnsafeBytes { raw in Result { () throws(DecodeError) in try decode(raw) } }.get()
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> Datagram {
        guard bytes.count <= WireLimits.maxDatagramBytes else {
            throw .oversized(length: bytes.count, limit: WireLimits.maxDatagramBytes)
        }
        var r = ByteReader(bytes)
        let header = try Header.decode(&r)
        let body: DatagramBody
        switch header.type {
        case .handshakeInitiation:
            let index = try r.u32()
            body = .handshakeInitiation(senderIndex: index, noise: try noise(&r))
        case .handshakeResponse:
            let index = try r.u32()
            body = .handshakeResponse(senderIndex: index, noise: try noise(&r))
        case .handshakeCompletion:
            body = .handshakeCompletion(noise: try sealed(&r, field: "noise"))
        case .signaling:
            body = .signaling(ciphertext: try sealed(&r, field: "signaling"))
        case .tunnelRequest:
            let index = try r.u32()
            let path = try r.u64()
            body = .tunnelRequest(senderIndex: index, pathID: path, noise: try noise(&r))
        case .tunnelResponse:
            let index = try r.u32()
            body = .tunnelResponse(senderIndex: index, noise: try noise(&r))
        case .capsule:
            body = .capsule(ciphertext: try sealed(&r, field: "capsule"))
        case .holePunching, .holePunchingForOptimization:
            let p = HolePunch(
                pathID: try r.u64(), senderNodeID: try r.u64(),
                authenticator: try r.bytes(HolePunch.authenticatorSize))
            body = header.type == .holePunching ? .holePunching(p) : .holePunchingForOptimization(p)
        case .natProbe:
            body = .natProbe(token: try r.bytes(probeTokenSize))
        case .error:
            body = .error(message: try r.string(limit: WireLimits.maxMessageBytes, field: "message"))
        case .cookieReply:
            body = .cookieReply(cookie: try r.bytes(cookieSize))
        }
        try r.finish()
        return Datagram(header: header, body: body)
    }

    /// The rest of the datagram as a Noise handshake message (bounds-checked).
    private static func noise(_ r: inout ByteReader) throws(DecodeError) -> [UInt8] {
        guard noiseRange.contains(r.remaining) else { throw .invalidField("noise") }
        return r.rest()
    }

    /// The rest as AEAD output: at least the 16-byte tag.
    private static func sealed(_ r: inout ByteReader, field: String) throws(DecodeError) -> [UInt8] {
        guard r.remaining >= 16 else { throw .invalidField(field) }
        return r.rest()
    }
}
