import Prometheus
import Synchronization

/// The relay's Prometheus metrics (namespace `trs`) and the same figures for `status`.
/// Counters are added per batch, not per packet. Labels are fixed sets, so no input can
/// grow the metric space. `Sendable`.
public final class TRSMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let sessionsGauge: Gauge
    let nodesGauge: Gauge
    let handshakes: Counter
    private let packets: [String: Counter]
    private let bytes: [String: Counter]
    private let refusals: [String: Counter]
    private let drops: [String: Counter]
    private let figures = Mutex(Figures())

    /// What `status` shows.
    struct Figures {
        var packets: [String: UInt64] = [:]
        var bytes: [String: UInt64] = [:]
        var refused: [String: UInt64] = [:]
        var dropped: [String: UInt64] = [:]
    }

    /// Relayed traffic by the families of its two legs.
    public static let families = ["ipv4", "ipv6", "ipv4_to_ipv6", "ipv6_to_ipv4"]
    public static let refusalReasons = [
        "malformed", "untrusted_signer", "bad_signature", "expired", "wrong_path", "wrong_code", "wrong_relay", "wrong_node", "conflict",
        "node_limit", "table_full", "not_registered",
    ]
    public static let dropReasons = [
        "malformed", "unexpected_type", "unknown_index", "unknown_path", "not_bound", "peer_not_bound",
        "rate_limited", "unknown_session", "handshake_failed", "replay", "authentication_failed", "table_full", "cookie_sent",
        "handshake_source_limit", "handshake_busy", "registration_refused", "send_failed", "moved", "signaling_rate_limited",
    ]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        func name(_ metric: String, _ help: String, unit: String = "total") -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "trs", metricName: metric, unitName: unit, helpText: help)
        }
        func labelled(_ metric: String, _ help: String, _ label: String, _ values: [String], unit: String = "total") -> [String: Counter] {
            Dictionary(
                uniqueKeysWithValues: values.map { ($0, registry.makeCounter(descriptor: name(metric, help, unit: unit), labels: [(label, $0)])) })
        }
        sessionsGauge = registry.makeGauge(descriptor: name("sessions", "Relay sessions now", unit: ""))
        nodesGauge = registry.makeGauge(descriptor: name("nodes", "Nodes with a signaling session now", unit: ""))
        handshakes = registry.makeCounter(descriptor: name("handshakes", "Noise handshakes with nodes completed"))
        packets = labelled("relayed_packets", "Datagrams relayed, by the families of the two legs", "family", Self.families)
        bytes = labelled("relayed_bytes", "Bytes relayed, by the families of the two legs", "family", Self.families, unit: "bytes_total")
        refusals = labelled("refusals", "Relay requests refused, by reason", "reason", Self.refusalReasons)
        drops = labelled("datagrams_dropped", "Datagrams dropped, by reason", "reason", Self.dropReasons)
    }

    func relayed(_ family: String, packets n: UInt64, bytes b: UInt64) {
        guard n > 0 else { return }
        packets[family]?.increment(by: Int64(n))
        bytes[family]?.increment(by: Int64(b))
        figures.withLock {
            $0.packets[family, default: 0] += n
            $0.bytes[family, default: 0] += b
        }
    }

    func drop(_ reason: String, _ n: UInt64 = 1) {
        guard n > 0 else { return }
        drops[reason]?.increment(by: Int64(n))
        figures.withLock { $0.dropped[reason, default: 0] += n }
    }

    func refuse(_ reason: String) {
        refusals[reason]?.increment()
        figures.withLock { $0.refused[reason, default: 0] += 1 }
    }

    var snapshot: Figures { figures.withLock { $0 } }
}
