import CyphonicCore

/// The body of a signaling message, by kind (docs/protocol.md §4).
public enum SignalingBody: Equatable, Sendable {
    case login(Login)
    case provision(Provision)
    case registration(Registration)
    case registrationAck(RegistrationAck)
    case keepAlive
    case keepAliveAck(observed: Endpoint)
    /// Node → NMS: a tunnel to `target`; `avoidRelay` names a relay (one of its
    /// endpoints) that stopped answering for the path this request replaces.
    case directionRequest(target: FQDN, avoidRelay: Endpoint? = nil)
    case routeDirection(RouteDirection)
    case routeDirectionConfirmation(RouteDirectionConfirmation)
    case finalization(FinalizationReason)
    case error(code: StatusCode, message: String)
    case revocationListRequest(haveNumber: UInt64)
    case revocationList(der: [UInt8])
    case natProbeResult(NATProbeResult)
    /// Asks for the bytes of revocation list `number` from `offset` on (a list larger
    /// than one datagram travels in parts; docs/protocol.md §4).
    case revocationListPartRequest(number: UInt64, offset: UInt32)
    /// Bytes `offset..<offset+bytes.count` of the DER of list `number`, `total` bytes long.
    case revocationListPart(number: UInt64, offset: UInt32, total: UInt32, bytes: [UInt8])
    /// Node → TRS: relay path `pathID` for me (its NMS authorization and the NMS signing
    /// certificate to check it with; docs/protocol.md §4a).
    case relayRequest(RelayRequest)
    /// TRS → node: the path is relayed; whether the other end is bound too.
    case relayGrant(RelayGrant)
    /// Node → NMS: a fresh authorization for the path to `peer` that `authorization`
    /// (the NMS's, nearing its end) authorizes; NMS → both nodes: here it is, for the same
    /// path, nodes, route and relay, with a later expiry (docs/protocol.md §4).
    case authorizationRenewal(peer: FQDN, authorization: [UInt8])

    public var kind: UInt8 {
        switch self {
        case .login: return 1
        case .provision: return 2
        case .registration: return 3
        case .registrationAck: return 4
        case .keepAlive: return 5
        case .keepAliveAck: return 6
        case .directionRequest: return 7
        case .routeDirection: return 8
        case .routeDirectionConfirmation: return 9
        case .finalization: return 10
        case .error: return 11
        case .revocationListRequest: return 12
        case .revocationList: return 13
        case .natProbeResult: return 14
        case .revocationListPartRequest: return 15
        case .revocationListPart: return 16
        case .relayRequest: return 17
        case .relayGrant: return 18
        case .authorizationRenewal: return 19
        }
    }
}

/// A CYPHONIC signaling message: `kind` (u8), `transaction id` (u32), body. It travels
/// as a Noise handshake payload, sealed in a `signaling` datagram, or in a control
/// capsule; this codec is the same in all three places and does no I/O.
public struct SignalingMessage: Equatable, Sendable {
    /// Pairs a reply with its request; chosen by the requester.
    public var transactionID: UInt32
    public var body: SignalingBody

    public init(transactionID: UInt32, body: SignalingBody) {
        self.transactionID = transactionID
        self.body = body
    }

    public func encode() throws(EncodeError) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.u8(body.kind)
        w.u32(transactionID)
        switch body {
        case .login(let l):
            try w.string(l.name)
            switch l.credential {
            case .token(let t):
                w.u8(1)
                try w.string(t)
            case .certificate(let der):
                w.u8(2)
                try w.lengthPrefixed(der)
            }
        case .provision(let p):
            w.u64(p.nodeID)
            try w.fqdn(p.fqdn)
            w.raw(p.virtualIPv4.bytes)
            w.raw(p.virtualIPv6.bytes)
            try w.lengthPrefixed(p.certificate)
            try w.lengthPrefixed(p.caCertificate)
            try w.endpoints(p.nmsEndpoints)
            try w.endpoints(p.trsEndpoints)
        case .registration(let r):
            try w.lengthPrefixed(r.certificate)
            try w.endpoints(r.localEndpoints)
        case .registrationAck(let a):
            w.endpoint(a.observed)
            w.u16(a.keepAliveSeconds)
            guard a.probeToken.count == Datagram.probeTokenSize else { throw .fieldTooLong(a.probeToken.count) }
            w.raw(a.probeToken)
            try w.endpoints(a.probeEndpoints)
            try w.lengthPrefixed(a.signingCertificate)
        case .keepAlive:
            break
        case .keepAliveAck(let observed):
            w.endpoint(observed)
        case .directionRequest(let target, let avoid):
            try w.fqdn(target)
            w.optionalEndpoint(avoid)
        case .routeDirection(let d):
            w.u64(d.pathID)
            w.u8(d.processCode.rawValue)
            w.u8(d.role.rawValue)
            w.u64(d.peerNodeID)
            try w.fqdn(d.peerFQDN)
            w.raw(d.peerVirtualIPv4.bytes)
            w.raw(d.peerVirtualIPv6.bytes)
            guard d.peerStaticKey.count == 32 else { throw .fieldTooLong(d.peerStaticKey.count) }
            w.raw(d.peerStaticKey)
            try w.endpoints(d.peerEndpoints)
            w.optionalEndpoint(d.relay)
            w.u64(d.expires)
            try w.lengthPrefixed(d.authorization)
        case .routeDirectionConfirmation(let c):
            w.u64(c.pathID)
            w.u8(c.status.rawValue)
            try w.endpoints(c.localEndpoints)
        case .finalization(let reason):
            w.u8(reason.rawValue)
        case .error(let code, let message):
            w.u8(code.rawValue)
            try w.string(message.truncatedToUTF8(WireLimits.maxMessageBytes))
        case .revocationListRequest(let have):
            w.u64(have)
        case .revocationList(let der):
            try w.lengthPrefixed(der)
        case .revocationListPartRequest(let number, let offset):
            w.u64(number)
            w.u32(offset)
        case .revocationListPart(let number, let offset, let total, let bytes):
            w.u64(number)
            w.u32(offset)
            w.u32(total)
            try w.lengthPrefixed(bytes)
        case .natProbeResult(let n):
            w.endpoint(n.primary)
            w.optionalEndpoint(n.probe)
            w.u8(n.mapping.rawValue)
        case .relayRequest(let q):
            w.u64(q.pathID)
            guard q.authorization.count <= WireLimits.maxAuthorizationBytes else { throw .fieldTooLong(q.authorization.count) }
            try w.lengthPrefixed(q.authorization)
            guard q.signingCertificate.count <= WireLimits.maxCertificateBytes else { throw .fieldTooLong(q.signingCertificate.count) }
            try w.lengthPrefixed(q.signingCertificate)
            guard q.sessionIndices.count <= RelayRequest.maxIndices else { throw .fieldTooLong(q.sessionIndices.count) }
            w.u8(UInt8(q.sessionIndices.count))
            for i in q.sessionIndices { w.u32(i) }
        case .relayGrant(let g):
            w.u64(g.pathID)
            w.u8(g.peerBound ? 1 : 0)
            w.u16(g.idleSeconds)
        case .authorizationRenewal(let peer, let authorization):
            try w.fqdn(peer)
            guard authorization.count <= WireLimits.maxAuthorizationBytes else { throw .fieldTooLong(authorization.count) }
            try w.lengthPrefixed(authorization)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> SignalingMessage {
        try bytes.withUnsafeBytes { raw in Result { () throws(DecodeError) in try decode(raw) } }.get()
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> SignalingMessage {
        guard bytes.count <= WireLimits.maxDatagramBytes else {
            throw .oversized(length: bytes.count, limit: WireLimits.maxDatagramBytes)
        }
        var r = ByteReader(bytes)
        let kind = try r.u8()
        let transaction = try r.u32()
        let body: SignalingBody
        switch kind {
        case 1:
            let name = try r.string(limit: WireLimits.maxNameBytes, field: "login.name")
            switch try r.u8() {
            case 1: body = .login(Login(name: name, credential: .token(try r.string(limit: WireLimits.maxTokenBytes, field: "login.token"))))
            case 2:
                body = .login(
                    Login(
                        name: name,
                        credential: .certificate(der: try r.lengthPrefixed(limit: WireLimits.maxCertificateBytes, field: "login.certificate"))))
            default: throw .invalidField("login.credential")
            }
        case 2:
            body = .provision(
                Provision(
                    nodeID: try r.u64(), fqdn: try r.fqdn(field: "provision.fqdn"), virtualIPv4: try r.ipv4(),
                    virtualIPv6: try r.ipv6(),
                    certificate: try r.lengthPrefixed(limit: WireLimits.maxCertificateBytes, field: "provision.certificate"),
                    caCertificate: try r.lengthPrefixed(limit: WireLimits.maxCertificateBytes, field: "provision.caCertificate"),
                    nmsEndpoints: try r.endpoints(field: "provision.nms"), trsEndpoints: try r.endpoints(field: "provision.trs")))
        case 3:
            body = .registration(
                Registration(
                    certificate: try r.lengthPrefixed(limit: WireLimits.maxCertificateBytes, field: "registration.certificate"),
                    localEndpoints: try r.endpoints(field: "registration.local")))
        case 4:
            body = .registrationAck(
                RegistrationAck(
                    observed: try r.endpoint(field: "registrationAck.observed"), keepAliveSeconds: try r.u16(),
                    probeToken: try r.bytes(Datagram.probeTokenSize), probeEndpoints: try r.endpoints(field: "registrationAck.probe"),
                    signingCertificate: try r.lengthPrefixed(limit: WireLimits.maxCertificateBytes, field: "registrationAck.signingCertificate")))
        case 5:
            body = .keepAlive
        case 6:
            body = .keepAliveAck(observed: try r.endpoint(field: "keepAliveAck.observed"))
        case 7:
            let target = try r.fqdn(field: "directionRequest.target")
            body = .directionRequest(target: target, avoidRelay: try r.optionalEndpoint(field: "directionRequest.avoidRelay"))
        case 8:
            let path = try r.u64()
            guard let code = ProcessCode(rawValue: try r.u8()) else { throw .invalidField("routeDirection.processCode") }
            guard let role = RouteDirection.Role(rawValue: try r.u8()) else { throw .invalidField("routeDirection.role") }
            body = .routeDirection(
                RouteDirection(
                    pathID: path, processCode: code, role: role, peerNodeID: try r.u64(),
                    peerFQDN: try r.fqdn(field: "routeDirection.peerFQDN"), peerVirtualIPv4: try r.ipv4(),
                    peerVirtualIPv6: try r.ipv6(), peerStaticKey: try r.bytes(32),
                    peerEndpoints: try r.endpoints(field: "routeDirection.peerEndpoints"),
                    relay: try r.optionalEndpoint(field: "routeDirection.relay"), expires: try r.u64(),
                    authorization: try r.lengthPrefixed(limit: WireLimits.maxAuthorizationBytes, field: "routeDirection.authorization")))
        case 9:
            let path = try r.u64()
            guard let status = StatusCode(rawValue: try r.u8()) else { throw .invalidField("confirmation.status") }
            body = .routeDirectionConfirmation(
                RouteDirectionConfirmation(
                    pathID: path, status: status, localEndpoints: try r.endpoints(field: "confirmation.local")))
        case 10:
            guard let reason = FinalizationReason(rawValue: try r.u8()) else { throw .invalidField("finalization.reason") }
            body = .finalization(reason)
        case 11:
            guard let code = StatusCode(rawValue: try r.u8()) else { throw .invalidField("error.code") }
            body = .error(code: code, message: try r.string(limit: WireLimits.maxMessageBytes, field: "error.message"))
        case 12:
            body = .revocationListRequest(haveNumber: try r.u64())
        case 13:
            body = .revocationList(der: try r.lengthPrefixed(field: "revocationList.der"))
        case 15:
            body = .revocationListPartRequest(number: try r.u64(), offset: try r.u32())
        case 16:
            let number = try r.u64()
            let offset = try r.u32()
            let total = try r.u32()
            let bytes = try r.lengthPrefixed(field: "revocationListPart.bytes")
            guard UInt64(offset) + UInt64(bytes.count) <= UInt64(total) else { throw .invalidField("revocationListPart.offset") }
            body = .revocationListPart(number: number, offset: offset, total: total, bytes: bytes)
        case 14:
            let primary = try r.endpoint(field: "natProbeResult.primary")
            let probe = try r.optionalEndpoint(field: "natProbeResult.probe")
            guard let mapping = NATProbeResult.Mapping(rawValue: try r.u8()) else { throw .invalidField("natProbeResult.mapping") }
            body = .natProbeResult(NATProbeResult(primary: primary, probe: probe, mapping: mapping))
        case 17:
            let path = try r.u64()
            let authorization = try r.lengthPrefixed(limit: WireLimits.maxAuthorizationBytes, field: "relayRequest.authorization")
            let signing = try r.lengthPrefixed(limit: WireLimits.maxCertificateBytes, field: "relayRequest.signingCertificate")
            let count = Int(try r.u8())
            guard count <= RelayRequest.maxIndices else { throw .invalidField("relayRequest.indices") }
            var indices: [UInt32] = []
            for _ in 0..<count { indices.append(try r.u32()) }
            body = .relayRequest(RelayRequest(pathID: path, authorization: authorization, signingCertificate: signing, sessionIndices: indices))
        case 18:
            let path = try r.u64()
            let bound = try r.u8()
            guard bound <= 1 else { throw .invalidField("relayGrant.peerBound") }
            body = .relayGrant(RelayGrant(pathID: path, peerBound: bound == 1, idleSeconds: try r.u16()))
        case 19:
            let peer = try r.fqdn(field: "authorizationRenewal.peer")
            body = .authorizationRenewal(
                peer: peer, authorization: try r.lengthPrefixed(limit: WireLimits.maxAuthorizationBytes, field: "authorizationRenewal.authorization"))
        default:
            throw .unknownType(kind)
        }
        try r.finish()
        return SignalingMessage(transactionID: transaction, body: body)
    }
}
