import Prometheus

/// The NMS's Prometheus metrics (namespace `nms`). `Sendable`: Prometheus counters and
/// gauges are. Labels are fixed sets, so no input can grow the metric space.
public final class NMSMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let registeredNodes: Gauge
    public let pendingDirections: Gauge
    public let datagramsReceived: Counter
    public let handshakes: Counter
    public let keepalives: Counter
    public let probes: Counter
    public let expired: Counter
    public let signatures: Counter
    public let authorizationsSigned: Counter
    /// Direction requests that said their relay stopped answering.
    public let relayReports: Counter
    /// Messages to other NMS replicas (directions to deliver, confirmations to return).
    public let replicaMessages: Counter
    private let registrations: [String: Counter]
    private let directions: [String: Counter]
    private let refusals: [String: Counter]
    private let dropped: [String: Counter]
    private let renewals: [String: Counter]

    public static let registrationResults = ["ok", "replaced", "untrusted", "expired", "revoked", "key_mismatch", "bad_request", "full"]
    public static let directionResults = Route.Kind.allCases.flatMap { k in ["ok", "refused", "timeout"].map { "\(k.rawValue)/\($0)" } }
    public static let refusalReasons = [
        "not_found", "forbidden", "self", "no_relay", "responder_refused", "responder_timeout", "bad_request", "directory_unavailable",
        "replica_down",
    ]
    /// Results of authorization renewals (NMSServer+Renewal.swift).
    public static let renewalResults = ["ok", "repeated", "invalid", "not_due", "no_relay", "not_found", "forbidden", "unavailable"]
    public static let dropReasons = [
        "malformed", "unexpected_type", "unknown_session", "handshake_failed", "replay", "authentication_failed", "table_full",
        "bad_request", "cookie_sent", "handshake_source_limit", "handshake_busy", "unknown_probe", "stale_confirmation",
    ]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        registeredNodes = registry.makeGauge(descriptor: Self.name("registered_nodes", "Nodes registered now", unit: ""))
        pendingDirections = registry.makeGauge(descriptor: Self.name("pending_directions", "Directions waiting for the responder", unit: ""))
        datagramsReceived = registry.makeCounter(descriptor: Self.name("datagrams_received", "Datagrams received"))
        handshakes = registry.makeCounter(descriptor: Self.name("handshakes", "Noise handshakes completed"))
        keepalives = registry.makeCounter(descriptor: Self.name("keepalives", "Keepalives answered"))
        probes = registry.makeCounter(descriptor: Self.name("nat_probes", "NAT probes received"))
        expired = registry.makeCounter(descriptor: Self.name("expired_nodes", "Registrations expired (silent) or revoked"))
        signatures = registry.makeCounter(descriptor: Self.name("signatures", "Ed25519 signatures made (each covers a batch)"))
        replicaMessages = registry.makeCounter(
            descriptor: Self.name("replica_messages", "Messages sent to other NMS replicas (directions, confirmations)"))
        relayReports = registry.makeCounter(
            descriptor: Self.name("relay_reports", "Direction requests replacing a path whose relay stopped answering"))
        authorizationsSigned = registry.makeCounter(
            descriptor: Self.name("authorizations_signed", "Route authorizations signed (over signatures: the batching)"))
        func labelled(_ metric: String, _ help: String, _ label: String, _ values: [String]) -> [String: Counter] {
            Dictionary(uniqueKeysWithValues: values.map { ($0, registry.makeCounter(descriptor: Self.name(metric, help), labels: [(label, $0)])) })
        }
        registrations = labelled("registrations", "Registrations by result", "result", Self.registrationResults)
        directions = Dictionary(
            uniqueKeysWithValues: Self.directionResults.map { key in
                let parts = key.split(separator: "/").map(String.init)
                return (
                    key,
                    registry.makeCounter(
                        descriptor: Self.name("directions", "Direction requests by route and result"),
                        labels: [("route", parts[0]), ("result", parts[1])])
                )
            })
        refusals = labelled("refusals", "Direction requests refused, by reason", "reason", Self.refusalReasons)
        dropped = labelled("datagrams_dropped", "Datagrams dropped by reason", "reason", Self.dropReasons)
        renewals = labelled("authorization_renewals", "Path authorization renewals by result", "result", Self.renewalResults)
    }

    static func name(_ metric: String, _ help: String, unit: String = "total") -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "nms", metricName: metric, unitName: unit, helpText: help)
    }

    public func registration(_ result: String) { registrations[result]?.increment() }
    public func direction(_ kind: Route.Kind, _ result: String) { directions["\(kind.rawValue)/\(result)"]?.increment() }
    public func refusal(_ reason: String) { refusals[reason]?.increment() }
    public func drop(_ reason: String) { dropped[reason]?.increment() }
    public func renewal(_ result: String) { renewals[result]?.increment() }
}
