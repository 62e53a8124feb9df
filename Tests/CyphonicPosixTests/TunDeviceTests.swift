import CyphonicCore
import Foundation
import Glibc
import Testing

@testable import CyphonicPosix

let isRoot = getuid() == 0

/// Runs `ip` with arguments; throws on failure.
func ip(_ args: String...) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/sbin/ip")
    p.arguments = args
    try p.run()
    p.waitUntilExit()
    if p.terminationStatus != 0 { throw SystemError("ip \(args.joined(separator: " "))", errno: EINVAL) }
}

/// TUN needs CAP_NET_ADMIN: these run as root (CI is root) and skip otherwise.
@Suite(.enabled(if: isRoot, "skipped: TUN tests need root (CI runs them as root)"))
struct TunDeviceTests {
    @Test func packetsRoutedToTheInterfaceAreReadFromIt() throws {
        let name = "cyt\(getpid() % 100_000)"
        let tun = try TunDevice(name: name)
        defer { tun.close() }
        #expect(tun.name == name)
        try ip("addr", "add", "198.18.254.1/24", "dev", name)
        try ip("link", "set", name, "up")
        // A UDP datagram to another address of the subnet is routed into the TUN.
        let sender = try UDPSocket(bind: Endpoint("198.18.254.1:0")!)
        var packet = [UInt8](repeating: 0, count: 2048)
        var found = false
        for _ in 0..<50 where !found {
            try sender.send(Array("hello tun".utf8), to: Endpoint("198.18.254.2:9999")!)
            guard try tun.waitReadable(timeoutMilliseconds: 200) else { continue }
            let n = try packet.withUnsafeMutableBytes { try tun.read(into: $0) }
            // IPv4, UDP, to 198.18.254.2:9999 — skip anything else (router solicitations, ...).
            if n >= 28, packet[0] >> 4 == 4, packet[9] == 17, Array(packet[16..<20]) == [198, 18, 254, 2] {
                #expect(UInt16(packet[22]) << 8 | UInt16(packet[23]) == 9999)
                #expect(Array(packet[28..<n]) == Array("hello tun".utf8))
                found = true
            }
        }
        #expect(found)
    }

    @Test func offloadCanBeEnabledWithVnetHeaders() throws {
        let tun = try TunDevice(name: "cyo\(getpid() % 100_000)", vnetHeader: true)
        defer { tun.close() }
        try tun.enableOffload(tso: true, uso: true)
    }

    @Test func overlongNameIsRefused() {
        #expect(throws: SystemError.self) { try TunDevice(name: "a-name-much-too-long-for-ifnamsiz") }
    }
}
