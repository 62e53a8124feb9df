import CyphonicCore
import CyphonicCrypto
import CyphonicNode
import CyphonicSignaling
import CyphonicWire
import Foundation
import Logging
import Testing

@testable import CyphonicAS

/// A revocation list larger than one datagram travels in parts of at most
/// `ASServer.revocationListPartSize` bytes (issue 8: "able to exceed one datagram"),
/// and the node's client puts them together and checks the CA's signature.
@Suite struct RevocationListPartsTests {
    @Test func aLargeListIsFetchedInPartsBelowThePathMTU() throws {
        let t = try TempAS()
        defer { t.cleanup() }
        // Enrolled nodes (each with a certificate), then revoked: 80 serials on the list.
        let authority = try ASAuthority(
            directory: t.directory, limiter: RateLimiter(maxFailures: 1_000_000), tokenIterations: 1000,
            maxPasswordChecksPerSecond: 1_000_000)
        for i in 0..<80 {
            let ticket = try authority.addNode(name: "n\(i)", group: nil)
            _ = try authority.login(
                Login(name: "n\(i)", credential: .token(ticket.token)), clientKey: try X25519PrivateKey().publicKey,
                source: IPAddress("198.19.1.\(i + 1)")!
            ).get()
            try authority.revokeNode(name: "n\(i)")
        }
        let latest = try #require(try t.authority.directory.store.latestCRL())
        #expect(latest.der.count > 2 * ASServer.revocationListPartSize, "\(latest.der.count) bytes")
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = ASServer(authority: authority, listen: [Endpoint("127.0.0.1:0")!], metrics: ASMetrics(), logger: logger)
        try server.start()
        defer { server.stop() }
        // Every answer is one part, small enough for any path (header + seal overhead aside).
        guard
            case .revocationListPart(let number, let offset, let total, let bytes) = try server.revocationListReply(
                to: .revocationListRequest(haveNumber: 0))
        else {
            Issue.record("expected the first part")
            return
        }
        #expect(number == latest.number && offset == 0 && Int(total) == latest.der.count && bytes.count == ASServer.revocationListPartSize)
        // The client fetches all parts over UDP and verifies the whole list.
        let crl = try ASClient(server: server.boundEndpoints[0], caCertificate: t.directory.ca.certificate)
            .revocationList(key: try X25519PrivateKey())
        #expect(crl.number == latest.number)
        #expect(crl.serials.count == 80)
        #expect(crl.derBytes == latest.der)
    }
}
