import CyphonicAS
import CyphonicCore
import CyphonicTestSupport
import Foundation

/// A fresh AS data directory under /tmp, removed by `cleanup()` (tests call it in `defer`).
struct TempAS {
    let path: String
    let directory: ASDirectory
    let authority: ASAuthority

    init(vip4: String = "198.18.0.0/16", vip6: String = "2001:db8:c0ff:ee::/64", renewBeforeDays: Int = 10) throws {
        path = NSTemporaryDirectory() + "cyphonic-as-test-\(UUID().uuidString)"
        let settings = try ASSettings(
            domain: try FQDN("cyphonic.internal"),
            pool: try AddressPool(ipv4: IPPrefix(vip4)!, ipv6: IPPrefix(vip6)!),
            certificateDays: 30, renewBeforeDays: renewBeforeDays,
            nmsEndpoints: [Endpoint("198.19.0.2:4502")!], trsEndpoints: [Endpoint("198.19.0.3:4503")!])
        directory = try ASDirectory.initialise(at: path, settings: settings)
        authority = try ASAuthority(
            directory: directory, limiter: RateLimiter(maxFailures: 5, windowSeconds: 60),
            tokenIterations: 1000)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Path of a product built by `swift build` next to the test bundle.
func productPath(_ name: String) -> String { builtProduct(name) }

/// A socket of `type` bound to a free port on 127.0.0.1: the descriptor and the port.
func loopbackSocket(_ type: Int32) -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, type, 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return (fd, UInt16(bigEndian: addr.sin_port))
}

/// A free UDP/TCP port on loopback (bound to 0, then released).
func freePort() throws -> UInt16 {
    let (fd, port) = loopbackSocket(Int32(SOCK_DGRAM.rawValue))
    close(fd)
    return port
}

/// Runs a program to completion; returns status and combined output.
@discardableResult
func runTool(_ path: String, _ args: [String]) throws -> (status: Int32, output: String) { try runProcess(path, args) }
