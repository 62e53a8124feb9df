import CyphonicCore
import CyphonicDataPlane
import CyphonicPosix
import Foundation

/// What `cyphonic-node status` prints (JSON over the control socket).
public struct NodeStatus: Codable, Sendable {
    public struct PeerStatus: Codable, Sendable {
        public var fqdn: String
        public var addresses: [String]
        public var endpoint: String?
        /// How the tunnel was made: static (configured), direct, local, punched, relay
        /// (directed by the NMS), or accepted (the peer connected without a direction).
        public var route: String
        /// Why the tunnel goes that way now (directed tunnels), e.g. "relayed: peer behind
        /// an endpoint-dependent (symmetric) NAT, retrying direct every 30 s".
        public var routeReason: String?
        /// The NMS path id of a directed tunnel.
        public var pathID: UInt64?
        /// When its NMS authorization ends (Unix seconds; renewals move it on for a path
        /// that uses the relay or keeps it as a fallback).
        public var pathAuthorizationExpires: UInt64? = nil
        /// The serial of the certificate the peer proved last.
        public var certificateSerial: UInt64?
        /// Handshakes started since its last session that got no answer (a configured
        /// peer is listed from start-up, before it ever answers), and when the last was.
        public var initiationsUnanswered: Int?
        public var lastInitiationSecondsAgo: Double?
        public var handshakeAgeSeconds: Double?
        public var txPackets: UInt64
        public var txBytes: UInt64
        public var rxPackets: UInt64
        public var rxBytes: UInt64
        public var reorderWaits: UInt64
        public var handshakes: UInt64
        /// Packets that arrived after a newer one (a slower path around a relay/direct switch).
        public var rxOutOfOrder: UInt64 = 0
    }
    public var fqdn: String
    public var addresses: [String]
    public var pipeline: String
    public var threads: Int
    public var osThreads: Int
    public var peers: [PeerStatus]
    public var drops: [String: UInt64]
    public var reorderWaits: UInt64
    public var handshakesCompleted: UInt64
    public var handshakesRefused: UInt64
    public var badControlDatagrams: UInt64
    /// UDP I/O of the data plane: how many datagrams each system call carried (GSO on
    /// send, GRO on receive; ratios well above 1 mean the offloads work).
    public var udp: UDPStatus = UDPStatus()
    /// TUN writes of the data plane and the packets they carried (coalesced TCP runs).
    public var tun: TunStatus = TunStatus()
    /// Packets that overtook their peer's queued bulk (multi pipeline's priority lane).
    public var priorityLane: PriorityLaneStatus = PriorityLaneStatus()
    /// The defences at work (docs/operations.md, "Security figures").
    public var security: SecurityStatus = SecurityStatus()
    /// Closed tunnels that traffic reopens (docs/operations.md, "Name lookups").
    public var reopen: ReopenStatus = ReopenStatus()
    /// NMS registration (nil without an NMS).
    public var signaling: SignalingStatus?
    /// The CYPHONIC resolver (nil when turned off).
    public var resolver: ResolverStatus?
    /// Resident memory, CPU time and malloc's figures (allocated vs held from the OS).
    public var process: ProcessResources?

    public struct SecurityStatus: Codable, Sendable {
        /// Cookie replies sent to unverified sources (a flood shows here, not in CPU).
        public var cookiesSent: UInt64 = 0
        /// Initiations dropped by the per-source or total handshake limits.
        public var handshakesThrottled: UInt64 = 0
        /// Whether every source must show a cookie right now.
        public var underLoad = false
        /// Handshakes refused because another peer with a session owns the virtual IPs.
        public var addressConflicts: UInt64 = 0
        /// Peers whose sessions ended on revocation or expiry.
        public var peersRevoked: UInt64 = 0
        /// Handshake message 3 resent because the responder had not confirmed it.
        public var message3Retransmits: UInt64 = 0
        /// The revocation list in force (its number), and seconds since the last fetch.
        public var revocationList: UInt64?
        public var revocationListAgeSeconds: Double?
    }

    public struct ReopenStatus: Codable, Sendable {
        /// Whether closed tunnels are kept reopenable (an NMS, `reopenSeconds` > 0).
        public var enabled = false
        /// Virtual IPs of closed tunnels a packet for them would reopen.
        public var parkedAddresses = 0
        /// Tunnels asked for again because of such a packet, and asks that ended without one.
        public var asked: UInt64 = 0
        public var failed: UInt64 = 0
    }

    public struct PriorityLaneStatus: Codable, Sendable {
        public var sent: UInt64 = 0
        public var delivered: UInt64 = 0
    }

    public struct TunStatus: Codable, Sendable {
        public var offload = false
        public var writes: UInt64 = 0
        public var packetsWritten: UInt64 = 0
    }

    public struct UDPStatus: Codable, Sendable {
        /// GSO configured, and how often the kernel refused a GSO send (path MTU too
        /// small, no checksum offload): those runs went out as plain datagrams.
        public var gso = false
        public var gsoRefused: UInt64 = 0
        public var gro = false
        public var sendCalls: UInt64 = 0
        public var datagramsSent: UInt64 = 0
        public var messagesReceived: UInt64 = 0
        public var datagramsReceived: UInt64 = 0
        /// Received runs handed to the crypto workers where they landed (no copy).
        public var runsNotCopied: UInt64 = 0
    }
}

extension NodeStatus {
    /// What each drop counter means, for `status` (a non-zero counter is explained).
    public static let dropExplanations: [String: String] = [
        "bad_header": "datagrams that are not CYPHONIC (wrong version, type or length): scans or another protocol on the port",
        "unknown_session": "capsules for a session we do not have: a peer that restarted, or one whose session we ended",
        "authentication_failed": "capsules whose AEAD tag did not check: corrupted or forged",
        "replay": "capsules seen before (or too old for the replay window)",
        "bad_inner_source": "packets from a peer with a source address its certificate does not name",
        "queue_full": "packets dropped because the pipeline's batches were all in use (overload)",
        "no_route":
            "packets from this host for a virtual IP no tunnel leads to (the tunnel is not up; one to a closed tunnel's address asks for it again, see reopen)",
        "too_large": "packets larger than the tunnel can carry",
        "control_queue_full": "handshake datagrams dropped while the control thread was busy (a flood)",
        "peer_queue_full": "a peer beyond its fair share of inbound batches",
        "queue_delay": "CoDel: a peer's packets queued over 1 ms for 20 ms",
    ]
}
