import CyphonicCore
import CyphonicSignaling
import Synchronization

/// One relay host (a `trs-relay` process): the name in its certificate, which route
/// authorizations name it by, and its endpoints (an IPv4 and an IPv6 one, or either).
/// A host without a name stands for relays configured by endpoint alone: authorizations
/// for it name no relay, so any relay of the CA accepts them (the original form).
public struct RelayHost: Sendable, Equatable, CustomStringConvertible {
    public var name: String?
    public var endpoints: [Endpoint]

    public init(name: String?, endpoints: [Endpoint]) {
        self.name = name?.lowercased()
        self.endpoints = endpoints
    }

    /// What authorizations for paths through this host carry.
    public var relayID: [UInt8] { name.map { PathAuthorization.relayID(name: $0) } ?? PathAuthorization.anyRelay }

    /// The endpoint a node registered from `signaling` uses: one of its family, else the first.
    public func endpoint(for signaling: Endpoint) -> Endpoint? {
        endpoints.first { $0.address.isIPv4 == signaling.address.isIPv4 } ?? endpoints.first
    }

    func serves(_ signaling: Endpoint) -> Bool { endpoints.contains { $0.address.isIPv4 == signaling.address.isIPv4 } }

    public var description: String {
        let list = endpoints.map(\.description).joined(separator: ",")
        return name.map { "\($0)=\(list)" } ?? list
    }

    /// `--relay` values: `NAME=HOST:PORT[,HOST:PORT...]` is one named host; a bare
    /// `HOST:PORT` joins the one unnamed host. `resolve` turns a HOST:PORT into endpoints.
    public static func parse(_ values: [String], resolve: (String) throws -> [Endpoint]) throws -> [RelayHost] {
        var hosts: [RelayHost] = []
        var unnamed: [Endpoint] = []
        for value in values {
            guard let eq = value.firstIndex(of: "=") else {
                unnamed += try resolve(value)
                continue
            }
            let name = String(value[..<eq])
            guard (try? FQDN(name.lowercased())) != nil else {
                throw RelayConfigError("\(value): \(name) is not the relay's certificate name (a DNS name)")
            }
            let list = value[value.index(after: eq)...].split(separator: ",").map(String.init)
            guard !list.isEmpty else { throw RelayConfigError("\(value): give the relay's endpoints after =") }
            guard !hosts.contains(where: { $0.name == name.lowercased() }) else { throw RelayConfigError("\(name) is given twice") }
            hosts.append(RelayHost(name: name, endpoints: try list.flatMap(resolve)))
        }
        if !unnamed.isEmpty { hosts.append(RelayHost(name: nil, endpoints: unnamed)) }
        return hosts
    }
}

public struct RelayConfigError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

/// Which relay carries a new path. Among the hosts that serve both ends' families (else
/// all), those not reported down, the one given the fewest paths lately (a count that
/// halves every minute) is chosen, ties broken by the order given. A node whose relay
/// stopped answering asks for a new path avoiding it: that host is skipped for the
/// request; a report counts only from a node this NMS last gave a path through that
/// host, and after reports from two such nodes within ``downSeconds`` the host is skipped
/// by this NMS for every path until then (a node cannot report relays it never used).
/// Thread-safe.
public final class RelaySelector: Sendable {
    public let hosts: [RelayHost]
    /// Seconds a host reported down by two nodes is skipped.
    public static let downSeconds: Int64 = 30
    struct State {
        var load: [Double]
        var lastDecay: Int64 = 0
        var reports: [[String: Int64]]
        var downUntil: [Int64]
        /// The host each initiator was last given (only its reports about it count).
        var lastGiven: [String: Int] = [:]
    }
    /// Initiators remembered in `lastGiven`, at most (then it starts over).
    static let maxRemembered = 1_000_000
    private let state: Mutex<State>

    public init(hosts: [RelayHost]) {
        self.hosts = hosts
        state = Mutex(
            State(
                load: Array(repeating: 0, count: hosts.count), reports: Array(repeating: [:], count: hosts.count),
                downUntil: Array(repeating: 0, count: hosts.count)))
    }

    /// The host that owns `endpoint`.
    public func host(owning endpoint: Endpoint) -> Int? { hosts.firstIndex { $0.endpoints.contains(endpoint) } }

    /// `reporter` says the relay at `endpoint` stopped answering.
    public func report(_ endpoint: Endpoint, by reporter: String, now: Int64) {
        guard let h = host(owning: endpoint) else { return }
        state.withLock { s in
            guard s.lastGiven[reporter] == h else { return }
            s.reports[h] = s.reports[h].filter { now - $0.value < Self.downSeconds }
            s.reports[h][reporter] = now
            if s.reports[h].count >= 2 { s.downUntil[h] = now + Self.downSeconds }
        }
    }

    /// Whether host `h` is taken to be down at `now`.
    public func isDown(_ h: Int, now: Int64) -> Bool { state.withLock { $0.downUntil[h] > now } }

    /// Picks the host for a path between nodes registered from `a` and `b`, skipping the
    /// one owning `avoid`; counts the path against it and remembers it for `initiator`.
    /// Nil when there is no host.
    public func pick(between a: Endpoint, and b: Endpoint, avoid: Endpoint? = nil, for initiator: String? = nil, now: Int64) -> RelayHost? {
        guard !hosts.isEmpty else { return nil }
        let avoided = avoid.flatMap(host(owning:))
        return state.withLock { s -> RelayHost? in
            if now - s.lastDecay >= 60 {
                for i in s.load.indices { s.load[i] /= 2 }
                s.lastDecay = now
            }
            let all = Array(hosts.indices)
            let usable = all.filter { $0 != avoided && s.downUntil[$0] <= now }
            // Every host avoided or down: the least bad one (never none while one exists).
            let pool = usable.isEmpty ? all.filter { $0 != avoided }.ifEmpty(all) : usable
            let both = pool.filter { hosts[$0].serves(a) && hosts[$0].serves(b) }
            let candidates = both.isEmpty ? pool : both
            guard let best = candidates.min(by: { s.load[$0] < s.load[$1] }) else { return nil }
            s.load[best] += 1
            if let initiator {
                if s.lastGiven.count >= Self.maxRemembered { s.lastGiven.removeAll() }
                s.lastGiven[initiator] = best
            }
            return hosts[best]
        }
    }

    /// Paths given to each host lately (for metrics and status).
    public var loads: [Double] { state.withLock { $0.load } }
}

extension Array {
    fileprivate func ifEmpty(_ other: [Element]) -> [Element] { isEmpty ? other : self }
}
