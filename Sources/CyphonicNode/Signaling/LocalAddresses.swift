import CyphonicCore
import Glibc

/// The addresses of this host's interfaces that peers at the same site could reach:
/// up, not loopback, not link-local, not inside the overlay prefixes (the TUN's own).
/// Read with getifaddrs(3); sorted, so two reads compare equal when nothing changed.
func localAddresses(excluding overlay: [IPPrefix]) -> [IPAddress] {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0, let first = list else { return [] }
    defer { freeifaddrs(list) }
    var out: [IPAddress] = []
    var cursor: UnsafeMutablePointer<ifaddrs>? = first
    while let entry = cursor {
        defer { cursor = entry.pointee.ifa_next }
        let flags = Int32(bitPattern: entry.pointee.ifa_flags)
        guard flags & Int32(IFF_UP) != 0, flags & Int32(IFF_LOOPBACK) == 0, let sa = entry.pointee.ifa_addr else { continue }
        let address: IPAddress?
        switch Int32(sa.pointee.sa_family) {
        case AF_INET:
            address = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                withUnsafeBytes(of: $0.pointee.sin_addr) { IPAddress(bytes: Array($0)) }
            }
        case AF_INET6:
            address = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                withUnsafeBytes(of: $0.pointee.sin6_addr) { IPAddress(bytes: Array($0)) }
            }
        default:
            address = nil
        }
        guard let a = address, !isLinkLocal(a), !overlay.contains(where: { $0.contains(a) }) else { continue }
        out.append(a)
    }
    return Array(Set(out)).sorted { $0.description < $1.description }
}

private func isLinkLocal(_ a: IPAddress) -> Bool {
    let b = a.bytes
    return a.isIPv4 ? (b[0] == 169 && b[1] == 254) : (b[0] == 0xfe && b[1] & 0xc0 == 0x80)
}
