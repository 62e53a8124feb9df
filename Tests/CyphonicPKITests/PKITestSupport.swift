import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicTestSupport
import Foundation

/// A CA and a node certificate issued by it, for tests.
struct TestPKI {
    let ca: CertificateAuthority
    let nodeKey: X25519PrivateKey
    let node: Certificate
    let fqdn = try! FQDN("init01.cyphonic.internal")
    let v4 = IPAddress("198.18.0.11")!
    let v6 = IPAddress("2001:db8:c0ff:ee::11")!
    let now = unixNow()

    init(caName: String = "CYPHONIC Root CA") throws {
        ca = try CertificateAuthority.create(name: caName, key: try Ed25519PrivateKey(), serial: 1, validFrom: now - 60)
        nodeKey = try X25519PrivateKey()
        node = try ca.issue(
            .node(fqdn: fqdn, addresses: [v4, v6], group: "lab", serial: 1001, validFrom: now - 60, days: 30),
            publicKey: nodeKey.publicKey)
    }
}

/// Runs a program and returns its exit status and combined output.
func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    try runProcess(program, arguments)
}

/// A temporary directory removed when the closure returns or throws.
func withTemporaryDirectory<R>(_ body: (URL) throws -> R) throws -> R {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cyphonic-pki-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    return try body(dir)
}
