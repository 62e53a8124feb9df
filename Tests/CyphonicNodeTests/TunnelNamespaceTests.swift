import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import Foundation
import Testing

extension NamespaceSuites {
    /// Real tunnels between real namespaces with real tools (ping, iperf3). Needs root:
    /// skipped with a message otherwise; CI runs them as root.
    @Suite(.serialized, .enabled(if: NamespaceLab.isRoot, "skipped: namespace tests need root (CI runs them as root)"))
    struct TunnelNamespaceTests {
        /// Two nodes, A configured with B as its static peer; B accepts any node of the CA.
        func twoNodes(
            pipeline: String = "multi", withC: Bool = false,
            configureB: (NamespaceLab) throws -> [String: Any] = { _ in [:] }
        ) throws -> NamespaceLab {
            let lab = try NamespaceLab(withC: withC)
            do {
                try lab.enrol("a", index: 1)
                try lab.enrol("b", index: 2)
                try lab.configure("a", peers: [("b", "\(lab.underlayB):30000")], extra: Self.pipelineKeys(pipeline))
                var extra = Self.pipelineKeys(pipeline)
                for (k, v) in try configureB(lab) { extra[k] = v }
                try lab.configure("b", extra: extra)
                try lab.start("b", in: "b")
                try lab.start("a", in: "a")
                guard try lab.waitForSession("a", peer: "b.") else { throw NamespaceLab.LabError.command("session a-b", lab.log("a") + lab.log("b")) }
            } catch {
                lab.tearDown()
                throw error
            }
            return lab
        }

        /// Config keys for a design: "multi" (the default: the crypto workers read the TUN
        /// in turn), "multi-thread" (a TUN reader thread hands batches to the workers, the
        /// paper's layout), or "single".
        static func pipelineKeys(_ pipeline: String) -> [String: Any] {
            pipeline == "multi-thread" ? ["pipeline": "multi", "tunReading": "thread"] : ["pipeline": pipeline]
        }

        func pingLoss(_ output: String) -> String? {
            output.split(separator: "\n").first { $0.contains("packet loss") }.map(String.init)
        }

        @Test(arguments: ["multi", "single", "multi-thread"])
        func pingBothWaysOverIPv4AndIPv6AndIperf(_ pipeline: String) throws {
            let lab = try twoNodes(pipeline: pipeline)
            defer { lab.tearDown() }
            for (from, to) in [("a", "198.18.0.2"), ("a", "2001:db8:c0ff:ee::2"), ("b", "198.18.0.1"), ("b", "2001:db8:c0ff:ee::1")] {
                let r = try lab.exec(from, "ping -c 3 -i 0.2 -W 2 \(to)")
                #expect(r.status == 0, "ping \(to) from \(from): \(r.output)")
                #expect(pingLoss(r.output)?.contains(" 0% packet loss") == true)
            }
            // iperf3 TCP.
            try lab.spawn("b", "iperf3 -s -1 -B 198.18.0.2")
            usleep(300_000)
            let tcp = try lab.exec("a", "iperf3 -c 198.18.0.2 -t 2 -J")
            let tcpJSON = try JSONSerialization.jsonObject(with: Data(tcp.output.utf8)) as? [String: Any]
            let tcpBps = ((tcpJSON?["end"] as? [String: Any])?["sum_received"] as? [String: Any])?["bits_per_second"] as? Double ?? 0
            print("iperf3 TCP through the \(pipeline) pipeline: \(Int(tcpBps / 1e6)) Mbit/s")
            #expect(tcpBps > 10e6, "\(tcp.output.prefix(500))")
            // UDP offload across the veth: a's sends carry runs of datagrams (GSO) and b's
            // receives get them coalesced (GRO); TCP through TUN offload makes long runs.
            let sent = try lab.status("a")["udp"] as? [String: Any] ?? [:]
            let got = try lab.status("b")["udp"] as? [String: Any] ?? [:]
            let perSend = Double(sent["datagramsSent"] as? Int ?? 0) / Double(max(1, sent["sendCalls"] as? Int ?? 0))
            let perReceive = Double(got["datagramsReceived"] as? Int ?? 0) / Double(max(1, got["messagesReceived"] as? Int ?? 0))
            print(
                "UDP offload through the \(pipeline) pipeline: \(sent) -> \(got); \(perSend) datagrams per send call, \(perReceive) per received message"
            )
            #expect(sent["gso"] as? Bool == true && got["gro"] as? Bool == true)
            #expect(perSend > 4 && perReceive > 4)
            // The multi-threaded receiver hands bulk runs to the workers where they landed;
            // the single thread opens every datagram where it landed anyway.
            let notCopied = got["runsNotCopied"] as? Int ?? -1
            #expect(pipeline == "single" ? notCopied == 0 : notCopied > 0, "runs not copied: \(notCopied)")
            // Receive offload towards the TUN: b writes coalesced TCP runs.
            let tun = try lab.status("b")["tun"] as? [String: Any] ?? [:]
            let perWrite = Double(tun["packetsWritten"] as? Int ?? 0) / Double(max(1, tun["writes"] as? Int ?? 0))
            print("TUN writes through the \(pipeline) pipeline: \(tun); \(perWrite) packets per write")
            #expect(perWrite > 4)
            // iperf3 UDP at saturation: no datagram out of order.
            try lab.spawn("b", "iperf3 -s -1 -B 198.18.0.2")
            usleep(300_000)
            let udp = try lab.exec("a", "iperf3 -c 198.18.0.2 -u -b 0 -l 1300 -t 2 -J")
            let end = (try JSONSerialization.jsonObject(with: Data(udp.output.utf8)) as? [String: Any])?["end"] as? [String: Any]
            let stream = ((end?["streams"] as? [[String: Any]])?.first?["udp"]) as? [String: Any]
            let outOfOrder = stream?["out_of_order"] as? Int ?? -1
            let received = (stream?["packets"] as? Int ?? 0) - (stream?["lost_packets"] as? Int ?? 0)
            print("iperf3 UDP at saturation through the \(pipeline) pipeline: \(received) datagrams received, \(outOfOrder) out of order")
            #expect(outOfOrder == 0)
            #expect(received > 1000)
            // The OS thread count is what the pipeline says, not one per peer.
            let status = try lab.status("a")
            let cpus = ProcessInfo.processInfo.activeProcessorCount
            // (single: one thread and control; multi: UDP receiver, control and a worker per
            // CPU, plus the TUN reader thread where the workers do not read the TUN.)
            #expect((status["threads"] as? Int) == ["single": 2, "multi": 2 + cpus, "multi-thread": 3 + cpus][pipeline])
            // Clean shutdown on SIGTERM, interface gone.
            #expect(lab.stop("a") == 0)
            #expect(lab.log("a").contains("shut down cleanly"))
            #expect(try lab.exec("a", "ip link show cyph0").status != 0)
        }

        func iperfTCP(_ lab: NamespaceLab, from: String, to server: String, in serverNS: String) throws -> Double {
            try lab.spawn(serverNS, "iperf3 -s -1 -B \(server)")
            usleep(300_000)
            let r = try lab.exec(from, "iperf3 -c \(server) -t 2 -J")
            let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
            return ((json?["end"] as? [String: Any])?["sum_received"] as? [String: Any])?["bits_per_second"] as? Double ?? 0
        }

        /// A node with every offload off talks to one with them on: the datagrams on the
        /// wire are the same either way.
        @Test func nodesWithAndWithoutOffloadsInteroperate() throws {
            let lab = try twoNodes(configureB: { _ in ["udpOffload": false, "tun": ["offload": false], "metrics": "127.0.0.1:19452"] })
            defer { lab.tearDown() }
            let ab = try iperfTCP(lab, from: "a", to: "198.18.0.2", in: "b")
            let ba = try iperfTCP(lab, from: "b", to: "198.18.0.1", in: "a")
            print("offloads on (A) <-> off (B): TCP A->B \(Int(ab / 1e6)) Mbit/s, B->A \(Int(ba / 1e6)) Mbit/s")
            #expect(ab > 10e6 && ba > 10e6)
            let udpA = try lab.status("a")["udp"] as? [String: Any] ?? [:]
            let udpB = try lab.status("b")["udp"] as? [String: Any] ?? [:]
            let tunB = try lab.status("b")["tun"] as? [String: Any] ?? [:]
            #expect(udpA["gso"] as? Bool == true && (udpA["gsoRefused"] as? Int) == 0)
            #expect(udpB["gso"] as? Bool == false && udpB["gro"] as? Bool == false && tunB["offload"] as? Bool == false)
            // B without GRO sees every datagram on its own, and writes every packet on its own.
            #expect((udpB["datagramsReceived"] as? Int ?? -1) == (udpB["messagesReceived"] as? Int ?? -2))
            #expect((udpB["datagramsReceived"] as? Int ?? 0) > 1000)
            #expect((tunB["writes"] as? Int ?? -1) == (tunB["packetsWritten"] as? Int ?? -2))
            #expect((tunB["packetsWritten"] as? Int ?? 0) > 1000)
            // The automatic TUN queue: 64 super-packets with offload, 128 packets without.
            #expect(try lab.exec("a", "ip link show cyph0").output.contains("qlen 64"))
            #expect(try lab.exec("b", "ip link show cyph0").output.contains("qlen 128"))
            // The same figures as Prometheus metrics (mirrored once a second).
            usleep(1_500_000)
            let metrics = try lab.exec("b", "curl -s http://127.0.0.1:19452/metrics").output
            func metric(_ name: String) -> Double? {
                metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
            }
            #expect((metric("cyphonic_node_udp_datagrams_received_total") ?? 0) > 1000, "\(metrics.prefix(2000))")
            #expect(metric("cyphonic_node_udp_datagrams_received_total") == metric("cyphonic_node_udp_messages_received_total"))
            #expect((metric("cyphonic_node_tun_packets_written_total") ?? 0) > 1000)
            #expect(metric("cyphonic_node_udp_gso_refused_total") == 0)
        }

        /// When the kernel refuses GSO — here A's underlay MTU drops to 1400 while the
        /// tunnel runs, below a full datagram (1420 + 32 + 28 bytes), so `UDP_SEGMENT` fails
        /// with EMSGSIZE — A resends those runs as plain datagrams, which the kernel
        /// fragments, and traffic keeps flowing.
        @Test func gsoFallsBackToPlainDatagramsWhenRefused() throws {
            let lab = try twoNodes()
            defer { lab.tearDown() }
            #expect(try iperfTCP(lab, from: "a", to: "198.18.0.2", in: "b") > 10e6)
            #expect((try lab.status("a")["udp"] as? [String: Any])?["gsoRefused"] as? Int == 0)
            try lab.sh("ip -n \(lab.ns("a")) link set \(lab.tag)a0 mtu 1400")
            let ab = try iperfTCP(lab, from: "a", to: "198.18.0.2", in: "b")
            let udpA = try lab.status("a")["udp"] as? [String: Any] ?? [:]
            print("GSO refused: TCP A->B \(Int(ab / 1e6)) Mbit/s, \(udpA)")
            #expect((udpA["gsoRefused"] as? Int ?? 0) >= 1)
            #expect(ab > 10e6)
            let ping = try lab.exec("a", "ping -c 3 -i 0.2 -W 2 -s 1300 198.18.0.2")
            #expect(ping.status == 0, "\(ping.output)")
        }

        /// Per-peer activity is data, not threads (paper Fig. 8): B's OS thread count (from
        /// /proc) is the same with one peer and with two, each with traffic.
        @Test func osThreadsDoNotGrowWithPeers() throws {
            let lab = try twoNodes(withC: true)
            defer { lab.tearDown() }
            #expect(try lab.exec("a", "ping -c 3 -i 0.2 -W 2 198.18.0.2").status == 0)
            let one = try lab.status("b")
            try lab.enrol("c", index: 3)
            try lab.configure("c", peers: [("b", "\(lab.underlayBFromC):30000")])
            try lab.start("c", in: "c")
            #expect(try lab.waitForSession("c", peer: "b."))
            #expect(try lab.exec("c", "ping -c 3 -i 0.2 -W 2 198.18.0.2").status == 0)
            #expect(try lab.exec("a", "ping -c 3 -i 0.2 -W 2 198.18.0.2").status == 0)
            let two = try lab.status("b")
            let peersOne = (one["peers"] as? [Any])?.count ?? 0
            let peersTwo = (two["peers"] as? [Any])?.count ?? 0
            print("B: \(peersOne) peer(s) -> \(one["osThreads"] ?? "?") OS threads; \(peersTwo) peers -> \(two["osThreads"] ?? "?") OS threads")
            #expect(peersOne == 1 && peersTwo == 2)
            #expect((one["osThreads"] as? Int ?? -1) == (two["osThreads"] as? Int ?? -2))
            // UDP receiver, control and a worker per CPU (the workers read the TUN by default).
            #expect((two["threads"] as? Int) == 2 + ProcessInfo.processInfo.activeProcessorCount)
        }

        @Test func rekeyingKeepsTrafficFlowing() throws {
            // A rekeys every 2 s; a 6-second ping must not lose a packet across the switches.
            let lab = try NamespaceLab()
            defer { lab.tearDown() }
            try lab.enrol("a", index: 1)
            try lab.enrol("b", index: 2)
            try lab.configure("a", peers: [("b", "\(lab.underlayB):30000")], extra: ["rekeyAfterSeconds": 2])
            try lab.configure("b")
            try lab.start("b", in: "b")
            try lab.start("a", in: "a")
            #expect(try lab.waitForSession("a", peer: "b."))
            let ping = try lab.exec("a", "ping -c 60 -i 0.1 -W 2 198.18.0.2")
            #expect(pingLoss(ping.output)?.contains(" 0% packet loss") == true, "\(ping.output.suffix(300))")
            let peers = try lab.status("a")["peers"] as? [[String: Any]] ?? []
            let handshakes = peers.first?["handshakes"] as? Int ?? 0
            print("rekeying: \(handshakes) handshakes with B during a 6 s ping, \(pingLoss(ping.output) ?? "?")")
            #expect(handshakes >= 3)
        }

        @Test func theOtherSideRekeysWhenTheInitiatorDoesNot() throws {
            // A made the session and rekeys only at 170 s; B, which did not make it, must
            // not wait for that: it rekeys halfway from its own rekeyAfterSeconds (1 s) to
            // the session's end at 180 s, at 90.5 s (crossed handshakes leave both sides
            // responders; then nobody is "the initiator"). No ping may be lost across it.
            let lab = try NamespaceLab()
            defer { lab.tearDown() }
            try lab.enrol("a", index: 1)
            try lab.enrol("b", index: 2)
            try lab.configure("a", peers: [("b", "\(lab.underlayB):30000")], extra: ["rekeyAfterSeconds": 170])
            try lab.configure("b", extra: ["rekeyAfterSeconds": 1])
            try lab.start("b", in: "b")
            try lab.start("a", in: "a")
            #expect(try lab.waitForSession("a", peer: "b."))
            func handshakes(_ node: String) throws -> Int {
                let peers = try lab.status(node)["peers"] as? [[String: Any]] ?? []
                return peers.first?["handshakes"] as? Int ?? -1
            }
            let ping = try lab.exec("a", "ping -c 80 -i 0.5 -W 2 198.18.0.2")
            #expect(pingLoss(ping.output)?.contains(" 0% packet loss") == true, "\(ping.output.suffix(300))")
            #expect(try handshakes("b") == 1, "no rekey in the first 40 s")
            let later = try lab.exec("a", "ping -c 110 -i 0.5 -W 2 198.18.0.2")
            #expect(pingLoss(later.output)?.contains(" 0% packet loss") == true, "\(later.output.suffix(300))")
            let (byA, byB) = (try handshakes("a"), try handshakes("b"))
            print("fallback rekey: handshakes after 95 s: A \(byA), B \(byB); \(pingLoss(later.output) ?? "?")")
            #expect(byB >= 2 && byA >= 2, "B rekeyed at 90.5 s")
        }

        @Test func idleSessionsAreTornDown() throws {
            // B gives up on a session after 2 s without a packet; A stays silent (keepalive 50 s).
            let lab = try NamespaceLab()
            defer { lab.tearDown() }
            try lab.enrol("a", index: 1)
            try lab.enrol("b", index: 2)
            try lab.configure("a", peers: [("b", "\(lab.underlayB):30000")], extra: ["keepaliveSeconds": 50, "idleTimeoutSeconds": 100])
            try lab.configure("b", extra: ["keepaliveSeconds": 1, "idleTimeoutSeconds": 2])
            try lab.start("b", in: "b")
            try lab.start("a", in: "a")
            #expect(try lab.waitForSession("b", peer: "a."))
            var torn = false
            for _ in 0..<60 where !torn {
                usleep(100_000)
                let peers = try lab.status("b")["peers"] as? [[String: Any]] ?? []
                // Ended: the session is gone (and a peer without one is soon forgotten).
                torn = peers.first { ($0["fqdn"] as? String) == "a.cyphonic.internal" }.map { $0["handshakeAgeSeconds"] == nil } ?? true
            }
            #expect(torn)
            #expect(lab.log("b").contains("ended (idle)"))
        }

        @Test func hostileDatagramsAreCountedAndDroppedWhilePingContinues() throws {
            let lab = try twoNodes()
            defer { lab.tearDown() }
            let script = lab.dir + "/hostile.py"
            try Self.hostileScript.write(toFile: script, atomically: true, encoding: .utf8)
            // A steady ping from A while A's namespace also replays, tampers and sprays garbage at B.
            let ping = Process()
            ping.executableURL = URL(fileURLWithPath: "/sbin/ip")
            ping.arguments = ["netns", "exec", lab.ns("a"), "ping", "-c", "30", "-i", "0.1", "-W", "2", "198.18.0.2"]
            let pipe = Pipe()
            ping.standardOutput = pipe
            try ping.run()
            let hostile = try lab.exec("a", "python3 \(script) \(lab.tag)a0 \(lab.underlayB) 30000")
            print("hostile sender: \(hostile.output.trimmingCharacters(in: .whitespacesAndNewlines))")
            #expect(hostile.status == 0, "\(hostile.output)")
            let pingOut = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            ping.waitUntilExit()
            #expect(pingLoss(pingOut)?.contains(" 0% packet loss") == true, "\(pingOut)")
            let replay = try lab.drops("b", "replay")
            let auth = try lab.drops("b", "authentication_failed")
            let header = try lab.drops("b", "bad_header")
            let unknown = try lab.drops("b", "unknown_session")
            let control = try lab.status("b")["badControlDatagrams"] as? Int ?? 0
            print(
                "B dropped: replay \(replay), authentication_failed \(auth), bad_header \(header), unknown_session \(unknown), bad control \(control)"
            )
            #expect(replay == 5)
            #expect(auth == 5)
            // Random bytes that happen to start like a control message go to the control plane's counter.
            #expect(header + unknown + control >= 200)
        }

        @Test func peersWithForeignExpiredOrRevokedCertificatesAreRefused() throws {
            let revokedSerial: UInt64 = 4242
            // B holds a CA-signed revocation list naming one serial.
            let lab = try twoNodes(withC: true) { lab in
                let crl = try RevocationList.sign(by: lab.ca, serials: [revokedSerial], number: 1, nextUpdate: lab.now + 86_400)
                try crl.pemString.write(toFile: lab.dir + "/crl.pem", atomically: true, encoding: .utf8)
                return ["crl": lab.dir + "/crl.pem"]
            }
            defer { lab.tearDown() }

            let foreign = try CertificateAuthority.create(name: "Lab CA", key: try Ed25519PrivateKey(), serial: 1, validFrom: lab.now - 3600)
            let cases: [(String, () throws -> Void)] = [
                ("another CA", { try lab.enrol("c", index: 3, ca: foreign) }),
                ("expired", { try lab.enrol("c", index: 3, validFrom: lab.now - 40 * 86_400, days: 30) }),
                ("revoked", { try lab.enrol("c", index: 3, serial: revokedSerial) }),
            ]
            for (what, make) in cases {
                try make()
                try lab.configure("c", peers: [("b", "\(lab.underlayBFromC):30000")])
                let refusedBefore = try lab.status("b")["handshakesRefused"] as? Int ?? 0
                try lab.start("c", in: "c")
                var refused = refusedBefore
                for _ in 0..<60 where refused == refusedBefore {
                    usleep(100_000)
                    refused = try lab.status("b")["handshakesRefused"] as? Int ?? 0
                }
                print("B refused a peer certificate from \(what): handshakesRefused \(refusedBefore) -> \(refused)")
                #expect(refused > refusedBefore, "\(what): \(lab.log("b").suffix(800))")
                let peers = try lab.status("b")["peers"] as? [[String: Any]] ?? []
                #expect(!peers.contains { ($0["fqdn"] as? String) == "c.cyphonic.internal" }, "\(what)")
                #expect(try lab.exec("c", "ping -c 1 -W 1 198.18.0.2").status != 0)
                lab.stop("c")
            }
            // B still serves A.
            #expect(try lab.exec("a", "ping -c 2 -i 0.2 -W 2 198.18.0.2").status == 0)
        }

        /// Captures one capsule A sends to B (AF_PACKET on A's veth), then replays it five
        /// times, sends five tampered copies, and 200 random datagrams, to B's port.
        static let hostileScript = #"""
            import os, random, socket, struct, sys, time
            ifname, target, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
            sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
            sniff.bind((ifname, 0))
            sniff.settimeout(5)
            capsule = None
            deadline = time.time() + 5
            while capsule is None and time.time() < deadline:
                frame = sniff.recv(65535)
                if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                    continue
                ihl = (frame[14] & 0x0F) * 4
                udp = 14 + ihl
                dport = struct.unpack("!H", frame[udp + 2:udp + 4])[0]
                payload = frame[udp + 8:]
                if dport == port and len(payload) > 32 and payload[0] == 1 and payload[1] == 7:
                    capsule = payload
            if capsule is None:
                print("no capsule captured"); sys.exit(1)
            out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(5):
                out.sendto(capsule, (target, port))
            for i in range(5):
                bad = bytearray(capsule); bad[-1 - i] ^= 0x5A
                out.sendto(bytes(bad), (target, port))
            for _ in range(200):
                out.sendto(os.urandom(random.randint(0, 1400)), (target, port))
                time.sleep(0.001)
            print("captured a %d-byte capsule; sent 5 replays, 5 tampered, 200 random" % len(capsule))
            """#
    }
}
