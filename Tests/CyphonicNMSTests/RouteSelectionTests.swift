import CyphonicCore
import CyphonicNMS
import CyphonicWire
import Testing

/// DESIGN §5, one test per row of the route-selection table.
@Suite struct RouteSelectionTests {
    static func e(_ s: String) -> Endpoint { Endpoint(s)! }
    static func node(
        v4: (String, NATProbeResult.Mapping)? = nil, v6: (String, NATProbeResult.Mapping)? = nil, local: [String] = []
    )
        -> NodeNetwork
    {
        NodeNetwork(
            v4: v4.map { FamilyView(mapped: e($0.0), mapping: $0.1) }, v6: v6.map { FamilyView(mapped: e($0.0), mapping: $0.1) },
            local: local.map(e))
    }

    @Test func sameSiteGoesOverTheLANAddresses() {
        let i = Self.node(v4: ("198.19.1.1:40001", .endpointIndependent), local: ["198.19.2.11:30000"])
        let r = Self.node(v4: ("198.19.1.1:40002", .endpointIndependent), local: ["198.19.2.12:30000"])
        let route = selectRoute(initiator: i, responder: r)
        #expect(route.kind == .local && route.processCode == .direct)
        #expect(route.toInitiator == [Self.e("198.19.2.12:30000"), Self.e("198.19.1.1:40002")])
        #expect(route.toResponder == [Self.e("198.19.2.11:30000"), Self.e("198.19.1.1:40001")])
    }

    @Test func aSharedPublicAddressWithoutASharedSubnetIsNotTheSameSite() {
        // Two homes behind one carrier-grade NAT: not local, punched (EIM) instead; and a
        // node's self-reported addresses outside the other's subnet are never handed out.
        let i = Self.node(v4: ("198.19.1.1:40001", .endpointIndependent), local: ["198.19.2.11:30000"])
        let r = Self.node(v4: ("198.19.1.1:40002", .endpointIndependent), local: ["198.19.3.12:30000", "198.19.4.5:30000"])
        let route = selectRoute(initiator: i, responder: r)
        #expect(route.kind == .punched && route.toInitiator == [Self.e("198.19.1.1:40002")])
    }

    @Test func bothReachableWithoutNATGoDirect() {
        let route = selectRoute(
            initiator: Self.node(v4: ("198.19.0.11:30000", .none)), responder: Self.node(v4: ("198.19.0.10:30000", .none)))
        #expect(route.kind == .direct && route.toInitiator == [Self.e("198.19.0.10:30000")] && !route.responderSendsFirst)
    }

    @Test func natedInitiatorToPublicResponderIsDirectInitiatorFirst() {
        let route = selectRoute(
            initiator: Self.node(v4: ("198.19.0.100:41000", .endpointDependent)), responder: Self.node(v4: ("198.19.0.10:30000", .none)))
        #expect(route.kind == .direct && route.processCode == .direct && !route.responderSendsFirst)
        #expect(route.toInitiator == [Self.e("198.19.0.10:30000")])
    }

    @Test func publicInitiatorToNatedResponderIsDirectResponderFirst() {
        let route = selectRoute(
            initiator: Self.node(v4: ("198.19.0.11:30000", .none)), responder: Self.node(v4: ("198.19.0.100:41000", .endpointIndependent)))
        #expect(route.kind == .direct && route.responderSendsFirst)
        #expect(route.toResponder == [Self.e("198.19.0.11:30000")] && route.toInitiator == [Self.e("198.19.0.100:41000")])
    }

    @Test func twoEndpointIndependentNATsPunch() {
        let route = selectRoute(
            initiator: Self.node(v4: ("198.19.0.101:41000", .endpointIndependent)),
            responder: Self.node(v4: ("198.19.0.102:42000", .endpointIndependent)))
        #expect(route.kind == .punched && route.processCode == .natTraversal && route.responderSendsFirst)
        #expect(route.toInitiator == [Self.e("198.19.0.102:42000")] && route.toResponder == [Self.e("198.19.0.101:41000")])
    }

    @Test func symmetricNATWithAnyNATIsRelayed() {
        for other in [NATProbeResult.Mapping.endpointIndependent, .endpointDependent, .unknown] {
            let route = selectRoute(
                initiator: Self.node(v4: ("198.19.0.101:41000", .endpointDependent)), responder: Self.node(v4: ("198.19.0.102:42000", other)))
            #expect(route.kind == .relay && route.processCode == .relay, "\(other)")
        }
    }

    @Test func noSharedFamilyIsRelayed() {
        let route = selectRoute(
            initiator: Self.node(v4: ("198.19.0.11:30000", .none)), responder: Self.node(v6: ("[2001:db8:1::10]:30000", .none)))
        #expect(route.kind == .relay && route.reason == "no shared IP family")
    }

    @Test func theBestFamilyWins() {
        // IPv4 would need a punch, IPv6 is public on both: direct over IPv6.
        let route = selectRoute(
            initiator: Self.node(v4: ("198.19.0.101:41000", .endpointIndependent), v6: ("[2001:db8:1::11]:30000", .none)),
            responder: Self.node(v4: ("198.19.0.102:42000", .endpointIndependent), v6: ("[2001:db8:1::10]:30000", .none)))
        #expect(route.kind == .direct && route.toInitiator == [Self.e("[2001:db8:1::10]:30000")])
    }
}
