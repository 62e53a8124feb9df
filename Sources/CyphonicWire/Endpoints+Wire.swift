import CyphonicCore

/// Wire forms shared by several messages:
/// - address: family (4 or 6), then 4 or 16 bytes;
/// - endpoint: address, then port (u16);
/// - optional endpoint: family 0 alone for "none";
/// - endpoint list: count (u8, at most ``WireLimits/maxEndpoints``), then endpoints.
public enum WireLimits {
    public static let maxEndpoints = 16
    public static let maxNameBytes = 253
    public static let maxCertificateBytes = 8 * 1024
    public static let maxTokenBytes = 256
    public static let maxMessageBytes = 255
    public static let maxAuthorizationBytes = 512
    /// Largest datagram any decoder accepts (the UDP payload limit).
    public static let maxDatagramBytes = 65_507
}

extension ByteWriter {
    public mutating func address(_ a: IPAddress) {
        u8(a.isIPv4 ? 4 : 6)
        raw(a.bytes)
    }

    public mutating func endpoint(_ e: Endpoint) {
        address(e.address)
        u16(e.port)
    }

    public mutating func optionalEndpoint(_ e: Endpoint?) {
        if let e { endpoint(e) } else { u8(0) }
    }

    public mutating func endpoints(_ list: [Endpoint]) throws(EncodeError) {
        guard list.count <= WireLimits.maxEndpoints else { throw .fieldTooLong(list.count) }
        u8(UInt8(list.count))
        for e in list { endpoint(e) }
    }

    public mutating func fqdn(_ name: FQDN) throws(EncodeError) { try string(name.value) }
}

extension ByteReader {
    public mutating func address(family: UInt8, field: String) throws(DecodeError) -> IPAddress {
        switch family {
        case 4: return IPAddress(bytes: try bytes(4))!
        case 6: return IPAddress(bytes: try bytes(16))!
        default: throw .invalidField(field)
        }
    }

    public mutating func address(field: String) throws(DecodeError) -> IPAddress {
        try address(family: try u8(), field: field)
    }

    /// An IPv4 address with no family byte (virtual IPv4 fields).
    public mutating func ipv4() throws(DecodeError) -> IPAddress { IPAddress(bytes: try bytes(4))! }
    /// An IPv6 address with no family byte (virtual IPv6 fields).
    public mutating func ipv6() throws(DecodeError) -> IPAddress { IPAddress(bytes: try bytes(16))! }

    public mutating func endpoint(field: String) throws(DecodeError) -> Endpoint {
        let a = try address(field: field)
        return Endpoint(address: a, port: try u16())
    }

    public mutating func optionalEndpoint(field: String) throws(DecodeError) -> Endpoint? {
        let family = try u8()
        if family == 0 { return nil }
        let a = try address(family: family, field: field)
        return Endpoint(address: a, port: try u16())
    }

    public mutating func endpoints(field: String) throws(DecodeError) -> [Endpoint] {
        let n = Int(try u8())
        guard n <= WireLimits.maxEndpoints else { throw .invalidField(field) }
        var out: [Endpoint] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try endpoint(field: field)) }
        return out
    }

    public mutating func fqdn(field: String) throws(DecodeError) -> FQDN {
        let s = try string(limit: WireLimits.maxNameBytes, field: field)
        // Only the canonical form (lower case, no trailing dot) is accepted, so a name
        // has exactly one encoding.
        guard let name = try? FQDN(s), name.value == s else { throw .invalidField(field) }
        return name
    }
}
