import CyphonicCore
import CyphonicNMS
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Testing

/// Which relay host carries a path (issue 15): both ends' families first, then the least
/// loaded; a relay reported down by two nodes is skipped, by one node only for that node.
@Suite struct RelaySelectionTests {
    let v4a = Endpoint("192.0.2.10:4000")!
    let v4b = Endpoint("192.0.2.20:4000")!
    let v6a = Endpoint("[2001:db8::10]:4000")!

    func hosts() throws -> [RelayHost] {
        try RelayHost.parse(
            [
                "trs1.cyphonic.internal=198.19.0.3:4503,[2001:db8:19::3]:4503",
                "TRS2.cyphonic.internal=198.19.0.13:4503,[2001:db8:19::13]:4503",
                "trs3.cyphonic.internal=198.19.0.23:4503",
            ], resolve: { [Endpoint($0)!] })
    }

    @Test func relayFlagsMakeNamedHostsAndOneUnnamedHost() throws {
        let h = try hosts()
        #expect(h.map(\.name) == ["trs1.cyphonic.internal", "trs2.cyphonic.internal", "trs3.cyphonic.internal"])
        #expect(h[0].endpoints.count == 2 && h[2].endpoints == [Endpoint("198.19.0.23:4503")!])
        #expect(h[1].relayID == PathAuthorization.relayID(name: "trs2.cyphonic.internal"))
        #expect(h[0].endpoint(for: v6a) == Endpoint("[2001:db8:19::3]:4503")! && h[0].endpoint(for: v4a) == Endpoint("198.19.0.3:4503")!)
        let bare = try RelayHost.parse(["198.19.0.2:4503", "[2001:db8:19::2]:4503"], resolve: { [Endpoint($0)!] })
        #expect(bare.count == 1 && bare[0].name == nil && bare[0].relayID == PathAuthorization.anyRelay && bare[0].endpoints.count == 2)
        #expect(throws: RelayConfigError.self) { try RelayHost.parse(["bad_name=1.2.3.4:5"], resolve: { [Endpoint($0)!] }) }
        #expect(throws: RelayConfigError.self) { try RelayHost.parse(["trs1.x=", "trs1.x=1.2.3.4:5"], resolve: { [Endpoint($0)!] }) }
        #expect(throws: RelayConfigError.self) { try RelayHost.parse(["trs1.x=1.2.3.4:5", "TRS1.x=1.2.3.4:6"], resolve: { [Endpoint($0)!] }) }
    }

    @Test func pathsSpreadOverTheHostsThatServeBothEnds() throws {
        let selector = RelaySelector(hosts: try hosts())
        var count: [String: Int] = [:]
        for _ in 0..<60 { count[selector.pick(between: v4a, and: v6a, now: 1_000)!.name!, default: 0] += 1 }
        // trs3 has no IPv6 endpoint: never chosen for a v4 <-> v6 path; the others share.
        #expect(count["trs3.cyphonic.internal"] == nil && count["trs1.cyphonic.internal"] == 30 && count["trs2.cyphonic.internal"] == 30)
        // A v4 <-> v4 path goes to the least loaded of all three: trs3 now.
        #expect(selector.pick(between: v4a, and: v4b, now: 1_000)?.name == "trs3.cyphonic.internal")
    }

    @Test func aRelayReportedDownByTwoNodesIsSkippedForAWhile() throws {
        let selector = RelaySelector(hosts: try hosts())
        let trs1 = Endpoint("198.19.0.3:4503")!
        // Two nodes given trs1; a stranger's reports count for nothing.
        #expect(selector.pick(between: v4a, and: v6a, for: "init01.cyphonic.internal", now: 1_000)?.name == "trs1.cyphonic.internal")
        #expect(selector.pick(between: v4a, and: v6a, for: "init09.cyphonic.internal", now: 1_000)?.name == "trs2.cyphonic.internal")
        #expect(selector.pick(between: v4a, and: v6a, for: "init02.cyphonic.internal", now: 1_000)?.name == "trs1.cyphonic.internal")
        for stranger in ["x1", "x2", "x3", "init09.cyphonic.internal"] { selector.report(trs1, by: stranger, now: 1_000) }
        #expect(!selector.isDown(0, now: 1_000))
        // One node's report: that request avoids trs1, the others may still get it.
        #expect(selector.pick(between: v4a, and: v6a, avoid: trs1, now: 1_000)?.name == "trs2.cyphonic.internal")
        selector.report(trs1, by: "init01.cyphonic.internal", now: 1_000)
        #expect(!selector.isDown(0, now: 1_000))
        #expect(selector.pick(between: v4a, and: v6a, now: 1_000)?.name == "trs1.cyphonic.internal")
        // The same node again changes nothing; a second node given trs1 takes it out for 30 s.
        selector.report(trs1, by: "init01.cyphonic.internal", now: 1_001)
        #expect(!selector.isDown(0, now: 1_001))
        selector.report(Endpoint("[2001:db8:19::3]:4503")!, by: "init02.cyphonic.internal", now: 1_002)
        #expect(selector.isDown(0, now: 1_002))
        for _ in 0..<10 { #expect(selector.pick(between: v4a, and: v6a, now: 1_010)?.name == "trs2.cyphonic.internal") }
        #expect(!selector.isDown(0, now: 1_002 + RelaySelector.downSeconds))
        // With every host down or avoided, one is still given (never none while one exists).
        let lone = RelaySelector(hosts: [try hosts()[0]])
        #expect(lone.pick(between: v4a, and: v6a, avoid: trs1, now: 1)?.name == "trs1.cyphonic.internal")
        #expect(RelaySelector(hosts: []).pick(between: v4a, and: v6a, now: 1) == nil)
    }
}

/// The NMS with two named relay hosts, over real UDP: a v4 node and a v6 node (no
/// shared family, so a relay route) get one host, each its own family's endpoint of it,
/// and the authorization names that host; asked again avoiding it, the other host.
@Suite(.serialized) struct RelayDirectionTests {
    @Test func bothEndsGetOneNamedRelayAndARerouteGetsTheOther() throws {
        let hosts = try RelayHost.parse(
            ["trs1.cyphonic.internal=198.19.0.3:4503,[2001:db8:19::3]:4503", "trs2.cyphonic.internal=198.19.0.13:4503,[2001:db8:19::13]:4503"],
            resolve: { [Endpoint($0)!] })
        let f = try NMSFixture {
            $0.listen = [Endpoint("127.0.0.1:0")!, Endpoint("[::1]:0")!]
            $0.relayHosts = hosts
        }
        defer { f.stop() }
        let (a, sa) = try f.registered("init01", local: false)
        let b = try f.node("responder")
        let sb = try UDPSocket(bind: Endpoint("[::1]:0")!)
        try sb.setReceiveTimeout(milliseconds: 2000)
        defer {
            sa.close()
            sb.close()
        }
        guard case .registrationAck = try b.register(with: f.server.boundEndpoints[1], over: sb).body else {
            Issue.record("the v6 node did not register")
            return
        }
        var used: [String] = []
        for avoid in [nil, Endpoint("198.19.0.3:4503")!] {
            let (request, tid) = try a.seal(.directionRequest(target: try FQDN("responder.cyphonic.internal"), avoidRelay: avoid))
            try sa.send(request, to: f.nms)
            let toB = try b.open(try b.receive(sb))
            guard case .routeDirection(let db) = toB.body else {
                Issue.record("\(toB.body)")
                return
            }
            try sb.send(
                try b.seal(
                    .routeDirectionConfirmation(RouteDirectionConfirmation(pathID: db.pathID, status: .ok, localEndpoints: [])),
                    transactionID: toB.transactionID), to: f.server.boundEndpoints[1])
            let toA = try a.open(try a.receive(sa))
            guard case .routeDirection(let da) = toA.body else {
                Issue.record("\(toA.body)")
                return
            }
            #expect(toA.transactionID == tid && db.processCode == .relay && da.pathID == db.pathID)
            let host = try #require(hosts.first { $0.endpoints.contains(db.relay!) })
            // Each end gets the same host, at the endpoint of its own family.
            #expect(db.relay == host.endpoint(for: Endpoint("[::1]:1")!) && da.relay == host.endpoint(for: Endpoint("127.0.0.1:1")!))
            let auth = try PathAuthorization(bytes: da.authorization)
            #expect(auth.relayID == host.relayID && auth.allowsRelay(named: host.name!))
            used.append(host.name!)
        }
        #expect(used == ["trs1.cyphonic.internal", "trs2.cyphonic.internal"])
    }
}
