import Synchronization

/// Why the data plane dropped a packet (DESIGN §7: drops by reason).
public enum DropReason: Int, CaseIterable, Sendable {
    case badHeader, unknownSession, authenticationFailed, replay, badInnerSource, queueFull, noRoute, tooLarge, controlQueueFull,
        peerQueueFull, queueDelay

    public var label: String {
        switch self {
        case .badHeader: return "bad_header"
        case .unknownSession: return "unknown_session"
        case .authenticationFailed: return "authentication_failed"
        case .replay: return "replay"
        case .badInnerSource: return "bad_inner_source"
        case .queueFull: return "queue_full"
        case .noRoute: return "no_route"
        case .tooLarge: return "too_large"
        case .controlQueueFull: return "control_queue_full"
        case .peerQueueFull: return "peer_queue_full"
        case .queueDelay: return "queue_delay"
        }
    }
}

/// A relaxed atomic counter in a class, so counters can live in arrays.
public final class AtomicCounter: Sendable {
    private let value = Atomic<UInt64>(0)
    public init() {}
    @inline(__always) public func add(_ n: UInt64 = 1) { value.wrappingAdd(n, ordering: .relaxed) }
    public var load: UInt64 { value.load(ordering: .relaxed) }
}

/// Node-wide data-plane counters, lock-free.
public final class DataPlaneStats: Sendable {
    private let dropCounters: [AtomicCounter] = DropReason.allCases.map { _ in AtomicCounter() }
    public let reorderWaits = AtomicCounter()
    /// UDP I/O: send system calls and the datagrams they carried (GSO makes the ratio
    /// large); receive messages and the datagrams in them (GRO makes that ratio large).
    public let udpSendCalls = AtomicCounter()
    public let udpDatagramsSent = AtomicCounter()
    public let udpMessagesReceived = AtomicCounter()
    public let udpDatagramsReceived = AtomicCounter()
    /// Received GRO runs handed on as batches where they landed, without a copy
    /// (the multi-threaded pipeline's receiver; Pipeline+Adoption.swift).
    public let udpRunsNotCopied = AtomicCounter()
    /// GSO sends the kernel refused (resent as plain datagrams; see UDPSegmentSender).
    public let udpGSORefused = AtomicCounter()
    /// TUN writes and the packets they carried (coalesced TCP runs make the ratio large).
    public let tunWrites = AtomicCounter()
    public let tunPacketsWritten = AtomicCounter()
    /// Packets that took the priority lane (ACKs, pings): sent ahead of their peer's
    /// queued batches, and delivered to the TUN ahead of them (see ``PriorityLane``).
    public let prioritySent = AtomicCounter()
    public let priorityDelivered = AtomicCounter()

    public init() {}

    @inline(__always)
    public func drop(_ reason: DropReason, _ n: UInt64 = 1) { dropCounters[reason.rawValue].add(n) }

    public func drops(_ reason: DropReason) -> UInt64 { dropCounters[reason.rawValue].load }
}
