import CyphonicCore
import CyphonicWire

/// What the NMS knows of a node's network on one IP family: the address it observed
/// (the node's mapped address) and the NAT mapping behaviour its probes showed.
public struct FamilyView: Equatable, Sendable {
    public var mapped: Endpoint
    public var mapping: NATProbeResult.Mapping

    public init(mapped: Endpoint, mapping: NATProbeResult.Mapping) {
        self.mapped = mapped
        self.mapping = mapping
    }

    /// Behind a NAT of any kind (unknown counts as NATed: no probe proved otherwise).
    var isNATed: Bool { mapping != .none }
}

/// A node's network as route selection sees it: a view per family it registered or
/// probed on, and the addresses of its own interfaces (for peers at the same site).
public struct NodeNetwork: Equatable, Sendable {
    public var v4: FamilyView?
    public var v6: FamilyView?
    public var local: [Endpoint]

    public init(v4: FamilyView? = nil, v6: FamilyView? = nil, local: [Endpoint] = []) {
        self.v4 = v4
        self.v6 = v6
        self.local = local
    }

    func view(ipv4: Bool) -> FamilyView? { ipv4 ? v4 : v6 }
}

/// The route the NMS chose for a pair (DESIGN §5), and what each side is told.
public struct Route: Equatable, Sendable {
    /// How the tunnel is made, for status and metrics (finer than the process code).
    public enum Kind: String, Sendable, CaseIterable {
        /// Same site: over the LAN addresses.
        case local
        /// Straight to the mapped (public) address.
        case direct
        /// Both sides punch at once (endpoint-independent NATs).
        case punched
        /// Through the TRS.
        case relay
    }
    public var kind: Kind
    /// Where the initiator sends: the responder's addresses, most preferred first.
    public var toInitiator: [Endpoint]
    /// Where the responder sends (punches) to: the initiator's addresses.
    public var toResponder: [Endpoint]
    /// The responder must send first (it is behind a NAT, the initiator is not).
    public var responderSendsFirst: Bool
    /// The table row that chose it, for logs.
    public var reason: String

    public var processCode: ProcessCode {
        switch kind {
        case .local, .direct: return .direct
        case .punched: return .natTraversal
        case .relay: return .relay
        }
    }
}

/// DESIGN §5 as one pure function: the route between `initiator` and `responder`.
/// Families are tried IPv4 first, then IPv6; the best route over any shared family wins
/// (local, then direct, then punched); with no usable shared family the route is the relay.
public func selectRoute(initiator: NodeNetwork, responder: NodeNetwork) -> Route {
    var best: Route?
    for ipv4 in [true, false] {
        guard let i = initiator.view(ipv4: ipv4), let r = responder.view(ipv4: ipv4) else { continue }
        guard let route = selectRoute(i, r, initiatorLocal: family(initiator.local, ipv4), responderLocal: family(responder.local, ipv4))
        else { continue }
        if best == nil || rank(route.kind) < rank(best!.kind) { best = route }
    }
    if let best { return best }
    // Relayed. The mapped addresses of a shared family stay the candidates the nodes
    // keep probing for a direct path (HolePunchingForOptimization); none without one.
    let shared = [(initiator.v4, responder.v4), (initiator.v6, responder.v6)].first { $0.0 != nil && $0.1 != nil }
    return Route(
        kind: .relay, toInitiator: shared.map { [$0.1!.mapped] } ?? [], toResponder: shared.map { [$0.0!.mapped] } ?? [],
        responderSendsFirst: false,
        reason: shared != nil ? "endpoint-dependent (symmetric) NAT on one side and a NAT on the other" : "no shared IP family")
}

private func rank(_ kind: Route.Kind) -> Int {
    switch kind {
    case .local: return 0
    case .direct: return 1
    case .punched: return 2
    case .relay: return 3
    }
}

private func family(_ list: [Endpoint], _ ipv4: Bool) -> [Endpoint] { list.filter { $0.address.isIPv4 == ipv4 } }

/// One family: nil when only a relay would do on it.
private func selectRoute(_ i: FamilyView, _ r: FamilyView, initiatorLocal: [Endpoint], responderLocal: [Endpoint]) -> Route? {
    if i.mapped.address == r.mapped.address, i.isNATed || r.isNATed {
        // Same site behind one NAT: NATs seldom hairpin, so over the LAN, but only between
        // addresses that share a subnet (strangers behind one carrier-grade NAT do not; and
        // a node's self-reported addresses never aim the other's packets elsewhere); the
        // mapped address is the fallback.
        let lanI = initiatorLocal.filter { a in responderLocal.contains { a.address.sharesSubnet(with: $0.address) } }
        let lanR = responderLocal.filter { a in initiatorLocal.contains { a.address.sharesSubnet(with: $0.address) } }
        if !lanI.isEmpty, !lanR.isEmpty {
            return Route(
                kind: .local, toInitiator: lanR + [r.mapped], toResponder: lanI + [i.mapped], responderSendsFirst: false,
                reason: "same public address and a shared LAN subnet (same site)")
        }
    }
    switch (i.isNATed, r.isNATed) {
    case (false, false):
        return Route(
            kind: .direct, toInitiator: [r.mapped], toResponder: [i.mapped], responderSendsFirst: false,
            reason: "both reachable without NAT")
    case (true, false):
        return Route(
            kind: .direct, toInitiator: [r.mapped], toResponder: [i.mapped], responderSendsFirst: false,
            reason: "responder public, initiator behind NAT (initiator sends first)")
    case (false, true):
        return Route(
            kind: .direct, toInitiator: [r.mapped], toResponder: [i.mapped], responderSendsFirst: true,
            reason: "initiator public, responder behind NAT (responder sends first)")
    case (true, true):
        if i.mapping == .endpointDependent || r.mapping == .endpointDependent { return nil }
        return Route(
            kind: .punched, toInitiator: [r.mapped], toResponder: [i.mapped], responderSendsFirst: true,
            reason: "both behind endpoint-independent NATs (hole punching)")
    }
}
