import CyphonicCore

/// The virtual address pools: index i ≥ 1 maps to the i-th host address of the IPv4
/// prefix and the i-th of the IPv6 prefix, so a node's two addresses share their host
/// part (198.18.0.11 ↔ 2001:db8:c0ff:ee::b). The IPv4 broadcast address is never given.
public struct AddressPool: Sendable, Equatable, CustomStringConvertible {
    public let ipv4: IPPrefix
    public let ipv6: IPPrefix

    public init(ipv4: IPPrefix, ipv6: IPPrefix) throws(ConfigError) {
        guard ipv4.address.isIPv4 else { throw .invalid("vip4", "\(ipv4) is not an IPv4 prefix") }
        guard !ipv6.address.isIPv4 else { throw .invalid("vip6", "\(ipv6) is not an IPv6 prefix") }
        guard ipv4.length <= 30 else { throw .invalid("vip4", "\(ipv4) is too small (at most /30)") }
        guard ipv6.length <= 126 else { throw .invalid("vip6", "\(ipv6) is too small (at most /126)") }
        self.ipv4 = ipv4
        self.ipv6 = ipv6
    }

    /// How many nodes fit: host addresses of the IPv4 prefix minus network and broadcast.
    public var capacity: Int64 {
        let v4 = (Int64(1) << Int64(32 - ipv4.length)) - 2
        let v6Bits = 128 - ipv6.length
        return v6Bits >= 62 ? v4 : min(v4, (Int64(1) << Int64(v6Bits)) - 1)
    }

    /// The addresses of index `i` (1-based), nil outside the pool.
    public func addresses(index i: Int64) -> (IPAddress, IPAddress)? {
        guard i >= 1, i <= capacity else { return nil }
        return (Self.add(ipv4.address, UInt64(i)), Self.add(ipv6.address, UInt64(i)))
    }

    static func add(_ base: IPAddress, _ n: UInt64) -> IPAddress {
        var bytes = base.bytes
        var carry = n
        var i = bytes.count - 1
        while carry > 0, i >= 0 {
            let sum = UInt64(bytes[i]) + (carry & 0xff)
            bytes[i] = UInt8(truncatingIfNeeded: sum)
            carry = (carry >> 8) + (sum >> 8)
            i -= 1
        }
        return IPAddress(bytes: bytes)!
    }

    public var description: String { "\(ipv4) + \(ipv6)" }
}

/// A configuration value that is missing or wrong; names the field.
public enum ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalid(String, String)
    case missing(String)

    public var description: String {
        switch self {
        case .invalid(let field, let why): return "--\(field): \(why)"
        case .missing(let field): return "--\(field) is required"
        }
    }
}
