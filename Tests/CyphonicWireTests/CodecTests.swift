import CyphonicCore
import Foundation
import Testing

@testable import CyphonicWire

@Suite struct CodecTests {
    @Test func headerLayoutIsAsDocumented() {
        let h = Header(type: .capsule, status: .ok, flags: .control, receiverIndex: 0x0102_0304, counter: 0x0a0b_0c0d_0e0f_1011)
        #expect(h.bytes == [1, 7, 0, 1, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11])
        #expect(h.bytes.withUnsafeBytes { try? Header.decode($0) } == h)
    }

    /// The data plane's direct read of a capsule header agrees with the codec on every
    /// header: all 256 values of each of the first four bytes (with the others valid),
    /// random headers, and short input.
    @Test func capsuleFieldsAgreeWithTheDecoder() {
        func agree(_ bytes: [UInt8]) {
            let fast = bytes.withUnsafeBytes { Header.capsuleFields($0) }
            let decoded = bytes.withUnsafeBytes { try? Header.decode($0) }
            let expected = decoded.flatMap { $0.type == .capsule ? ($0.receiverIndex, $0.counter) : nil }
            #expect(fast?.receiverIndex == expected?.0 && fast?.counter == expected?.1, "\(bytes)")
        }
        let valid = Header(type: .capsule, receiverIndex: 0xdead_beef, counter: 0x0102_0304_0506_0708).bytes
        #expect(valid.withUnsafeBytes { Header.capsuleFields($0) }?.receiverIndex == 0xdead_beef)
        #expect(valid.withUnsafeBytes { Header.capsuleFields($0) }?.counter == 0x0102_0304_0506_0708)
        for position in 0..<4 {
            for value in 0...255 {
                var b = valid
                b[position] = UInt8(value)
                agree(b)
            }
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            var b = (0..<Header.size).map { _ in UInt8.random(in: 0...255, using: &generator) }
            // Mostly near-valid headers, so that the interesting branches are reached.
            b[0] = Bool.random() ? CyphonicVersion.protocolVersion : b[0]
            b[1] = Bool.random() ? MessageType.capsule.rawValue : b[1]
            b[2] = Bool.random() ? UInt8.random(in: 0...15) : b[2]
            b[3] = Bool.random() ? UInt8.random(in: 0...3) : b[3]
            agree(b)
        }
        for n in 0..<Header.size { agree(Array(valid.prefix(n))) }
    }

    @Test func everyDatagramRoundTrips() throws {
        #expect(Set(Samples.datagrams.map(\.header.type)) == Set(MessageType.allCases))
        for d in Samples.datagrams {
            let bytes = try d.encode()
            #expect(try Datagram.decode(bytes) == d, "\(d.body.type)")
        }
    }

    @Test func everySignalingMessageRoundTrips() throws {
        #expect(Set(Samples.signaling.map(\.body.kind)) == Set(1...19))
        for m in Samples.signaling {
            #expect(try SignalingMessage.decode(try m.encode()) == m, "kind \(m.body.kind)")
        }
    }

    @Test func everyTruncationIsATypedError() throws {
        for d in Samples.datagrams {
            let bytes = try d.encode()
            for n in 0..<bytes.count {
                // A shorter capsule/signaling body is still well-formed when ≥ 16 bytes remain.
                let prefix = Array(bytes.prefix(n))
                if let shorter = try? Datagram.decode(prefix) {
                    #expect(
                        [
                            .capsule, .signaling, .handshakeCompletion, .handshakeInitiation, .handshakeResponse,
                            .tunnelRequest, .tunnelResponse,
                        ].contains(shorter.header.type))
                }
            }
            #expect(throws: DecodeError.self) { try Datagram.decode(Array(bytes.prefix(Header.size - 1))) }
        }
        for m in Samples.signaling {
            let bytes = try m.encode()
            for n in 0..<bytes.count {
                #expect(throws: DecodeError.self, "kind \(m.body.kind) cut at \(n)") {
                    try SignalingMessage.decode(Array(bytes.prefix(n)))
                }
            }
            #expect(throws: DecodeError.trailingBytes(1)) { try SignalingMessage.decode(bytes + [0]) }
        }
    }

    @Test func wrongVersionTypeFlagsAndSizeAreRefused() throws {
        var bytes = try Samples.datagrams[0].encode()
        bytes[0] = 2
        #expect(throws: DecodeError.unsupportedVersion(2)) { try Datagram.decode(bytes) }
        bytes[0] = 1
        bytes[1] = 0x7f
        #expect(throws: DecodeError.unknownType(0x7f)) { try Datagram.decode(bytes) }
        bytes[1] = 1
        bytes[2] = 200
        #expect(throws: DecodeError.invalidField("status")) { try Datagram.decode(bytes) }
        bytes[2] = 0
        bytes[3] = HeaderFlags.control.rawValue  // control flag only on capsules
        #expect(throws: DecodeError.invalidField("flags")) { try Datagram.decode(bytes) }
        var capsule = try Samples.datagrams[6].encode()
        capsule[3] = 0x80
        #expect(throws: DecodeError.invalidField("flags")) { try Datagram.decode(capsule) }
        #expect(throws: DecodeError.oversized(length: 70_000, limit: WireLimits.maxDatagramBytes)) {
            try Datagram.decode([UInt8](repeating: 1, count: 70_000))
        }
        #expect(throws: DecodeError.unknownType(99)) { try SignalingMessage.decode([99, 0, 0, 0, 0]) }
        let punch = try Samples.datagrams[8].encode()
        #expect(throws: DecodeError.trailingBytes(1)) { try Datagram.decode(punch + [0]) }
        #expect(throws: DecodeError.invalidField("capsule")) {
            try Datagram.decode(Header(type: .capsule).bytes + [UInt8](repeating: 0, count: 15))
        }
    }

    @Test func invalidFieldsAreNamed() throws {
        // A bad FQDN in a direction request.
        var w = ByteWriter()
        w.u8(7)
        w.u32(1)
        try w.string("-bad-.example")
        #expect(throws: DecodeError.invalidField("directionRequest.target")) { try SignalingMessage.decode(w.bytes) }
        // A name that is valid but not canonical (upper case, trailing dot): one encoding per name.
        for name in ["Init01.cyphonic.internal", "init01.cyphonic.internal."] {
            var c = ByteWriter()
            c.u8(7)
            c.u32(1)
            try c.string(name)
            #expect(throws: DecodeError.invalidField("directionRequest.target")) { try SignalingMessage.decode(c.bytes) }
        }
        // An address family that is neither 4 nor 6.
        var e = ByteWriter()
        e.u8(6)
        e.u32(1)
        e.u8(5)
        e.raw([1, 2, 3, 4])
        e.u16(1)
        #expect(throws: DecodeError.invalidField("keepAliveAck.observed")) { try SignalingMessage.decode(e.bytes) }
        // Too many endpoints.
        var l = ByteWriter()
        l.u8(3)
        l.u32(1)
        try l.lengthPrefixed([UInt8]())
        l.u8(200)
        #expect(throws: DecodeError.invalidField("registration.local")) { try SignalingMessage.decode(l.bytes) }
        // Invalid UTF-8 in a string.
        var u = ByteWriter()
        u.u8(11)
        u.u32(1)
        u.u8(1)
        try u.lengthPrefixed([0xff, 0xfe])
        #expect(throws: DecodeError.invalidField("error.message")) { try SignalingMessage.decode(u.bytes) }
    }

    @Test func encoderRefusesWhatItCannotSay() {
        let tooMany = [Endpoint](repeating: Samples.v4, count: 17)
        #expect(throws: EncodeError.self) {
            try SignalingMessage(transactionID: 0, body: .registration(Registration(certificate: [], localEndpoints: tooMany))).encode()
        }
        #expect(throws: EncodeError.self) { try Datagram(.natProbe(token: [1])).encode() }
        let long = String(repeating: "é", count: 300)
        let encoded = try? SignalingMessage(transactionID: 0, body: .error(code: .internalError, message: long)).encode()
        if let encoded, case .error(_, let message) = try? SignalingMessage.decode(encoded).body {
            #expect(message.utf8.count <= WireLimits.maxMessageBytes && message.hasPrefix("éé"))
        } else {
            Issue.record("long error message did not round-trip truncated")
        }
    }

    @Test func randomInputNeverTrapsAndValidInputIsCanonical() {
        var rng = SystemRandomNumberGenerator()
        var decoded = 0
        for _ in 0..<100_000 {
            let n = Int.random(in: 0..<120, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n > 2, Bool.random(using: &rng) {
                bytes[0] = 1
                bytes[1] = UInt8.random(in: 1...11, using: &rng)
            }
            // Whatever decodes must re-encode to exactly the same bytes (canonical codec).
            if let d = try? Datagram.decode(bytes) {
                decoded += 1
                #expect((try? d.encode()) == bytes)
            }
            if let m = try? SignalingMessage.decode(bytes) { #expect((try? m.encode()) == bytes) }
        }
        #expect(decoded > 0, "the generator should hit some valid datagrams")
    }

    @Test func mtuArithmetic() {
        #expect(Overhead.perPacket(ipv6Underlay: true) == 80)
        #expect(Overhead.perPacket(ipv6Underlay: false) == 60)
        #expect(Overhead.tunnelMTU() == 1420)
        #expect(Overhead.clampedMSS(tunnelMTU: 1420, innerIPv6: false) == 1380)
        #expect(Overhead.clampedMSS(tunnelMTU: 1420, innerIPv6: true) == 1360)
    }

    /// Inputs that once crashed or misbehaved a fuzz target, kept as regressions.
    @Test func fuzzRegressionsDecodeWithoutTrapping() throws {
        let dir = try #require(Bundle.module.url(forResource: "Regressions", withExtension: nil))
        let files = try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
        for file in files {
            let bytes = [UInt8](try Data(contentsOf: file))
            // The same property the fuzz target checks: what decodes re-encodes identically.
            if let d = try? Datagram.decode(bytes) { #expect((try? d.encode()) == bytes, "\(file.lastPathComponent)") }
            if let m = try? SignalingMessage.decode(bytes) { #expect((try? m.encode()) == bytes, "\(file.lastPathComponent)") }
        }
        #expect(files.count >= 1)
        print("replayed \(files.count) fuzz regression inputs")
    }
}
