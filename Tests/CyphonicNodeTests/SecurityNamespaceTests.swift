import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire
import Foundation
import Testing

extension NamespaceSuites {
    /// Issue 8's defects shown across real namespaces with real tools: handshake floods from
    /// spoofed sources, a lost handshake message 3, a second daemon on a taken port or
    /// socket, a burst to three peers, peer identity changes and finalization. (Revocation
    /// through a real as-server is in RevocationNamespaceTests.) Needs root.
    @Suite(.serialized, .enabled(if: NamespaceLab.isRoot, "skipped: namespace tests need root (CI runs them as root)"))
    struct SecurityNamespaceTests {
        func started(_ lab: NamespaceLab, aExtra: [String: Any] = [:], bExtra: [String: Any] = [:]) throws {
            try lab.enrol("a", index: 1)
            try lab.enrol("b", index: 2)
            try lab.configure("a", peers: [("b", "\(lab.underlayB):30000")], extra: aExtra)
            try lab.configure("b", extra: bExtra)
            try lab.start("b", in: "b")
            try lab.start("a", in: "a")
            guard try lab.waitForSession("a", peer: "b.") else { throw NamespaceLab.LabError.command("session a-b", lab.log("a") + lab.log("b")) }
        }

        func iperfTCP(_ lab: NamespaceLab, seconds: Int) throws -> Double {
            try lab.spawn("b", "iperf3 -s -1 -B 198.18.0.2")
            usleep(300_000)
            let r = try lab.exec("a", "iperf3 -c 198.18.0.2 -t \(seconds) -J")
            let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
            return ((json?["end"] as? [String: Any])?["sum_received"] as? [String: Any])?["bits_per_second"] as? Double ?? 0
        }

        func int(_ status: [String: Any], _ key: String) -> Int { status[key] as? Int ?? -1 }

        /// nft counter figures ("counter packets P bytes B") of the rule commented `name`.
        func counter(_ lab: NamespaceLab, _ n: String, _ name: String) throws -> (packets: Int, bytes: Int) {
            let out = try lab.exec(n, "nft list table inet cytest").output
            guard let line = out.split(separator: "\n").first(where: { $0.contains("comment \"\(name)\"") }) else { return (-1, -1) }
            let f = line.split(separator: " ").map(String.init)
            guard let c = f.lastIndex(of: "counter"), c + 4 < f.count, f[c + 1] == "packets", f[c + 3] == "bytes" else { return (-1, -1) }
            return (Int(f[c + 2]) ?? -1, Int(f[c + 4]) ?? -1)
        }

        /// ≥ 10 000 spoofed initiations per second (from ns C, with sources that ns D owns,
        /// so B's answers really leave) while A → B carries iperf3 and A rekeys every 2 s:
        /// every rekey completes, TCP keeps ≥ 50 % of its unflooded rate, and B sends the
        /// spoofed sources no more bytes than it gets from them.
        @Test func spoofedHandshakeFloodIsSurvived() throws {
            let lab = try NamespaceLab(withC: true, withD: true)
            defer { lab.tearDown() }
            try started(lab, aExtra: ["rekeyAfterSeconds": 2])
            // The spoofed /24 is routed from B to D (as the internet routes to whoever owns
            // it), and D takes it as local: B's answers really leave, to D.
            let spoofed = "198.19.\(lab.net + 3)"
            try lab.sh("ip netns exec \(lab.ns("b")) sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.\(lab.tag)b1.rp_filter=0")
            try lab.sh("ip -n \(lab.ns("b")) route add \(spoofed).0/24 via \(lab.underlayD)")
            try lab.sh("ip -n \(lab.ns("d")) route add local \(spoofed).0/24 dev lo")
            try lab.sh(
                """
                ip netns exec \(lab.ns("b")) nft -f - <<'EOF'
                table inet cytest {
                  chain in {
                    type filter hook input priority 0;
                    ip saddr \(spoofed).0/24 udp dport 30000 counter comment "in"
                  }
                  chain out {
                    type filter hook output priority 0;
                    ip daddr \(spoofed).0/24 counter comment "out"
                  }
                }
                EOF
                """)
            let baseline = try iperfTCP(lab, seconds: 3)
            // The sender: a template initiation from the real codec, randomised per packet.
            let template = try Datagram(.tunnelRequest(senderIndex: 1, pathID: 0, noise: [UInt8](repeating: 7, count: 32))).encode()
            let script = lab.dir + "/flood.py"
            try FloodSender.source.write(toFile: script, atomically: true, encoding: .utf8)
            let report = lab.dir + "/flood.json"
            let before = try lab.status("a")
            // CYPHONIC_FLOOD_RATE runs the same test at another rate (docs/performance.md).
            let target = Int(ProcessInfo.processInfo.environment["CYPHONIC_FLOOD_RATE"] ?? "") ?? 12_000
            let flood = try lab.spawn("c", "python3 \(script) \(lab.underlayBFromC) 30000 \(spoofed) \(target) 9 \(Hex.encode(template)) \(report)")
            usleep(1_500_000)
            let flooded = try iperfTCP(lab, seconds: 4)
            let ping = try lab.exec("a", "ping -c 20 -i 0.1 -W 1 198.18.0.2")
            flood.waitUntilExit()
            let after = try lab.status("a")
            let b = try lab.status("b")
            let sent = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report)))) as? [String: Any] ?? [:]
            let rate = sent["rate"] as? Double ?? 0
            let inbound = try counter(lab, "b", "in")
            let outbound = try counter(lab, "b", "out")
            let rekeys = int(after, "handshakesCompleted") - int(before, "handshakesCompleted")
            let security = b["security"] as? [String: Any] ?? [:]
            print("flood: B drops \(b["drops"] ?? "") udp \(b["udp"] ?? ""); A drops \(after["drops"] ?? "")")
            print(
                "flood: \(Int(rate)) spoofed initiations/s (\(sent["sent"] ?? 0) sent); B got \(inbound.packets) pkts / \(inbound.bytes) B from them, sent \(outbound.packets) pkts / \(outbound.bytes) B back; TCP \(Int(baseline / 1e6)) -> \(Int(flooded / 1e6)) Mbit/s; A completed \(rekeys) rekeys, refused \(int(after, "handshakesRefused") - int(before, "handshakesRefused")); B security \(security); ping \(ping.output.split(separator: "\n").last { $0.contains("loss") } ?? "")"
            )
            #expect(rate >= 0.83 * Double(target), "the sender must reach its rate: \(sent)")
            #expect(inbound.packets >= Int(0.9 * rate * 8))
            #expect(outbound.bytes <= inbound.bytes)
            #expect(flooded >= 0.5 * baseline)
            #expect(rekeys >= 3, "A must keep rekeying every 2 s under the flood")
            #expect(int(after, "handshakesRefused") == int(before, "handshakesRefused"))
            #expect(ping.status == 0)
            #expect((security["cookiesSent"] as? Int ?? 0) > 0)
        }

        /// Drops exactly one handshake message 3 (nftables quota) during a rekey: the old
        /// session keeps carrying traffic until the responder confirms the new one.
        @Test(arguments: ["multi", "single"])
        func lostMessage3DuringRekeyLosesNoPing(_ pipeline: String) throws {
            let lab = try NamespaceLab()
            defer { lab.tearDown() }
            try started(lab, aExtra: ["rekeyAfterSeconds": 3, "pipeline": pipeline], bExtra: ["pipeline": pipeline])
            let completion = MessageType.handshakeCompletion.rawValue
            try lab.sh(
                """
                ip netns exec \(lab.ns("b")) nft -f - <<'EOF'
                table inet cytest {
                  chain in {
                    type filter hook input priority -10;
                    udp dport 30000 @th,72,8 \(completion) limit rate 1/hour burst 1 packets counter drop comment "m3"
                  }
                }
                EOF
                """)
            let before = try lab.status("a")
            let ping = try lab.exec("a", "ping -c 80 -i 0.1 -W 1 198.18.0.2")
            let after = try lab.status("a")
            let dropped = try counter(lab, "b", "m3")
            let loss = ping.output.split(separator: "\n").first { $0.contains("packet loss") }.map(String.init) ?? ""
            print(
                "lost message 3 (\(pipeline)): dropped \(dropped.packets); \(loss); rekeys \(int(after, "handshakesCompleted") - int(before, "handshakesCompleted")); message 3 resent \(((after["security"] as? [String: Any])?["message3Retransmits"] as? Int) ?? -1)"
            )
            #expect(dropped.packets == 1)
            #expect(loss.contains(" 0% packet loss") || loss.contains(" 1.25% packet loss"), "\(loss)")
            #expect(int(after, "handshakesCompleted") - int(before, "handshakesCompleted") >= 1)
            #expect((((after["security"] as? [String: Any])?["message3Retransmits"] as? Int) ?? 0) >= 1)
        }

        /// A second daemon on a taken port or control socket fails, naming it and its
        /// owner; a control socket left by a killed daemon is replaced.
        @Test func secondDaemonFailsAndStaleSocketIsReplaced() throws {
            let lab = try NamespaceLab()
            defer { lab.tearDown() }
            // A notices a restarted B after keepaliveSeconds + 5 s of silence: keep that short.
            try started(lab, aExtra: ["keepaliveSeconds": 1, "idleTimeoutSeconds": 30])
            // Same port, another interface and control socket.
            try lab.enrol("b2", index: 9)
            try lab.configure("b2", extra: ["tun": ["name": "cyph9"]])
            let port = try lab.runToExit("b2", in: "b")
            print("second daemon on the port: exit \(port.status): \(port.output.split(separator: "\n").last ?? "")")
            #expect(port.status != 0)
            #expect(port.output.contains("UDP port 30000") && port.output.contains("in use by pid") && port.output.contains("cyphonic-node"))
            // Same control socket, another port.
            try lab.configure("b2", extra: ["tun": ["name": "cyph9"], "listen": "0.0.0.0:30009", "control": lab.dir + "/b.sock"])
            let socket = try lab.runToExit("b2", in: "b")
            print("second daemon on the control socket: exit \(socket.status): \(socket.output.split(separator: "\n").last ?? "")")
            #expect(socket.status != 0 && socket.output.contains("control socket") && socket.output.contains("in use"))
            // The first daemon is untouched: still answers and still tunnels.
            let still = try lab.exec("a", "ping -c 2 -i 0.2 -W 2 198.18.0.2")
            #expect(still.status == 0, "\(still.output)\n\(lab.log("b").suffix(3000))\n\(lab.log("a").suffix(2000))")
            // A killed daemon leaves its socket file: the next start replaces it.
            let pid = lab.processes["b"]!.processIdentifier
            try lab.sh("pkill -9 -P \(pid) cyphonic-node; kill -9 \(pid) 2>/dev/null; sleep 0.5")
            lab.processes.removeValue(forKey: "b")
            #expect(FileManager.default.fileExists(atPath: lab.dir + "/b.sock"))
            try lab.start("b", in: "b")
            #expect(try lab.waitForSession("b", peer: "a.", seconds: 20))
            #expect(try lab.exec("a", "ping -c 2 -i 0.2 -W 2 198.18.0.2").status == 0)
            // Finalization: when A stops, B ends A's session at once (not after idleTimeoutSeconds).
            #expect(lab.stop("a") == 0)
            usleep(1_500_000)
            let peers = (try lab.status("b")["peers"] as? [[String: Any]]) ?? []
            #expect(!peers.contains { ($0["fqdn"] as? String)?.hasPrefix("a.") == true }, "\(peers)")
            #expect(lab.log("b").contains("said goodbye"), "\(lab.log("b").suffix(3000))")
        }

        /// B sends to three peers at once without TUN offload: a burst that touches three
        /// peers must take free batches from the pool instead of dropping (defect 5): at
        /// most 1 % dropped, on a machine other suites load at the same time.
        @Test func burstToThreePeersDropsNothingWhileBatchesAreFree() throws {
            let lab = try NamespaceLab(withC: true, withD: true)
            defer { lab.tearDown() }
            for (name, index) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)] { try lab.enrol(name, index: index) }
            try lab.configure("b", extra: ["tun": ["offload": false], "pipeline": "multi"])
            try lab.configure("a", peers: [("b", "\(lab.underlayB):30000")])
            try lab.configure("c", peers: [("b", "\(lab.underlayBFromC):30000")])
            try lab.configure("d", peers: [("b", "\(lab.underlayBFromD):30000")])
            try lab.start("b", in: "b")
            for n in ["a", "c", "d"] { try lab.start(n, in: n) }
            for n in ["a", "c", "d"] { #expect(try lab.waitForSession(n, peer: "b.")) }
            for (n, ip) in [("a", "198.18.0.1"), ("c", "198.18.0.3"), ("d", "198.18.0.4")] { try lab.spawn(n, "iperf3 -s -1 -B \(ip)") }
            usleep(400_000)
            // Three clients at once, each its own process (a shell's `&` + `wait` can hang
            // under the test runner's signal mask).
            let clients = try ["198.18.0.1", "198.18.0.3", "198.18.0.4"].map {
                try lab.spawn("b", "timeout 20 iperf3 -c \($0) -u -b 150M -l 1200 -t 3")
            }
            for c in clients { c.waitUntilExit() }
            let drops = try lab.drops("b", "queue_full")
            let peers = (try lab.status("b")["peers"] as? [[String: Any]]) ?? []
            print("burst to three peers: queue_full \(drops); tx packets \(peers.map { "\($0["fqdn"] ?? ""): \($0["txPackets"] ?? 0)" })")
            // The defect dropped a large share of such a burst; on a machine the other test
            // suites load at the same time, a pool can still run dry for a moment: at most
            // 1 % of what was sent.
            let sent = peers.reduce(0) { $0 + ($1["txPackets"] as? Int ?? 0) }
            #expect(drops * 100 <= sent, "queue_full \(drops) of \(sent) sent")
            #expect(peers.count == 3 && peers.allSatisfy { ($0["txPackets"] as? Int ?? 0) > 10_000 })
        }

        /// A peer that comes back with the same key but new addresses is updated from its
        /// certificate (defect 8): the new address routes, the old one no longer does.
        @Test func peerIdentityFollowsItsCertificate() throws {
            let lab = try NamespaceLab()
            defer { lab.tearDown() }
            let key = try X25519PrivateKey()
            try lab.enrol("a", index: 1, key: key)
            try lab.enrol("b", index: 2)
            try lab.configure("a", peers: [("b", "\(lab.underlayB):30000")])
            try lab.configure("b")
            try lab.start("b", in: "b")
            try lab.start("a", in: "a")
            #expect(try lab.waitForSession("a", peer: "b."))
            #expect(try lab.exec("b", "ping -c 2 -i 0.2 -W 2 198.18.0.1").status == 0)
            lab.stop("a")
            try lab.enrol("a", index: 7, key: key)
            try lab.start("a", in: "a")
            #expect(try lab.waitForSession("a", peer: "b."))
            usleep(500_000)
            let peers = (try lab.status("b")["peers"] as? [[String: Any]]) ?? []
            let a = peers.first { ($0["fqdn"] as? String)?.hasPrefix("a.") == true }
            #expect((a?["addresses"] as? [String])?.contains("198.18.0.7") == true, "\(peers)")
            #expect(try lab.exec("b", "ping -c 2 -i 0.2 -W 2 198.18.0.7").status == 0)
            #expect(try lab.exec("b", "ping -c 1 -W 1 198.18.0.1").status != 0)
        }
    }
}

/// The flood sender run in a namespace: raw IPv4 sockets, spoofed sources from a /24,
/// paced to a rate, half the initiations padded to 1200 bytes. Writes what it achieved.
enum FloodSender {
    static let source = #"""
        import json, os, random, socket, struct, sys, time
        dst, port, prefix, rate, seconds, template, report = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), bytes.fromhex(sys.argv[6]), sys.argv[7]
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        packets = []
        for i in range(2000):
            payload = bytearray(template)
            payload[16:20] = os.urandom(4)
            payload[28:60] = os.urandom(32)
            if i % 2:
                payload += bytes(1200 - len(payload))
            src = "%s.%d" % (prefix, 10 + i % 240)
            udp = struct.pack("!HHHH", random.randint(1024, 65535), port, 8 + len(payload), 0) + bytes(payload)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
            packets.append(ip + udp)
        sent, start = 0, time.monotonic()
        while True:
            now = time.monotonic() - start
            if now >= seconds:
                break
            due = int(now * rate) - sent
            if due <= 0:
                time.sleep(0.0005)
                continue
            for _ in range(min(due, 500)):
                try:
                    s.sendto(packets[sent % len(packets)], (dst, 0))
                except OSError:
                    pass
                sent += 1
        elapsed = time.monotonic() - start
        json.dump({"sent": sent, "seconds": elapsed, "rate": sent / elapsed}, open(report, "w"))
        """#
}
