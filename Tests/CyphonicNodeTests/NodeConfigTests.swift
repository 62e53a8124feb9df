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

    /// Signaling, enrolment and resolver keys: defaults, and bad values name the key.
    @Test func signalingAndResolverKeys() throws {
        let c = try load(#"{"stateDir": "/x"}"#)
        #expect(c.nms == nil && c.login && c.enroll == nil)
        #expect(c.resolver.enabled && c.resolver.listen == ["127.0.0.53:53"] && c.resolver.upstream.isEmpty && c.resolver.timeoutSeconds == 3)
        let e = try load(#"{"stateDir": "s", "enroll": {"asEndpoint": "198.19.0.2:4501", "ca": "ca.pem", "tokenFile": "t"}}"#)
        #expect(e.enroll?.ca.hasSuffix("/ca.pem") == true && e.enroll?.tokenFile.hasPrefix("/") == true)
        #expect(message(#"{"stateDir": "/x", "nms": ["nowhere"]}"#) == "config key nms[0]: nowhere is not HOST:PORT or [V6]:PORT")
        #expect(message(#"{"stateDir": "/x", "resolver": {"listen": ["127.0.0.53"]}}"#).hasPrefix("config key resolver.listen[0]:"))
        #expect(message(#"{"stateDir": "/x", "resolver": {"upstream": ["x:y"]}}"#).hasPrefix("config key resolver.upstream[0]:"))
        #expect(message(#"{"stateDir": "/x", "resolver": {"timeoutSeconds": 0}}"#) == "config key resolver.timeoutSeconds: must be > 0 and <= 30")
        #expect(message(#"{"stateDir": "/x", "resolver": {"domain": "-x-"}}"#).hasPrefix("config key resolver.domain:"))
        #expect(message(#"{"stateDir": "/x", "resolver": {"port": 53}}"#) == "config key resolver.port: unknown key")
        #expect(
            message(#"{"stateDir": "/x", "enroll": {"asEndpoint": "bad", "ca": "c", "tokenFile": "t"}}"#).hasPrefix("config key enroll.asEndpoint:"))
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
