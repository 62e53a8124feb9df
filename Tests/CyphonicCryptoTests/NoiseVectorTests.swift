import CyphonicCore
import Foundation
import Testing

@testable import CyphonicCrypto

/// The published Noise vectors (cacophony, every fundamental and deferred pattern with
/// 25519/SHA256, AESGCM and ChaChaPoly), run through our HandshakeState message by
/// message, then through the transport CipherStates.
@Suite struct NoiseVectorTests {
    struct VectorFile: Decodable { let vectors: [Vector] }
    struct Vector: Decodable {
        let protocol_name: String
        let init_prologue: String
        let init_ephemeral: String
        let init_static: String?
        let init_remote_static: String?
        let resp_prologue: String
        let resp_ephemeral: String?
        let resp_static: String?
        let resp_remote_static: String?
        let handshake_hash: String
        let messages: [Message]
    }
    struct Message: Decodable {
        let payload: String
        let ciphertext: String
    }
    enum VectorError: Error { case badHex(String) }

    static func loadVectors() throws -> [Vector] {
        let url = try #require(
            Bundle.module.url(
                forResource: "noise-25519-sha256", withExtension: "json",
                subdirectory: "Fixtures"))
        return try JSONDecoder().decode(VectorFile.self, from: Data(contentsOf: url)).vectors
    }

    static func hex(_ s: String?) throws -> [UInt8]? {
        guard let s else { return nil }
        guard let bytes = Hex.decode(s) else { throw VectorError.badHex(s) }
        return bytes
    }

    /// Runs one vector; returns nil on success or the reason it failed.
    static func run(_ v: Vector) throws -> String? {
        let proto = try #require(NoiseProtocol(name: v.protocol_name), "unsupported \(v.protocol_name)")
        func key(_ s: String?) throws -> X25519PrivateKey? { try hex(s).map { try X25519PrivateKey(rawRepresentation: $0) } }
        func pub(_ s: String?) throws -> X25519PublicKey? { try hex(s).map { try X25519PublicKey(bytes: $0) } }
        let initiator = try NoiseHandshake(
            protocol: proto, role: .initiator, prologue: try hex(v.init_prologue)!,
            localStatic: try key(v.init_static), remoteStatic: try pub(v.init_remote_static),
            ephemeral: try key(v.init_ephemeral))
        let responder = try NoiseHandshake(
            protocol: proto, role: .responder, prologue: try hex(v.resp_prologue)!,
            localStatic: try key(v.resp_static), remoteStatic: try pub(v.resp_remote_static),
            ephemeral: try key(v.resp_ephemeral))
        let handshakeCount = proto.pattern.messages.count
        var transport:
            (
                i: (send: NoiseCipherState, receive: NoiseCipherState),
                r: (send: NoiseCipherState, receive: NoiseCipherState)
            )?
        for (index, message) in v.messages.enumerated() {
            let payload = try hex(message.payload)!
            let expected = try hex(message.ciphertext)!
            let initiatorSends = proto.pattern.isOneWay || index % 2 == 0
            if index < handshakeCount {
                let (writer, reader) = initiatorSends ? (initiator, responder) : (responder, initiator)
                let wire = try writer.writeMessage(payload: payload)
                guard wire == expected else { return "handshake message \(index) ciphertext differs" }
                guard try reader.readMessage(wire) == payload else { return "handshake message \(index) payload differs" }
                if index == handshakeCount - 1 {
                    guard initiator.handshakeHash == (try hex(v.handshake_hash)!),
                        responder.handshakeHash == initiator.handshakeHash
                    else { return "handshake hash differs" }
                    transport = (try initiator.split(), try responder.split())
                }
            } else {
                guard let t = transport else { return "transport before handshake end" }
                let (send, receive) = initiatorSends ? (t.i.send, t.r.receive) : (t.r.send, t.i.receive)
                let wire = try send.encrypt(ad: [], plaintext: payload)
                guard wire == expected else { return "transport message \(index) ciphertext differs" }
                guard try receive.decrypt(ad: [], ciphertext: wire) == payload else {
                    return "transport message \(index) payload differs"
                }
            }
        }
        return transport == nil ? "handshake did not complete" : nil
    }

    @Test func everyVectorPasses() throws {
        let vectors = try Self.loadVectors()
        #expect(vectors.count == 76)
        var passed: [String: Int] = [:]
        var failures: [String] = []
        for v in vectors {
            if let reason = try Self.run(v) {
                failures.append("\(v.protocol_name): \(reason)")
            } else {
                passed[v.protocol_name, default: 0] += 1
            }
        }
        #expect(failures.isEmpty, "\(failures)")
        // Summary per pattern and cipher (kept in the test log).
        var table: [String: [String: Int]] = [:]
        for (name, count) in passed {
            let parts = name.split(separator: "_")
            table[String(parts[1]), default: [:]][String(parts[3])] = count
        }
        print("Noise vectors passed: \(passed.values.reduce(0, +)) of \(vectors.count)")
        for pattern in table.keys.sorted() {
            let row = table[pattern]!
            print("  \(pattern): AESGCM \(row["AESGCM"] ?? 0), ChaChaPoly \(row["ChaChaPoly"] ?? 0)")
        }
        #expect(Set(table.keys) == Set(NoisePattern.all.keys))
    }

    @Test func xxAndIXAreAmongThePassingPatterns() throws {
        let vectors = try Self.loadVectors().filter { $0.protocol_name.hasPrefix("Noise_XX_") || $0.protocol_name.hasPrefix("Noise_IX_") }
        #expect(vectors.count == 4)
        for v in vectors { #expect(try Self.run(v) == nil, "\(v.protocol_name)") }
    }

    @Test func aTamperedVectorMessageIsRejected() throws {
        let v = try #require(try Self.loadVectors().first { $0.protocol_name == "Noise_XX_25519_AESGCM_SHA256" })
        let proto = try #require(NoiseProtocol(name: v.protocol_name))
        let i = try NoiseHandshake(protocol: proto, role: .initiator, localStatic: try X25519PrivateKey())
        let r = try NoiseHandshake(protocol: proto, role: .responder, localStatic: try X25519PrivateKey())
        _ = try r.readMessage(try i.writeMessage())
        var m2 = try r.writeMessage(payload: Array("cert".utf8))
        m2[40] ^= 1  // inside the encrypted static key
        #expect(throws: NoiseError.crypto(.authenticationFailed)) { try i.readMessage(m2) }
    }
}
