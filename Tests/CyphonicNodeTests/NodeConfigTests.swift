import Foundation
import Testing

@testable import CyphonicNode

@Suite struct NodeConfigTests {
    func load(_ json: String) throws -> NodeConfig {
        let path = NSTemporaryDirectory() + "cyphonic-config-\(UUID().uuidString).json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try NodeConfig.load(path: path)
    }

    func message(_ json: String) -> String {
        do {
            _ = try load(json)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test func defaultsAndStateDirResolution() throws {
        let c = try load(#"{"stateDir": "/var/lib/n1"}"#)
        #expect(c.key == "/var/lib/n1/node.key" && c.certificate == "/var/lib/n1/node.pem" && c.ca == "/var/lib/n1/ca.pem")
        #expect(c.tun.mtu == 1420 && c.tun.name == "cyph0" && c.pipeline == "multi" && c.listen == "[::]:30000")
    }

    @Test func badValuesNameTheirKey() {
        #expect(message(#"{"stateDir": "/x", "tun": {"mtu": 100}}"#) == "config key tun.mtu: must be 576...9000")
        #expect(message(#"{"stateDir": "/x", "pipeline": "fast"}"#) == "config key pipeline: multi or single")
        #expect(message(#"{"stateDir": "/x", "poolSize": 512}"#) == "config key poolSize: 8...128")
        #expect(message(#"{"stateDir": "/x", "listen": "nowhere"}"#).hasPrefix("config key listen:"))
        #expect(message(#"{"stateDir": "/x", "peers": [{"fqdn": "-bad-", "endpoint": "1.2.3.4:5"}]}"#).hasPrefix("config key peers[0].fqdn:"))
        #expect(
            message(#"{"stateDir": "/x", "peers": [{"fqdn": "a.b"}]}"#).hasPrefix("config key peers.0.endpoint")
                || message(#"{"stateDir": "/x", "peers": [{"fqdn": "a.b"}]}"#).contains("endpoint"))
        #expect(message(#"{"stateDir": "/x", "tun": {"mtu": "big"}}"#).hasPrefix("config key tun.mtu:"))
        #expect(message(#"{"stateDir": "/x", "keepalive": 5}"#) == "config key keepalive: unknown key")
        #expect(message(#"{}"#) == "config key key: is required (or stateDir)")
        #expect(message("not json").hasPrefix("config key"))
        #expect(message(#"{"stateDir": "/x", "udpReceiveBuffer": -1}"#) == "config key udpReceiveBuffer: 0...67108864 bytes")
        #expect(message(#"{"stateDir": "/x", "udpOffload": "yes"}"#).hasPrefix("config key udpOffload:"))
    }

    @Test func theTunQueueLengthFollowsOffloadUnlessSet() throws {
        #expect(try load(#"{"stateDir": "/x"}"#).effectiveTxQueueLength == 64)
        #expect(try load(#"{"stateDir": "/x", "pipeline": "single"}"#).effectiveTxQueueLength == 8)
        #expect(try load(#"{"stateDir": "/x", "tun": {"offload": false}}"#).effectiveTxQueueLength == 128)
        #expect(try load(#"{"stateDir": "/x", "pipeline": "single", "tun": {"offload": false}}"#).effectiveTxQueueLength == 128)
        #expect(try load(#"{"stateDir": "/x", "tun": {"offload": false, "txQueueLength": 50}}"#).effectiveTxQueueLength == 50)
        #expect(message(#"{"stateDir": "/x", "tun": {"txQueueLength": -1}}"#) == "config key tun.txQueueLength: must be 0 (automatic) ... 10000")
    }

    /// The documented example is a valid config with the documented defaults.
    @Test func theExampleConfigLoads() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/node.json").path
        let c = try NodeConfig.load(path: example)
        let defaults = try load(#"{"stateDir": "/x"}"#)
        #expect(c.udpOffload == defaults.udpOffload && c.udpReceiveBuffer == defaults.udpReceiveBuffer)
        #expect(c.tun.offload && c.udpOffload && c.udpReceiveBuffer == 1_048_576)
        #expect(c.peers.count == 1 && c.pipeline == "multi")
    }
}
