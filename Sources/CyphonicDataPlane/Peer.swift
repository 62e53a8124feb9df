import CyphonicCore
import CyphonicCrypto
import CyphonicPosix
import Synchronization

/// Counters of one peer, updated lock-free by the pipeline threads.
public final class PeerStats: Sendable {
    public let txPackets = AtomicCounter()
    public let txBytes = AtomicCounter()
    public let rxPackets = AtomicCounter()
    public let rxBytes = AtomicCounter()
    /// Times a finished batch had to wait behind an unfinished earlier one.
    public let reorderWaits = AtomicCounter()
    public let handshakes = AtomicCounter()
    /// Authenticated packets that arrived after a newer one of the same session (late:
    /// they took a slower path, e.g. through the relay around a switch to direct).
    public let rxOutOfOrder = AtomicCounter()
    public init() {}
}

/// How a tunnel reaches its peer.
public enum RouteType: String, Sendable {
    case direct
    case natTraversal = "nat-traversal"
    case relay
}

/// One remote node: identity (static key, FQDN, virtual IPs from its certificate),
/// where it is (endpoint, learned from authenticated packets), its sessions, and its
/// two in-order release queues. Thread ownership: `endpoint`, `current`, `previous`
/// are guarded by the ``PeerTable`` lock; `outbound`/`inbound`/`sending`/`delivering`
/// by the pipeline's release lock; `lastSource` by the inbound claim; stats are
/// atomic. Hence `@unchecked Sendable`.
public final class Peer: @unchecked Sendable {
    public let staticKey: X25519PublicKey
    public let fqdn: String
    public let vip4: UInt32?
    public let vip6: (UInt64, UInt64)?
    public let addresses: [IPAddress]
    public let stats = PeerStats()
    /// Serial and expiry of the certificate the peer last proved (guarded by the
    /// PeerTable lock): a revocation list naming the serial, or the expiry, ends its sessions.
    public internal(set) var serial: UInt64?
    public internal(set) var notAfter: Int64?
    public var route = RouteType.direct

    // Guarded by the PeerTable lock.
    public internal(set) var endpoint: SocketAddress?
    public internal(set) var current: DataSession?
    public internal(set) var previous: DataSession?
    /// An initiator's new session waiting for its first authenticated packet (the
    /// responder may have missed message 3): received on, not yet sent on.
    public internal(set) var next: DataSession?
    public internal(set) var lastHandshake: Double = 0
    /// The relay this peer's tunnel may go through (set by signaling), and since when the
    /// tunnel goes direct: for a second after a move off the relay, the relay's packets
    /// (sent before the peer moved too) do not pull it back. Guarded by the PeerTable lock.
    public internal(set) var relayEndpoint: Endpoint?
    var directSince: Double = -1_000

    // Guarded by the pipeline's release lock.
    var outbound = BatchFIFO()
    var inbound = BatchFIFO()
    /// A thread (worker or fast path) holds the claim to send / deliver this peer's batches.
    var sending = false
    var delivering = false
    /// Queue-delay control per direction; owned by whoever holds that direction's claim.
    var outboundDelay = CoDel()
    var inboundDelay = CoDel()
    /// Source of the last authenticated inbound packet, and the roaming generation it
    /// was checked against; owned by whoever is delivering.
    var lastSource = SocketAddress()
    var lastSourceGeneration: UInt64 = 0
    /// Bumped by every roam that moves the endpoint (the priority lane roams too), so
    /// the batch release notices a move it did not make and checks its source again.
    let roamGeneration = Atomic<UInt64>(0)
    private let finalizedFlag = Atomic<Bool>(false)
    /// Inbound batches of this peer in flight (staged, queued or being released).
    let inboundBatches = Atomic<Int>(0)

    /// The peer announced (in an authenticated control capsule) that it shuts down.
    public var finalized: Bool { finalizedFlag.load(ordering: .relaxed) }
    func markFinalized() { finalizedFlag.store(true, ordering: .relaxed) }

    public init(
        staticKey: X25519PublicKey, fqdn: String, addresses: [IPAddress], endpoint: Endpoint?,
        serial: UInt64? = nil, notAfter: Int64? = nil
    ) {
        self.staticKey = staticKey
        self.serial = serial
        self.notAfter = notAfter
        self.fqdn = fqdn
        self.addresses = addresses
        vip4 = addresses.first { $0.isIPv4 }.map { Peer.v4Key($0.bytes) }
        vip6 = addresses.first { !$0.isIPv4 }.map { Peer.v6Key($0.bytes) }
        self.endpoint = endpoint.map(SocketAddress.init)
    }

    @inline(__always)
    static func v4Key(_ b: [UInt8]) -> UInt32 { UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3]) }

    static func v6Key(_ b: [UInt8]) -> (UInt64, UInt64) {
        var hi: UInt64 = 0
        var lo: UInt64 = 0
        for i in 0..<8 { hi = hi << 8 | UInt64(b[i]) }
        for i in 8..<16 { lo = lo << 8 | UInt64(b[i]) }
        return (hi, lo)
    }
}

/// A fixed-capacity ring of batches (a peer's in-order release queue). No allocation
/// after creation.
struct BatchFIFO {
    static let capacity = 512
    private var ring = [PacketBatch?](repeating: nil, count: BatchFIFO.capacity)
    private var head = 0
    private(set) var count = 0

    var first: PacketBatch? { count == 0 ? nil : ring[head] }

    mutating func append(_ b: PacketBatch) -> Bool {
        guard count < ring.count else { return false }
        ring[(head + count) & (ring.count - 1)] = b
        count += 1
        return true
    }

    mutating func removeFirst() -> PacketBatch? {
        guard count > 0 else { return nil }
        let b = ring[head]
        ring[head] = nil
        head = (head + 1) & (ring.count - 1)
        count -= 1
        return b
    }
}
