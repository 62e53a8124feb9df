#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An IPv4 or IPv6 address held as its network-order bytes. Value type, `Sendable`.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt8, UInt8, UInt8, UInt8)
    case v6([UInt8])  // always exactly 16 bytes

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text; nil if it is neither.
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            let b = withUnsafeBytes(of: v4.s_addr) { Array($0) }
            self = .v4(b[0], b[1], b[2], b[3])
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            self = .v6(withUnsafeBytes(of: v6) { Array($0) })
            return
        }
        return nil
    }

    /// From 4 or 16 network-order bytes; nil for any other length.
    public init?(bytes: [UInt8]) {
        switch bytes.count {
        case 4: self = .v4(bytes[0], bytes[1], bytes[2], bytes[3])
        case 16: self = .v6(bytes)
        default: return nil
        }
    }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let a, let b, let c, let d): return [a, b, c, d]
        case .v6(let b): return b
        }
    }

    public var isIPv4: Bool { if case .v4 = self { return true } else { return false } }

    public var description: String {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let raw = bytes
        let family = isIPv4 ? AF_INET : AF_INET6
        let ok = raw.withUnsafeBytes { src in inet_ntop(family, src.baseAddress, &buf, socklen_t(buf.count)) }
        guard ok != nil else { return "?" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An IP prefix such as 198.18.0.0/16. The address is stored with host bits cleared.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    /// Parses "ADDRESS/LENGTH"; nil if malformed or the length exceeds the family's width.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let addr = IPAddress(String(parts[0])), let len = Int(parts[1]) else { return nil }
        self.init(address: addr, length: len)
    }

    public init?(address: IPAddress, length: Int) {
        let width = address.isIPv4 ? 32 : 128
        guard length >= 0, length <= width else { return nil }
        self.length = length
        self.address = IPAddress(bytes: IPPrefix.mask(address.bytes, length))!
    }

    /// Whether `other` lies inside this prefix (same family and same leading bits).
    public func contains(_ other: IPAddress) -> Bool {
        other.isIPv4 == address.isIPv4 && IPPrefix.mask(other.bytes, length) == address.bytes
    }

    public var description: String { "\(address)/\(length)" }

    static func mask(_ bytes: [UInt8], _ length: Int) -> [UInt8] {
        var out = bytes
        for i in 0..<out.count {
            let bitsHere = max(0, min(8, length - i * 8))
            out[i] &= bitsHere == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bitsHere))
        }
        return out
    }
}

/// A UDP endpoint: address and port. Text form "198.19.0.1:4501" or "[2001:db8::1]:4501".
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses "v4:port" or "[v6]:port"; nil if malformed.
    public init?(_ text: String) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()), let addr = IPAddress(host), !addr.isIPv4
            else { return nil }
            self.init(address: addr, port: port)
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let addr = IPAddress(String(parts[0])), addr.isIPv4, let port = UInt16(parts[1])
            else { return nil }
            self.init(address: addr, port: port)
        }
    }

    public var description: String { address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)" }
}

extension IPAddress {
    /// In the same /24 (IPv4) or /64 (IPv6) as `other`: how the NMS and nodes tell a
    /// shared LAN (the same-site route, DESIGN §5).
    public func sharesSubnet(with other: IPAddress) -> Bool {
        guard isIPv4 == other.isIPv4 else { return false }
        return isIPv4 ? bytes.prefix(3) == other.bytes.prefix(3) : bytes.prefix(8) == other.bytes.prefix(8)
    }
}
