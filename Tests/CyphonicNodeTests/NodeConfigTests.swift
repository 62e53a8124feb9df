import CyphonicCore
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
        #expect(c.tunReading == "workers")
        #expect(try load(#"{"stateDir": "/x", "tunReading": "thread"}"#).tunReading == "thread")
    }

    @Test func badValuesNameTheirKey() {
        #expect(message(#"{"stateDir": "/x", "tun": {"mtu": 100}}"#) == "config key tun.mtu: must be 576...9000")
        #expect(message(#"{"stateDir": "/x", "pipeline": "fast"}"#) == "config key pipeline: fast must be multi or single")
        #expect(message(#"{"stateDir": "/x", "tunReading": "reader"}"#) == "config key tunReading: reader must be thread or workers")
        #expect(message(#"{"stateDir": "/x", "poolSize": 512}"#) == "config key poolSize: 8...128")
        #expect(message(#"{"stateDir": "/x", "listen": "nowhere"}"#).hasPrefix("config key listen:"))
        #expect(message(#"{"stateDir": "/x", "peers": [{"fqdn": "-bad-", "endpoint": "1.2.3.4:5"}]}"#).hasPrefix("config key peers[0].fqdn:"))
        #expect(message(#"{"stateDir": "/x", "peers": [{"fqdn": "a.b"}]}"#) == "config key peers[0].endpoint: is required")
        #expect(message(#"{"stateDir": "/x", "tun": {"mtu": "big"}}"#).hasPrefix("config key tun.mtu:"))
        #expect(message(#"{"stateDir": "/x", "keepalive": 5}"#) == "config key keepalive: unknown key")
        #expect(message(#"{}"#) == "config key key: is required (or stateDir)")
        #expect(message("not json").contains("is not valid JSON: line 1, column 1: unknown word"))
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
        #expect(
            message(#"{"stateDir": "/x", "nms": ["nowhere"]}"#)
                == "config key nms[0]: nowhere is not HOST:PORT (an IP address or a DNS name, then a port)")
        #expect(try load(#"{"stateDir": "/x", "nms": ["nms.example.net:4502"]}"#).nms == ["nms.example.net:4502"])
        #expect(message(#"{"stateDir": "/x", "resolver": {"listen": ["127.0.0.53"]}}"#).hasPrefix("config key resolver.listen[0]:"))
        #expect(message(#"{"stateDir": "/x", "resolver": {"upstream": ["x:y"]}}"#).hasPrefix("config key resolver.upstream[0]:"))
        #expect(message(#"{"stateDir": "/x", "resolver": {"timeoutSeconds": 0}}"#) == "config key resolver.timeoutSeconds: must be > 0 and <= 30")
        #expect(message(#"{"stateDir": "/x", "resolver": {"domain": "-x-"}}"#).hasPrefix("config key resolver.domain:"))
        #expect(message(#"{"stateDir": "/x", "resolver": {"port": 53}}"#) == "config key resolver.port: unknown key")
        #expect(message(#"{"stateDir": "/x", "reopenSeconds": -1}"#).hasPrefix("config key reopenSeconds: must be 0...604800"))
        #expect(try load(#"{"stateDir": "/x", "reopenSeconds": 0}"#).reopenSeconds == 0)
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
        #expect(c.peers.isEmpty && c.pipeline == "multi" && c.enroll?.tokenFile == "/etc/cyphonic/token")
        #expect(c.control == "/run/cyphonic-node/cyphonic-node.sock" && c.resolver.listen == ["127.0.0.53:53"])
    }
}

/// The JSON syntax check a config passes first: where and why, in words.
@Suite struct JSONSyntaxTests {
    func problem(_ text: String) -> String? {
        do {
            try JSONSyntax.check(Array(text.utf8))
            return nil
        } catch { return error.description }
    }

    @Test func wellFormedDocumentsPass() {
        for ok in [#"{}"#, #"[]"#, #"{"a": [1, -2.5e3, true, false, null, "x\"\u00e9"]}"#, "  {\n \"a\" : { \"b\" : [ ] } }\n", #""s""#, "0"] {
            #expect(problem(ok) == nil, "\(ok)")
        }
    }

    @Test func problemsSayLineColumnAndWhat() {
        #expect(problem("{\n  \"a\": 1,\n}") == "line 3, column 1: a trailing comma before '}' is not allowed in JSON")
        #expect(problem("[1, 2,]") == "line 1, column 7: a trailing comma before ']' is not allowed in JSON")
        #expect(problem("{\"a\": 1") == "line 1, column 8: the file ends early: 1 unclosed '{' or '['")
        #expect(problem("{\"a\" 1}") == "line 1, column 6: expected ':' after the key")
        #expect(problem("{'a': 1}") == "line 1, column 2: expected a key in double quotes")
        #expect(problem("{\"a\": yes}") == "line 1, column 7: expected a value")
        #expect(problem("{\"a\": nul}") == "line 1, column 7: unknown word (true, false and null are the only ones)")
        #expect(problem("{\"a\": \"x\n\"}") == "line 1, column 9: a string runs past the end of the line")
        #expect(problem("{\"a\": 01}") == "line 1, column 8: expected ',' or '}'")
        #expect(problem("{} {}") == "line 1, column 4: more text after the end of the document")
        #expect(problem("") == "line 1, column 1: the document is empty")
    }

    /// Random bytes and deep nesting never trap; what we accept Foundation's parser
    /// accepts too (it is lenient about trailing commas, and refuses numbers beyond a
    /// Double's range, which are well-formed JSON).
    @Test func randomInputNeverTrapsAndAgreesWithFoundation() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array(#"{}[],:"\ 0123456789.-+eEtrufalsn"#.utf8) + [0x0a, 0x41]
        for _ in 0..<20_000 {
            let bytes = (0..<Int.random(in: 0...24, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            let ours = (try? JSONSyntax.check(bytes)) != nil
            let foundation = (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil
            let hugeNumber = bytes.contains(UInt8(ascii: "e")) || bytes.contains(UInt8(ascii: "E"))
            if ours, !hugeNumber { #expect(foundation, "we accept what Foundation refuses: \(String(decoding: bytes, as: UTF8.self))") }
        }
        #expect((try? JSONSyntax.check(Array(repeating: UInt8(ascii: "["), count: 100_000))) == nil)
    }
}
