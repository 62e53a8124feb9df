import CyphonicCore
import Foundation
import Testing

extension NamespaceSuites {
    /// A configured peer is visible before it ever answers (issue 13, point 4, as `wg show`
    /// does): `status` lists it from start-up with the handshakes sent and no answer, the
    /// log says so (rate-limited), and a non-zero drop counter is explained. Needs root.
    @Suite(.serialized, .enabled(if: NamespaceLab.isRoot, "skipped: namespace tests need root (CI runs them as root)"))
    struct PeerVisibilityNamespaceTests {
        @Test func aConfiguredPeerThatNeverAnswersIsListedWithWhatWasTried() throws {
            let lab = try NamespaceLab()
            defer { lab.tearDown() }
            try lab.enrol("a", index: 1)
            // B is configured but never started: nobody answers at its address.
            try lab.configure("a", peers: [("b", "\(lab.underlayB):30000")])
            try lab.start("a", in: "a")
            usleep(6_500_000)
            let peers = try lab.status("a")["peers"] as? [[String: Any]] ?? []
            let b = peers.first { ($0["fqdn"] as? String) == "b.cyphonic.internal" }
            #expect(b != nil, "\(peers)")
            #expect(b?["handshakeAgeSeconds"] == nil && (b?["initiationsUnanswered"] as? Int ?? 0) >= 1, "\(b ?? [:])")
            #expect(b?["endpoint"] as? String == "\(lab.underlayB):30000")
            // What a person reads.
            let shown = try lab.run(NamespaceLab.product("cyphonic-node"), ["status", "--control", lab.dir + "/a.sock"])
            #expect(shown.output.contains("b.cyphonic.internal") && shown.output.contains("never — sent"), "\(shown.output)")
            #expect(lab.log("a").contains("no answer from b.cyphonic.internal"), "\(lab.log("a").suffix(2000))")
            // A packet to a virtual IP no tunnel leads to is a `no_route` drop, explained.
            _ = try lab.exec("a", "ping -c 1 -W 1 198.18.0.99")
            let again = try lab.run(NamespaceLab.product("cyphonic-node"), ["status", "--control", lab.dir + "/a.sock"])
            #expect(again.output.contains("no_route: packets from this host for a virtual IP no tunnel leads to"), "\(again.output)")
        }
    }
}
