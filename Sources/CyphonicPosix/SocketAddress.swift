import CyphonicCore

#if canImport(Glibc)
import Glibc
#endif

extension Endpoint {
    /// The endpoint as a `sockaddr_storage` and its length.
    public var socketAddress: (sockaddr_storage, socklen_t) {
        var storage = sockaddr_storage()
        let length: socklen_t
        switch address {
        case .v4:
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            address.bytes.withUnsafeBytes { src in
                withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyMemory(from: src) }
            }
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        case .v6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            address.bytes.withUnsafeBytes { src in
                withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyMemory(from: src) }
            }
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin6) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
        return (storage, length)
    }

    /// Reads an IPv4 or IPv6 socket address; IPv4-mapped IPv6 addresses become IPv4.
    public init?(socketAddress storage: sockaddr_storage) {
        var s = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let sin = withUnsafeBytes(of: &s) { $0.load(as: sockaddr_in.self) }
            let bytes = withUnsafeBytes(of: sin.sin_addr) { Array($0) }
            self.init(address: IPAddress(bytes: bytes)!, port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let sin6 = withUnsafeBytes(of: &s) { $0.load(as: sockaddr_in6.self) }
            let bytes = withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }
            let mapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff
            let address = mapped ? IPAddress(bytes: Array(bytes[12..<16]))! : IPAddress(bytes: bytes)!
            self.init(address: address, port: UInt16(bigEndian: sin6.sin6_port))
        default:
            return nil
        }
    }
}
