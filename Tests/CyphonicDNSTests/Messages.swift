// Test-only helpers: queries written byte by byte as real resolvers send them, and a small
// independent response reader, so the codec is checked against bytes, not against itself.

/// `name` as uncompressed wire labels (ASCII, no escapes).
func wireName(_ name: String) -> [UInt8] {
    var out: [UInt8] = []
    for label in name.split(separator: ".") {
        out.append(UInt8(label.utf8.count))
        out += Array(label.utf8)
    }
    return out + [0]
}

func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }

/// A header with the given flags and counts.
func header(id: UInt16, flags: UInt16, qd: UInt16 = 1, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0) -> [UInt8] {
    u16(id) + u16(flags) + u16(qd) + u16(an) + u16(ns) + u16(ar)
}

enum Captured {
    /// `dig @127.0.0.53 responder.cyphonic.internal A` (BIND 9.18): RD and AD set, EDNS 0
    /// with a 1232-byte UDP size and an 8-byte client COOKIE option.
    static let digA: [UInt8] =
        [0x8f, 0x3a, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]
        + [0x09] + Array("responder".utf8) + [0x08] + Array("cyphonic".utf8) + [0x08] + Array("internal".utf8) + [0x00]
        + [0x00, 0x01, 0x00, 0x01]
        + [0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c]
        + [0x00, 0x0a, 0x00, 0x08, 0x5b, 0x1e, 0x94, 0x27, 0xc3, 0x0d, 0x71, 0xe2]

    /// glibc's stub resolver (getaddrinfo, no `options edns0`): RD only, no OPT record.
    static let glibcAAAA: [UInt8] =
        [0x4d, 0x21, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
        + wireName("node01.cyphonic.internal") + [0x00, 0x1c, 0x00, 0x01]
}

/// A response read back field by field, independently of the codec.
struct ReadResponse {
    struct Failure: Error {}
    struct Answer {
        var owner: [UInt8]
        var type: UInt16
        var rclass: UInt16
        var ttl: UInt32
        var data: [UInt8]
    }

    var id: UInt16
    var flags: UInt16
    var counts: [UInt16]
    var questionName: [UInt8]
    var questionType: UInt16
    var questionClass: UInt16
    var answers: [Answer] = []
    var additional: [Answer] = []

    var qr: Bool { flags & 0x8000 != 0 }
    var opcode: UInt16 { flags >> 11 & 0xf }
    var aa: Bool { flags & 0x0400 != 0 }
    var tc: Bool { flags & 0x0200 != 0 }
    var rd: Bool { flags & 0x0100 != 0 }
    var ra: Bool { flags & 0x0080 != 0 }
    var cd: Bool { flags & 0x0010 != 0 }
    var rcode: UInt16 { flags & 0xf }

    init(_ b: [UInt8]) throws {
        var at = 0
        func take(_ n: Int) throws -> [UInt8] {
            guard n >= 0, at + n <= b.count else { throw Failure() }
            defer { at += n }
            return Array(b[at..<(at + n)])
        }
        func r16() throws -> UInt16 {
            let s = try take(2)
            return UInt16(s[0]) << 8 | UInt16(s[1])
        }
        func name() throws -> [UInt8] {
            var out: [UInt8] = []
            while true {
                let l = try take(1)[0]
                if l & 0xc0 == 0xc0 { return out + [l] + (try take(1)) }
                out += [l] + (try take(Int(l)))
                if l == 0 { return out }
            }
        }
        func record() throws -> Answer {
            let owner = try name()
            let type = try r16()
            let rclass = try r16()
            let ttl = UInt32(try r16()) << 16 | UInt32(try r16())
            let data = try take(Int(try r16()))
            return Answer(owner: owner, type: type, rclass: rclass, ttl: ttl, data: data)
        }
        id = try r16()
        flags = try r16()
        counts = [try r16(), try r16(), try r16(), try r16()]
        guard counts[0] == 1, counts[2] == 0 else { throw Failure() }
        questionName = try name()
        questionType = try r16()
        questionClass = try r16()
        for _ in 0..<counts[1] { answers.append(try record()) }
        for _ in 0..<counts[3] { additional.append(try record()) }
        guard at == b.count else { throw Failure() }
    }
}

/// SplitMix64: a seeded generator, so a failing property run can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
