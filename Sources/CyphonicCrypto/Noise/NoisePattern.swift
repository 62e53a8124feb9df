/// One token of a Noise message pattern (Noise spec §7).
public enum NoiseToken: String, Sendable {
    case e, s, ee, es, se, ss
}

/// A Noise handshake pattern: pre-messages and message patterns, alternating
/// initiator → responder → initiator … (Noise spec §7.4–7.6, revision 34).
public struct NoisePattern: Sendable, Equatable {
    public let name: String
    public let initiatorPreMessage: [NoiseToken]
    public let responderPreMessage: [NoiseToken]
    public let messages: [[NoiseToken]]

    /// One-way patterns (N, K, X): after the handshake only the initiator sends.
    public var isOneWay: Bool { messages.count == 1 }

    /// Parses the spec's notation: `"-> s; <- s ... -> e, es, ss; <- e, ee"`.
    /// Pre-messages come before `...`; messages alternate starting with `->`.
    init(name: String, notation: String) {
        self.name = name
        let parts = notation.split(separator: "...")
        let pre = parts.count == 2 ? parts[0] : ""
        let body = parts.count == 2 ? parts[1] : parts[0]
        func trim(_ s: Substring) -> Substring {
            var t = s.drop { $0 == " " }
            while t.last == " " { t = t.dropLast() }
            return t
        }
        func tokens(_ s: Substring) -> [NoiseToken] {
            s.split(separator: ",").map { NoiseToken(rawValue: String(trim($0)))! }
        }
        var ipre: [NoiseToken] = []
        var rpre: [NoiseToken] = []
        for m in pre.split(separator: ";") {
            let t = trim(m)
            if t.hasPrefix("->") { ipre = tokens(t.dropFirst(2)) } else if t.hasPrefix("<-") { rpre = tokens(t.dropFirst(2)) }
        }
        initiatorPreMessage = ipre
        responderPreMessage = rpre
        messages = body.split(separator: ";").map { tokens(trim($0).dropFirst(2)) }
    }

    /// Every fundamental (one-way and interactive) and deferred pattern of the spec.
    public static let all: [String: NoisePattern] = {
        let table: [(String, String)] = [
            ("N", "<- s ... -> e, es"),
            ("K", "-> s; <- s ... -> e, es, ss"),
            ("X", "<- s ... -> e, es, s, ss"),
            ("NN", "-> e; <- e, ee"),
            ("NK", "<- s ... -> e, es; <- e, ee"),
            ("NX", "-> e; <- e, ee, s, es"),
            ("KN", "-> s ... -> e; <- e, ee, se"),
            ("KK", "-> s; <- s ... -> e, es, ss; <- e, ee, se"),
            ("KX", "-> s ... -> e; <- e, ee, se, s, es"),
            ("XN", "-> e; <- e, ee; -> s, se"),
            ("XK", "<- s ... -> e, es; <- e, ee; -> s, se"),
            ("XX", "-> e; <- e, ee, s, es; -> s, se"),
            ("IN", "-> e, s; <- e, ee, se"),
            ("IK", "<- s ... -> e, es, s, ss; <- e, ee, se"),
            ("IX", "-> e, s; <- e, ee, se, s, es"),
            ("NK1", "<- s ... -> e; <- e, ee, es"),
            ("NX1", "-> e; <- e, ee, s; -> es"),
            ("X1N", "-> e; <- e, ee; -> s; <- se"),
            ("X1K", "<- s ... -> e, es; <- e, ee; -> s; <- se"),
            ("XK1", "<- s ... -> e; <- e, ee, es; -> s, se"),
            ("X1K1", "<- s ... -> e; <- e, ee, es; -> s; <- se"),
            ("X1X", "-> e; <- e, ee, s, es; -> s; <- se"),
            ("XX1", "-> e; <- e, ee, s; -> es, s, se"),
            ("X1X1", "-> e; <- e, ee, s; -> es, s; <- se"),
            ("K1N", "-> s ... -> e; <- e, ee; -> se"),
            ("K1K", "-> s; <- s ... -> e, es; <- e, ee; -> se"),
            ("KK1", "-> s; <- s ... -> e; <- e, ee, se, es"),
            ("K1K1", "-> s; <- s ... -> e; <- e, ee, es; -> se"),
            ("K1X", "-> s ... -> e; <- e, ee, s, es; -> se"),
            ("KX1", "-> s ... -> e; <- e, ee, se, s; -> es"),
            ("K1X1", "-> s ... -> e; <- e, ee, s; -> se, es"),
            ("I1N", "-> e, s; <- e, ee; -> se"),
            ("I1K", "<- s ... -> e, es, s; <- e, ee; -> se"),
            ("IK1", "<- s ... -> e, s; <- e, ee, se, es"),
            ("I1K1", "<- s ... -> e, s; <- e, ee, es; -> se"),
            ("I1X", "-> e, s; <- e, ee, s, es; -> se"),
            ("IX1", "-> e, s; <- e, ee, se, s; -> es"),
            ("I1X1", "-> e, s; <- e, ee, s; -> se, es"),
        ]
        return Dictionary(uniqueKeysWithValues: table.map { ($0.0, NoisePattern(name: $0.0, notation: $0.1)) })
    }()

    public static var xx: NoisePattern { all["XX"]! }
    public static var ik: NoisePattern { all["IK"]! }
    public static var ix: NoisePattern { all["IX"]! }
}

/// A concrete Noise protocol `Noise_<pattern>_25519_<cipher>_SHA256`: this build's only
/// DH is 25519 and its only hash SHA-256.
public struct NoiseProtocol: Sendable, Equatable, CustomStringConvertible {
    public let pattern: NoisePattern
    public let cipher: AEADAlgorithm

    public init(pattern: NoisePattern, cipher: AEADAlgorithm) {
        self.pattern = pattern
        self.cipher = cipher
    }

    /// Parses a full protocol name; nil for any pattern, DH, cipher or hash not supported.
    public init?(name: String) {
        let parts = name.split(separator: "_").map(String.init)
        guard parts.count == 5, parts[0] == "Noise", parts[2] == "25519", parts[4] == "SHA256",
            let pattern = NoisePattern.all[parts[1]], let cipher = AEADAlgorithm(rawValue: parts[3])
        else { return nil }
        self.init(pattern: pattern, cipher: cipher)
    }

    public var name: String { "Noise_\(pattern.name)_25519_\(cipher.rawValue)_SHA256" }
    public var description: String { name }
}
