import CyphonicCore

#if canImport(Glibc)
import Glibc
#endif

/// `HOST:PORT` where HOST is an IP literal (`198.19.0.2:4501`, `[2001:db8::2]:4501`) or a
/// DNS name (`as.example.net:4501`), resolved when used — both families, in the order the
/// system resolver gives them.
public enum HostPort {
    /// Why a `HOST:PORT` cannot be used, as a plain sentence.
    public struct Problem: Error, Equatable, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// Whether `text` is well-formed: an endpoint literal, or a DNS name and a port.
    public static func isValid(_ text: String) -> Bool { Endpoint(text) != nil || split(text) != nil }

    /// The name and port of `name:port` (not a literal).
    static func split(_ text: String) -> (String, UInt16)? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0 else { return nil }
        let host = String(text[..<colon])
        guard !host.contains(":"), !host.hasPrefix("["), (try? FQDN(host)) != nil else { return nil }
        return (host, port)
    }

    /// The endpoints `text` stands for: itself when a literal, else what the name
    /// resolves to (IPv4 and IPv6, duplicates removed). Blocks while the resolver works.
    public static func resolve(_ text: String) throws(Problem) -> [Endpoint] {
        if let e = Endpoint(text) { return [e] }
        guard let (host, port) = split(text) else {
            throw Problem(
                description:
                    "\(text) is not HOST:PORT (an IP address or a DNS name, then a port: 198.19.0.2:4501, [2001:db8::2]:4501, as.example.net:4501)")
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &list)
        guard rc == 0, let first = list else {
            throw Problem(description: "\(host) does not resolve: \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var out: [Endpoint] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ai_next }
            guard let sa = entry.pointee.ai_addr else { continue }
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { dst in
                dst.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: min(Int(entry.pointee.ai_addrlen), dst.count)))
            }
            if let e = Endpoint(socketAddress: storage) {
                let withPort = Endpoint(address: e.address, port: port)
                if !out.contains(withPort) { out.append(withPort) }
            }
        }
        guard !out.isEmpty else { throw Problem(description: "\(host) resolves to no IPv4 or IPv6 address") }
        return out
    }
}
