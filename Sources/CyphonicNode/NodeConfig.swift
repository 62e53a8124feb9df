import CyphonicCore
import CyphonicDataPlane
import CyphonicPosix
import CyphonicService
import Foundation

/// The node daemon's configuration file (JSON). Every key is documented in
/// docs/operations.md and shown in examples/node.json. Paths may be relative to the
/// file. Errors name the offending key.
public struct NodeConfig: Codable, Sendable {
    public struct Tun: Codable, Sendable {
        /// Interface name (≤ 15 bytes).
        public var name: String = "cyph0"
        /// Inner MTU; 1420 leaves room for all overheads on a 1500-byte underlay (docs/protocol.md §5).
        public var mtu: Int = 1420
        /// Clamp TCP MSS on the interface with nftables (for forwarded traffic).
        public var mssClamp: Bool = true
        /// Kernel queue of packets waiting for the daemon to read them. 0 = automatic
        /// (``NodeConfig/effectiveTxQueueLength``): with offload 64 for the multi-threaded
        /// pipeline, 8 for the single thread; 128 without offload.
        public var txQueueLength: Int = 0

        /// TUN offload (virtio-net header + TSO): one read returns up to 64 KiB of TCP,
        /// which the daemon segments itself. Far fewer system calls per byte.
        public var offload: Bool = true

        public init() {}

        /// Missing keys keep their defaults; unknown keys are refused.
        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decodeIfPresent(String.self, forKey: .name) ?? name
            mtu = try c.decodeIfPresent(Int.self, forKey: .mtu) ?? mtu
            mssClamp = try c.decodeIfPresent(Bool.self, forKey: .mssClamp) ?? mssClamp
            txQueueLength = try c.decodeIfPresent(Int.self, forKey: .txQueueLength) ?? txQueueLength
            offload = try c.decodeIfPresent(Bool.self, forKey: .offload) ?? offload
        }
    }

    /// The CYPHONIC resolver: a DNS server for the node's own applications (DESIGN §2).
    public struct Resolver: Codable, Sendable {
        /// Off: no DNS server (names resolve only through the system's resolver).
        public var enabled = true
        /// UDP and TCP endpoints it serves on.
        public var listen: [String] = ["127.0.0.53:53"]
        /// Resolvers for names outside the overlay domain (HOST:PORT); none: REFUSED.
        public var upstream: [String] = []
        /// The overlay domain; default: our FQDN without its first label.
        public var domain: String?
        /// Seconds a query for an overlay name waits for its tunnel (then SERVFAIL).
        public var timeoutSeconds: Double = 3
        /// TTL of overlay answers, seconds.
        public var ttlSeconds: Int = 30
        /// TCP connections served at once, at most.
        public var maxTCPConnections: Int = 64

        public init() {}

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? enabled
            listen = try c.decodeIfPresent([String].self, forKey: .listen) ?? listen
            upstream = try c.decodeIfPresent([String].self, forKey: .upstream) ?? upstream
            domain = try c.decodeIfPresent(String.self, forKey: .domain)
            timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? timeoutSeconds
            ttlSeconds = try c.decodeIfPresent(Int.self, forKey: .ttlSeconds) ?? ttlSeconds
            maxTCPConnections = try c.decodeIfPresent(Int.self, forKey: .maxTCPConnections) ?? maxTCPConnections
        }
    }

    /// First enrolment by the daemon itself (instead of `cyphonic-node enroll`): used when
    /// `stateDir` holds no enrolment yet.
    public struct Enrol: Codable, Sendable {
        /// The AS, HOST:PORT.
        public var asEndpoint: String
        /// The CA certificate (PEM) to pin.
        public var ca: String
        /// File with the one-time token `as-server node add` printed.
        public var tokenFile: String

        /// Unknown keys are refused, like everywhere in the config.
        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            asEndpoint = try c.decode(String.self, forKey: .asEndpoint)
            ca = try c.decode(String.self, forKey: .ca)
            tokenFile = try c.decode(String.self, forKey: .tokenFile)
        }
    }

    public struct PeerEntry: Codable, Sendable {
        /// The peer's FQDN; its certificate must name it.
        public var fqdn: String
        /// Where to reach it first (HOST:PORT or [V6]:PORT); later learned from its packets.
        public var endpoint: String

        public init(fqdn: String, endpoint: String) {
            self.fqdn = fqdn
            self.endpoint = endpoint
        }

        /// Unknown keys are refused, like everywhere in the config.
        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            fqdn = try c.decode(String.self, forKey: .fqdn)
            endpoint = try c.decode(String.self, forKey: .endpoint)
        }
    }

    /// Directory written by `cyphonic-node enroll` (node.key, node.pem, ca.pem); the
    /// three paths below default to files in it.
    public var stateDir: String?
    public var key: String?
    public var certificate: String?
    public var ca: String?
    /// Optional CA-signed revocation list (PEM); peers whose certificates it lists are refused.
    public var crl: String?
    /// UDP endpoint for signaling and data ("[::]:30000" receives IPv4 and IPv6).
    public var listen: String = "[::]:30000"
    public var tun = Tun()
    /// Overlay prefixes: the TUN addresses get these prefix lengths, which routes them.
    public var overlay4: String = "198.18.0.0/16"
    public var overlay6: String = "2001:db8:c0ff:ee::/64"
    /// "multi" (the paper's pipeline) or "single" (the conventional design).
    public var pipeline: String = "multi"

    /// The TUN queue length in effect (resolves `tun.txQueueLength` 0). With offload the
    /// entries are super-packets of up to 64 KiB; a short queue keeps a bulk sender's
    /// pings from waiting behind them. But a hub's responder queues ACKs and echo
    /// replies to many peers there, and the multi-threaded pipeline's TUN reader is a
    /// thread of its own that must wait for a core: at 10 peers 8 entries dropped
    /// 6 206 packets per load (4 % ping loss), 16 dropped 1 367, 32 dropped 165, 64 none
    /// (`make bench-hub`). The single thread reads the TUN between every 64 received
    /// datagrams, so 8 drop nothing there and keep its two-node RTT under load low
    /// (64 raised it from 1.3 to 2.1 ms in `make bench-tunnel`). Without offload,
    /// 8 or 32 single packets starve TCP (0.13 / 0.52 Gbit/s against 1.8 with 128).
    public var effectiveTxQueueLength: Int {
        if tun.txQueueLength > 0 { return tun.txQueueLength }
        if !tun.offload { return 128 }
        return pipeline == "single" ? 8 : 64
    }
    /// Crypto workers for "multi"; 0 means one per logical CPU.
    public var workers: Int = 0
    /// Who reads the TUN in "multi": "workers" (the workers take turns reading and each
    /// seals what it read: no packet crosses to another core to be sealed) or "thread" (a
    /// TUN reader thread hands batches to the workers, the paper's Fig. 3 as drawn).
    /// `make bench-pipeline`: 1.9 x single with 2 workers against 1.4 x for "thread";
    /// `make bench-hub` at N = 10: lower RTT under load and CPU per GB (docs/performance.md).
    public var tunReading: String = "workers"
    /// Batches in flight, at most (bounds memory and queueing delay): 24 × 64 packets.
    /// At a hub of 10 initiators 16 cut RTT under load a little but lost fairness, 32
    /// added ~0.6 ms of queueing (`make bench-hub`).
    public var poolSize: Int = 24
    /// UDP offload: GSO on send (runs of datagrams to one peer leave in one system call)
    /// and GRO on receive. Falls back to plain datagrams where the kernel refuses.
    public var udpOffload: Bool = true
    /// Receive buffer of the UDP socket in bytes (0: the kernel's default). With GRO one
    /// queued message holds up to 64 KiB, so the default (~208 KiB) overflows at once
    /// under load; 1 MiB holds a few milliseconds of traffic.
    public var udpReceiveBuffer: Int = 1_048_576
    /// Prometheus endpoint (HTTP GET /metrics); "" disables it.
    public var metrics: String = "127.0.0.1:9452"
    /// Unix socket for `cyphonic-node status`.
    public var control: String = "/run/cyphonic-node.sock"
    /// Seconds between keepalives on an otherwise idle tunnel (holds NAT bindings).
    public var keepaliveSeconds: Double = 10
    /// Seconds without any packet from a peer before its session is torn down.
    public var idleTimeoutSeconds: Double = 180
    /// Seconds after which the initiator of a session makes a new one (WireGuard's 120 s);
    /// the previous session stays valid for receiving until it is 180 s old.
    public var rekeyAfterSeconds: Double = DataSessionDefaults.rekeyAfterSeconds
    /// Accept handshakes from any node with a valid certificate of our CA (static mode
    /// responder). Unset: yes without an NMS; with one, only from configured peers, known
    /// peers, and peers the NMS directed to us (an unexpired authorization naming their
    /// key), so its group policy holds on the node too.
    public var acceptUnknownPeers: Bool?
    /// Static peers to connect to at start (DESIGN: static mode, like WireGuard peers).
    public var peers: [PeerEntry] = []
    public var logLevel: String = "info"
    /// The control socket a daemon with TUN `tun` uses unless configured:
    /// `/run/cyphonic-node.sock` for `cyph0`, `/run/cyphonic-node-NAME.sock` for others.
    public static func defaultControl(tun: String) -> String {
        tun == "cyph0" ? "/run/cyphonic-node.sock" : "/run/cyphonic-node-\(tun).sock"
    }

    /// The metrics endpoint unless configured: 127.0.0.1:9452 for `cyph0`; for another
    /// TUN name a port of its own, 19000 + a number made from the name (0…999).
    public static func defaultMetrics(tun: String) -> String {
        guard tun != "cyph0" else { return "127.0.0.1:9452" }
        let n = tun.utf8.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 } % 1000
        return "127.0.0.1:\(19_000 + n)"
    }

    /// The levels `logLevel` takes (swift-log's).
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    /// The AS (HOST:PORT) to fetch the revocation list from; unset: the one recorded at
    /// enrolment in stateDir/node.json; "" turns fetching off (then only `crl` applies).
    public var asEndpoint: String?
    /// Seconds between revocation-list fetches: a newly revoked peer's sessions end
    /// within this time (and its handshakes are refused from then on).
    public var crlRefreshSeconds: Double = 60
    /// Handshake initiations per second (of any kind) above which every source must
    /// first prove its address with a cookie (docs/protocol.md §4).
    public var handshakeLoadThreshold: Int = 40
    /// Handshakes one source (IPv4 address, IPv6 /64) may start per second (burst 4x).
    public var handshakesPerSourcePerSecond: Double = 4
    /// Handshakes per second in total, at most.
    public var handshakesPerSecond: Double = 500

    /// NMS endpoints (HOST:PORT); unset: those the AS provisioned (stateDir/node.json).
    public var nms: [String]?
    /// Log in to the AS at start with the stored certificate (a renewed one is saved and
    /// used); an unreachable AS only delays the start by about a second.
    public var login = true
    /// Seconds between logins while running, which pick up a certificate the AS renews.
    public var loginRefreshSeconds: Double = 21_600
    /// Enrol at start when stateDir holds no enrolment yet.
    public var enroll: Enrol?
    public var resolver = Resolver()
    /// Seconds a directed hole punch may take before the tunnel goes through the relay
    /// the NMS named (and keeps trying direct in the background).
    public var punchTimeoutSeconds: Double = 2
    /// Seconds between attempts to move a relayed tunnel onto a direct path
    /// (HolePunchingForOptimization).
    public var directRetrySeconds: Double = 30
    /// Seconds a tunnel the node closed (the peer fell silent or said goodbye; not a
    /// configured peer) stays reopenable: a packet from this host for the peer's virtual
    /// IP asks the NMS for the tunnel again, at most every 5 s, as a lookup of its name
    /// would. 0 turns it off (then only a lookup reopens it). Needs an NMS.
    public var reopenSeconds: Double = 3600

    public init() {}

    /// Missing keys keep their defaults; unknown keys are refused (a typo is an error).
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stateDir = try c.decodeIfPresent(String.self, forKey: .stateDir)
        key = try c.decodeIfPresent(String.self, forKey: .key)
        certificate = try c.decodeIfPresent(String.self, forKey: .certificate)
        ca = try c.decodeIfPresent(String.self, forKey: .ca)
        crl = try c.decodeIfPresent(String.self, forKey: .crl)
        listen = try c.decodeIfPresent(String.self, forKey: .listen) ?? listen
        tun = try c.decodeIfPresent(Tun.self, forKey: .tun) ?? tun
        overlay4 = try c.decodeIfPresent(String.self, forKey: .overlay4) ?? overlay4
        overlay6 = try c.decodeIfPresent(String.self, forKey: .overlay6) ?? overlay6
        pipeline = try c.decodeIfPresent(String.self, forKey: .pipeline) ?? pipeline
        workers = try c.decodeIfPresent(Int.self, forKey: .workers) ?? workers
        tunReading = try c.decodeIfPresent(String.self, forKey: .tunReading) ?? tunReading
        poolSize = try c.decodeIfPresent(Int.self, forKey: .poolSize) ?? poolSize
        udpOffload = try c.decodeIfPresent(Bool.self, forKey: .udpOffload) ?? udpOffload
        udpReceiveBuffer = try c.decodeIfPresent(Int.self, forKey: .udpReceiveBuffer) ?? udpReceiveBuffer
        // Per instance: a second daemon (another TUN name) gets its own socket and port.
        metrics = try c.decodeIfPresent(String.self, forKey: .metrics) ?? Self.defaultMetrics(tun: tun.name)
        control = try c.decodeIfPresent(String.self, forKey: .control) ?? Self.defaultControl(tun: tun.name)
        keepaliveSeconds = try c.decodeIfPresent(Double.self, forKey: .keepaliveSeconds) ?? keepaliveSeconds
        idleTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .idleTimeoutSeconds) ?? idleTimeoutSeconds
        rekeyAfterSeconds = try c.decodeIfPresent(Double.self, forKey: .rekeyAfterSeconds) ?? rekeyAfterSeconds
        acceptUnknownPeers = try c.decodeIfPresent(Bool.self, forKey: .acceptUnknownPeers)
        peers = try c.decodeIfPresent([PeerEntry].self, forKey: .peers) ?? peers
        logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel) ?? logLevel
        asEndpoint = try c.decodeIfPresent(String.self, forKey: .asEndpoint)
        crlRefreshSeconds = try c.decodeIfPresent(Double.self, forKey: .crlRefreshSeconds) ?? crlRefreshSeconds
        handshakeLoadThreshold = try c.decodeIfPresent(Int.self, forKey: .handshakeLoadThreshold) ?? handshakeLoadThreshold
        handshakesPerSourcePerSecond =
            try c.decodeIfPresent(Double.self, forKey: .handshakesPerSourcePerSecond)
            ?? handshakesPerSourcePerSecond
        handshakesPerSecond = try c.decodeIfPresent(Double.self, forKey: .handshakesPerSecond) ?? handshakesPerSecond
        nms = try c.decodeIfPresent([String].self, forKey: .nms)
        login = try c.decodeIfPresent(Bool.self, forKey: .login) ?? login
        loginRefreshSeconds = try c.decodeIfPresent(Double.self, forKey: .loginRefreshSeconds) ?? loginRefreshSeconds
        enroll = try c.decodeIfPresent(Enrol.self, forKey: .enroll)
        resolver = try c.decodeIfPresent(Resolver.self, forKey: .resolver) ?? resolver
        punchTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .punchTimeoutSeconds) ?? punchTimeoutSeconds
        directRetrySeconds = try c.decodeIfPresent(Double.self, forKey: .directRetrySeconds) ?? directRetrySeconds
        reopenSeconds = try c.decodeIfPresent(Double.self, forKey: .reopenSeconds) ?? reopenSeconds
    }

    /// Reads and validates a config file.
    public static func load(path: String) throws -> NodeConfig {
        var config = try ConfigFile.decode(NodeConfig.self, path: path)
        let base = (path as NSString).deletingLastPathComponent
        config.resolve(relativeTo: base)
        try config.validate()
        return config
    }

    mutating func resolve(relativeTo base: String) {
        func abs(_ p: String?) -> String? {
            guard let p, !p.hasPrefix("/") else { return p }
            return (base as NSString).appendingPathComponent(p)
        }
        stateDir = abs(stateDir)
        key = abs(key ?? stateDir.map { $0 + "/node.key" })
        certificate = abs(certificate ?? stateDir.map { $0 + "/node.pem" })
        ca = abs(ca ?? stateDir.map { $0 + "/ca.pem" })
        crl = abs(crl)
        if var e = enroll {
            e.ca = abs(e.ca) ?? e.ca
            e.tokenFile = abs(e.tokenFile) ?? e.tokenFile
            enroll = e
        }
    }
}

/// Spec constants the config defaults to.
public enum DataSessionDefaults {
    public static let rekeyAfterSeconds = 120.0
}
