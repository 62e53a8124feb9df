import CyphonicCore
import CyphonicSignaling
import CyphonicWire

/// What the NMS keeps of a registered node: its certificate identity, its network as
/// observed (mapped address and NAT behaviour per family, local addresses), its
/// signaling session, and when it was last heard from.
public struct NodeRecord: Sendable {
    public var nodeID: UInt64
    /// The node's name (its certificate's CN, checked when it registered).
    public var name: FQDN
    public var fqdn: String { name.value }
    public var group: String?
    /// The X25519 static key its certificate binds (and the handshake proved); held
    /// inline (no allocation per node).
    public var staticKey: [UInt8] {
        get { FixedBytes.array(staticKeyStorage) }
        set { staticKeyStorage = FixedBytes.simd32(newValue) }
    }
    var staticKeyStorage: SIMD32<UInt8>
    public var virtualIPv4: IPAddress
    public var virtualIPv6: IPAddress
    public var serial: UInt64
    public var notAfter: Int64
    public var network: NodeNetwork
    /// Where its signaling comes from (its tunnel socket, as mapped), and over which of
    /// our listening sockets: answers go back the same way.
    public var signalingEndpoint: Endpoint
    public var socketIndex: Int
    public var session: CompactSignalingSession
    /// The token its NAT probes carry.
    public var probeToken: [UInt8] {
        get { FixedBytes.array(probeTokenStorage) }
        set { probeTokenStorage = FixedBytes.simd16(newValue) }
    }
    var probeTokenStorage: SIMD16<UInt8>
    /// What the probe port saw, per family (the signaling port's view is in `network`).
    public var probeSeen4: Endpoint?
    public var probeSeen6: Endpoint?
    /// What a probe to the signaling port saw, for the family it did not register on.
    public var signalingSeen4: Endpoint?
    public var signalingSeen6: Endpoint?
    public var registeredAt: Int64
    public var lastSeen: Int64

    public init(
        nodeID: UInt64, name: FQDN, group: String?, staticKey: [UInt8], virtualIPv4: IPAddress, virtualIPv6: IPAddress,
        serial: UInt64, notAfter: Int64, network: NodeNetwork, signalingEndpoint: Endpoint, socketIndex: Int,
        session: CompactSignalingSession, probeToken: [UInt8], now: Int64
    ) {
        self.nodeID = nodeID
        self.name = name
        self.group = group
        staticKeyStorage = FixedBytes.simd32(staticKey)
        self.virtualIPv4 = virtualIPv4
        self.virtualIPv6 = virtualIPv6
        self.serial = serial
        self.notAfter = notAfter
        self.network = network
        self.signalingEndpoint = signalingEndpoint
        self.socketIndex = socketIndex
        self.session = session
        probeTokenStorage = FixedBytes.simd16(probeToken)
        registeredAt = now
        lastSeen = now
    }
}

/// Where the NMS keeps registrations: an interface, so a shared store can replace the
/// in-memory one when several NMS replicas serve one overlay (issue 15). Every method
/// is atomic; implementations are thread-safe.
public protocol NodeRegistry: Sendable {
    /// Stores `record`, replacing the node's previous registration (same FQDN) and
    /// returning it. Returns nil and stores nothing when the registry is full and the
    /// node was not registered before (`full` true).
    func register(_ record: NodeRecord) -> (replaced: NodeRecord?, full: Bool)
    /// The registration of `fqdn`.
    func node(named fqdn: String) -> NodeRecord?
    /// Runs `body` on the record whose session has local index `index` (under the
    /// registry's lock: keep it short, no crypto, no I/O).
    func withNode<R>(sessionIndex index: UInt32, _ body: (inout NodeRecord) -> R) -> R?
    /// Runs `body` on the record of `fqdn` (same rules).
    func withNode<R>(named fqdn: String, _ body: (inout NodeRecord) -> R) -> R?
    /// The node a NAT probe token belongs to.
    func node(probeToken: [UInt8]) -> String?
    /// Removes the registration of `fqdn` if its session is `sessionIndex` (nil: any).
    @discardableResult func remove(named fqdn: String, sessionIndex: UInt32?) -> NodeRecord?
    /// Removes every node last seen before `cutoff` or matching `revoked`; returns them.
    func expire(lastSeenBefore cutoff: Int64, revoked: (NodeRecord) -> Bool) -> [NodeRecord]
    /// The same for the next `limit` records only (round robin over calls), so the
    /// once-a-second sweep never holds the lock over a million records at once.
    func expireSome(lastSeenBefore cutoff: Int64, limit: Int, revoked: (NodeRecord) -> Bool) -> [NodeRecord]
    var count: Int { get }
    /// Every registration (for status; a copy).
    func all() -> [NodeRecord]
}
