import CyphonicCore
import Foundation
import Testing

extension NamespaceSuites {
    /// Certificate renewal while running (issue 10, node signaling): a daemon logs in to the
    /// AS every `loginRefreshSeconds`; when the AS renews its certificate (here: the AS's
    /// record of it says it expires within the renewal window), the daemon saves the new
    /// one and presents it in every handshake from then on. Needs root.
    @Suite(.serialized, .enabled(if: NamespaceLab.isRoot, "skipped: namespace tests need root (CI runs them as root)"))
    struct RenewalNamespaceTests {
        @Test func aRunningNodeTakesUpTheCertificateTheASRenews() throws {
            let lab = try NamespaceLab()
            defer { lab.tearDown() }
            let node = NamespaceLab.product("cyphonic-node")
            let (data, asEndpoint) = try lab.startAS(in: "b", address: lab.underlayB, metricsPort: 19462)
            for name in ["a", "b"] {
                let e = try lab.enrolThroughAS(name, data: data, endpoint: asEndpoint)
                #expect(e.status == 0, "enroll \(name): \(e.output)")
            }
            try lab.configure("a", peers: [("b", "\(lab.underlayB):30000")], extra: ["loginRefreshSeconds": 1])
            try lab.configure("b")
            try lab.start("b", in: "b")
            try lab.start("a", in: "a")
            #expect(try lab.waitForSession("a", peer: "b."))
            let before = try String(contentsOfFile: lab.dir + "/a/node.pem", encoding: .utf8)
            let serialBefore = try peerSerial(lab, of: "b", peer: "a.")
            // The AS's clock cannot be moved; its record of A's newest certificate can: make
            // it expire in a minute, inside the renewal window.
            try lab.sh(
                "python3 -c \"import sqlite3,time; c=sqlite3.connect('\(data)/as.db'); c.execute('UPDATE certificates SET not_after=? WHERE subject=?', (int(time.time())+60, 'a.cyphonic.internal')); c.commit()\""
            )
            var renewed = false
            let start = Date()
            while !renewed, Date().timeIntervalSince(start) < 8 {
                usleep(200_000)
                renewed = (try? String(contentsOfFile: lab.dir + "/a/node.pem", encoding: .utf8)) != before
            }
            #expect(renewed, "A's node.pem was not replaced")
            // The daemon logs the renewal right after it saved the file: give the line a moment.
            var logged = false
            let saved = Date()
            while !logged, Date().timeIntervalSince(saved) < 3 {
                logged = lab.log("a").contains("the AS renewed our certificate")
                if !logged { usleep(100_000) }
            }
            #expect(logged, "\(lab.log("a").suffix(800))")
            // The next handshake presents the new certificate: B sees its new serial.
            _ = try lab.exec("a", "\(node) forget b.cyphonic.internal --control \(lab.dir)/a.sock")
            var serialAfter = serialBefore
            let again = Date()
            while serialAfter == nil || serialAfter == serialBefore, Date().timeIntervalSince(again) < 12 {
                usleep(300_000)
                serialAfter = try peerSerial(lab, of: "b", peer: "a.")
            }
            print("renewal: B saw A's certificate serial \(serialBefore ?? 0) before, \(serialAfter ?? 0) after")
            #expect(serialBefore != nil && serialAfter != nil && serialAfter != serialBefore)
        }

        func peerSerial(_ lab: NamespaceLab, of name: String, peer: String) throws -> UInt64? {
            let peers = try lab.status(name)["peers"] as? [[String: Any]] ?? []
            let p = peers.first { ($0["fqdn"] as? String)?.hasPrefix(peer) == true && $0["handshakeAgeSeconds"] != nil }
            return (p?["certificateSerial"] as? NSNumber)?.uint64Value
        }
    }
}
