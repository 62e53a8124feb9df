import CyphonicCore
import Foundation
import Testing

extension NamespaceSuites {
    /// Revocation end to end (issue 8, defect 1), with a real `as-server` and nodes enrolled
    /// through it by `cyphonic-node enroll`: revoking a node ends its tunnels within one
    /// revocation-list refresh, for good; removing it does not hand its addresses to the
    /// next node while its certificate is valid. Needs root.
    @Suite(.serialized, .enabled(if: NamespaceLab.isRoot, "skipped: namespace tests need root (CI runs them as root)"))
    struct RevocationNamespaceTests {
        @Test func revokedNodeLosesItsTunnelWithinOneRefreshAndItsAddressesStayQuarantined() throws {
            let lab = try NamespaceLab()
            defer { lab.tearDown() }
            let asServer = NamespaceLab.product("as-server")
            let (data, asEndpoint) = try lab.startAS(in: "b", address: lab.underlayB, metricsPort: 19461)
            for name in ["a", "b"] {
                let r = try lab.enrolThroughAS(name, data: data, endpoint: asEndpoint)
                #expect(r.status == 0, "enroll \(name): \(r.output)")
            }
            // A keeps its side of the tunnel until 6 s of silence (keepaliveSeconds + 5), then retries.
            try lab.configure(
                "a", peers: [("b", "\(lab.underlayB):30000")],
                extra: ["crlRefreshSeconds": 2, "keepaliveSeconds": 1, "idleTimeoutSeconds": 30])
            try lab.configure("b", extra: ["crlRefreshSeconds": 2])
            try lab.start("b", in: "b")
            try lab.start("a", in: "a")
            #expect(try lab.waitForSession("a", peer: "b."))
            let aIP = try lab.status("a")["addresses"] as? [String] ?? []
            let bIP = (try lab.status("b")["addresses"] as? [String] ?? []).first { !$0.contains(":") } ?? "?"
            #expect(try lab.exec("a", "ping -c 2 -i 0.2 -W 2 \(bIP)").status == 0)

            // Revoke A: B ends A's sessions within one refresh (2 s) and refuses it after.
            let revokedAt = Date()
            try lab.sh("\(asServer) node revoke a --data-dir \(data) >/dev/null")
            var gone = false
            while !gone, Date().timeIntervalSince(revokedAt) < 6 {
                usleep(200_000)
                let peers = try lab.status("b")["peers"] as? [[String: Any]] ?? []
                gone = !peers.contains { ($0["fqdn"] as? String)?.hasPrefix("a.") == true && $0["handshakeAgeSeconds"] != nil }
            }
            let took = Date().timeIntervalSince(revokedAt)
            print("revocation: B ended A's tunnel \(String(format: "%.1f", took)) s after `node revoke` (refresh every 2 s)")
            #expect(gone && took < 4.5)
            #expect(lab.log("b").contains("sessions ended for revoked a.cyphonic.internal"))
            // It stays gone: A retries every 5 s, B refuses its revoked certificate.
            sleep(9)
            let peers = try lab.status("b")["peers"] as? [[String: Any]] ?? []
            #expect(!peers.contains { ($0["fqdn"] as? String)?.hasPrefix("a.") == true && $0["handshakeAgeSeconds"] != nil })
            #expect(try lab.exec("a", "ping -c 2 -i 0.2 -W 1 \(bIP)").status != 0)
            #expect((try lab.status("b")["handshakesRefused"] as? Int ?? 0) >= 1)

            // Remove A, add C: C does not get A's addresses while A's certificate is valid.
            try lab.sh("\(asServer) node remove a --data-dir \(data) >/dev/null")
            let c = try lab.addNode("c", data: data)
            print("after removing a (\(aIP)): \(c.line)")
            for ip in aIP { #expect(!c.line.contains(" \(ip) ") && !c.line.hasSuffix(" \(ip)"), "\(c.line)") }
        }
    }
}
