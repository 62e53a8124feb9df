import Prometheus

/// The AS's Prometheus metrics. `Sendable`: Prometheus counters and gauges are.
public final class ASMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let loginOK: Counter
    private let loginFailed: [String: Counter]
    public let certificatesIssued: Counter
    public let datagramsReceived: Counter
    private let dropped: [String: Counter]
    public let handshakes: Counter
    public let sessions: Gauge
    public let poolUsed: Gauge
    public let poolCapacity: Gauge

    public static let failureReasons = ["unknown_node", "bad_credential", "token_used", "revoked", "rate_limited", "internal"]
    public static let dropReasons = [
        "malformed", "unexpected_type", "unknown_session", "handshake_failed", "replay",
        "authentication_failed", "table_full", "bad_request",
        "cookie_sent", "handshake_source_limit", "handshake_busy",
    ]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        loginOK = registry.makeCounter(descriptor: Self.name("logins", "Logins by result"), labels: [("result", "ok")])
        loginFailed = Dictionary(
            uniqueKeysWithValues: Self.failureReasons.map {
                ($0, registry.makeCounter(descriptor: Self.name("logins", "Logins by result"), labels: [("result", $0)]))
            })
        certificatesIssued = registry.makeCounter(descriptor: Self.name("certificates_issued", "Node certificates issued"))
        datagramsReceived = registry.makeCounter(descriptor: Self.name("datagrams_received", "Datagrams received"))
        dropped = Dictionary(
            uniqueKeysWithValues: Self.dropReasons.map {
                ($0, registry.makeCounter(descriptor: Self.name("datagrams_dropped", "Datagrams dropped by reason"), labels: [("reason", $0)]))
            })
        handshakes = registry.makeCounter(descriptor: Self.name("handshakes", "Noise handshakes completed"))
        sessions = registry.makeGauge(descriptor: Self.name("sessions", "Signaling sessions and handshakes in progress", unit: ""))
        poolUsed = registry.makeGauge(descriptor: Self.name("pool_used", "Virtual addresses assigned", unit: ""))
        poolCapacity = registry.makeGauge(descriptor: Self.name("pool_capacity", "Virtual addresses in the pool", unit: ""))
    }

    static func name(_ metric: String, _ help: String, unit: String = "total") -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "as", metricName: metric, unitName: unit, helpText: help)
    }

    public func loginSucceeded() { loginOK.increment() }
    public func loginFailed(_ failure: LoginFailure) { loginFailed[failure.reason]?.increment() }
    public func drop(_ reason: String) { dropped[reason]?.increment() }
}
