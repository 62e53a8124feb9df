import CyphonicCore

/// Node → AS: log in with a one-time enrolment token (first login) or with the node's
/// certificate (later logins). The node's X25519 static key is the one it proved in the
/// Noise handshake, so it is not repeated here.
public struct Login: Equatable, Sendable {
    public enum Credential: Equatable, Sendable {
        case token(String)
        case certificate(der: [UInt8])
    }
    public var name: String
    public var credential: Credential

    public init(name: String, credential: Credential) {
        self.name = name
        self.credential = credential
    }
}

/// AS → node: everything a node needs to join the overlay.
public struct Provision: Equatable, Sendable {
    public var nodeID: UInt64
    public var fqdn: FQDN
    public var virtualIPv4: IPAddress
    public var virtualIPv6: IPAddress
    public var certificate: [UInt8]
    public var caCertificate: [UInt8]
    public var nmsEndpoints: [Endpoint]
    public var trsEndpoints: [Endpoint]

    public init(
        nodeID: UInt64, fqdn: FQDN, virtualIPv4: IPAddress, virtualIPv6: IPAddress, certificate: [UInt8],
        caCertificate: [UInt8], nmsEndpoints: [Endpoint], trsEndpoints: [Endpoint]
    ) {
        self.nodeID = nodeID
        self.fqdn = fqdn
        self.virtualIPv4 = virtualIPv4
        self.virtualIPv6 = virtualIPv6
        self.certificate = certificate
        self.caCertificate = caCertificate
        self.nmsEndpoints = nmsEndpoints
        self.trsEndpoints = trsEndpoints
    }
}

/// Node → NMS, in handshake message 3 (from the node's tunnel socket): the node's
/// certificate (its static key must be the one the handshake proved) and the addresses
/// its socket has on its own interfaces (for peers at the same site).
public struct Registration: Equatable, Sendable {
    public var certificate: [UInt8]
    public var localEndpoints: [Endpoint]

    public init(certificate: [UInt8], localEndpoints: [Endpoint]) {
        self.certificate = certificate
        self.localEndpoints = localEndpoints
    }
}

/// NMS → node: the address NMS saw, the keepalive period, how to probe NAT behaviour,
/// and the certificate of the NMS signing key (Ed25519, role nms, issued by the CA) that
/// signs route authorizations, so the node can check them offline.
public struct RegistrationAck: Equatable, Sendable {
    public var observed: Endpoint
    public var keepAliveSeconds: UInt16
    public var probeToken: [UInt8]
    public var probeEndpoints: [Endpoint]
    public var signingCertificate: [UInt8]

    public init(
        observed: Endpoint, keepAliveSeconds: UInt16, probeToken: [UInt8], probeEndpoints: [Endpoint], signingCertificate: [UInt8] = []
    ) {
        self.observed = observed
        self.keepAliveSeconds = keepAliveSeconds
        self.probeToken = probeToken
        self.probeEndpoints = probeEndpoints
        self.signingCertificate = signingCertificate
    }
}

/// How a tunnel is to be built (DESIGN §5).
public enum ProcessCode: UInt8, Sendable, CaseIterable {
    case direct = 1
    case natTraversal = 2
    case relay = 3
}

/// NMS → node: build a tunnel to the named peer this way. Carries no data key.
public struct RouteDirection: Equatable, Sendable {
    public enum Role: UInt8, Sendable {
        case initiator = 1
        case responder = 2
    }
    public var pathID: UInt64
    public var processCode: ProcessCode
    public var role: Role
    public var peerNodeID: UInt64
    public var peerFQDN: FQDN
    public var peerVirtualIPv4: IPAddress
    public var peerVirtualIPv6: IPAddress
    /// The peer's X25519 static key (public), as its certificate states.
    public var peerStaticKey: [UInt8]
    /// The peer's mapped and local endpoints, most preferred first.
    public var peerEndpoints: [Endpoint]
    public var relay: Endpoint?
    /// Unix seconds after which the direction is void.
    public var expires: UInt64
    /// NMS-signed authorization the peer and TRS can check.
    public var authorization: [UInt8]

    public init(
        pathID: UInt64, processCode: ProcessCode, role: Role, peerNodeID: UInt64, peerFQDN: FQDN,
        peerVirtualIPv4: IPAddress, peerVirtualIPv6: IPAddress, peerStaticKey: [UInt8], peerEndpoints: [Endpoint],
        relay: Endpoint?, expires: UInt64, authorization: [UInt8]
    ) {
        self.pathID = pathID
        self.processCode = processCode
        self.role = role
        self.peerNodeID = peerNodeID
        self.peerFQDN = peerFQDN
        self.peerVirtualIPv4 = peerVirtualIPv4
        self.peerVirtualIPv6 = peerVirtualIPv6
        self.peerStaticKey = peerStaticKey
        self.peerEndpoints = peerEndpoints
        self.relay = relay
        self.expires = expires
        self.authorization = authorization
    }
}

/// Responder → NMS: accept (or refuse) a route direction, with current local endpoints.
public struct RouteDirectionConfirmation: Equatable, Sendable {
    public var pathID: UInt64
    public var status: StatusCode
    public var localEndpoints: [Endpoint]

    public init(pathID: UInt64, status: StatusCode, localEndpoints: [Endpoint]) {
        self.pathID = pathID
        self.status = status
        self.localEndpoints = localEndpoints
    }
}

/// NMS → node: what the probe port saw, and the NAT mapping behaviour NMS concluded.
public struct NATProbeResult: Equatable, Sendable {
    public enum Mapping: UInt8, Sendable, CaseIterable {
        case none = 0  // no NAT: the observed address is the node's own
        case endpointIndependent = 1
        case endpointDependent = 2
        case unknown = 3
    }
    public var primary: Endpoint
    public var probe: Endpoint?
    public var mapping: Mapping

    public init(primary: Endpoint, probe: Endpoint?, mapping: Mapping) {
        self.primary = primary
        self.probe = probe
        self.mapping = mapping
    }
}

/// Why a session ends (CYPHONIC Finalization).
public enum FinalizationReason: UInt8, Sendable, CaseIterable {
    case shutdown = 1
    case idle = 2
    case revoked = 3
    case replaced = 4
}

/// Node → TRS, inside the node's signaling session with the relay: relay path `pathID`
/// for me. The relay checks `authorization` offline (signed by an NMS signing key whose
/// `signingCertificate` chains to the CA with role nms; not expired; code relay or NAT
/// traversal; naming the key the node proved in its handshake) and binds this end of the
/// path to the address the request came from. `sessionIndices` are the node's own
/// receive indices of its tunnel sessions on the path (at most ``maxIndices``), so a
/// restarted relay can match capsules of tunnels that were up before it restarted.
public struct RelayRequest: Equatable, Sendable {
    public static let maxIndices = 4
    public var pathID: UInt64
    public var authorization: [UInt8]
    public var signingCertificate: [UInt8]
    public var sessionIndices: [UInt32]

    public init(pathID: UInt64, authorization: [UInt8], signingCertificate: [UInt8], sessionIndices: [UInt32] = []) {
        self.pathID = pathID
        self.authorization = authorization
        self.signingCertificate = signingCertificate
        self.sessionIndices = sessionIndices
    }
}

/// TRS → node: path `pathID` is relayed for this end; `peerBound` once the other end is
/// bound as well (sent again to the first end when the second binds). A relay session
/// with no packet for `idleSeconds` ends.
public struct RelayGrant: Equatable, Sendable {
    public var pathID: UInt64
    public var peerBound: Bool
    public var idleSeconds: UInt16

    public init(pathID: UInt64, peerBound: Bool, idleSeconds: UInt16) {
        self.pathID = pathID
        self.peerBound = peerBound
        self.idleSeconds = idleSeconds
    }
}
