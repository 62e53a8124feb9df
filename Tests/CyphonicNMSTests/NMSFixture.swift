import CyphonicCore
import CyphonicCrypto
import CyphonicNMS
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Logging
import Synchronization

/// An NMS on loopback with an in-memory CA, and the means to make simulated nodes.
final class NMSFixture {
    let ca: CertificateAuthority
    let identity: NMSIdentity
    let server: NMSServer
    private let counter = Mutex(0)
    var nms: Endpoint { server.boundEndpoints[0] }
    var probe: Endpoint { server.boundEndpoints[1] }

    static func makeCA(_ name: String = "CYPHONIC test CA") throws -> CertificateAuthority {
        try CertificateAuthority.create(name: name, key: try Ed25519PrivateKey(), serial: try CertificateAuthority.randomSerial())
    }

    /// A new CA and NMS identity, or `sharing` another fixture's (a second replica of the
    /// same NMS: same bundle).
    init(sharing other: NMSFixture? = nil, revoked: [UInt64] = [], _ configure: (inout NMSSettings) -> Void = { _ in }) throws {
        if let other {
            (ca, identity) = (other.ca, other.identity)
        } else {
            ca = try Self.makeCA()
            let name = try FQDN("nms.cyphonic.internal")
            let now = unixNow()
            let key = try X25519PrivateKey()
            let signing = try Ed25519PrivateKey()
            identity = NMSIdentity(
                name: name.value, key: key,
                certificate: try ca.issue(
                    .service(.nms, name: name, serial: try CertificateAuthority.randomSerial(), validFrom: now - 300, days: 1),
                    publicKey: key.publicKey),
                signingKey: signing,
                signingCertificate: try ca.issue(
                    .service(.nms, name: name, serial: try CertificateAuthority.randomSerial(), validFrom: now - 300, days: 1),
                    signingKey: signing.publicKey),
                ca: ca.certificate)
        }
        let now = unixNow()
        var settings = NMSSettings()
        settings.listen = [Endpoint("127.0.0.1:0")!]
        settings.probeListen = [Endpoint("127.0.0.1:0")!]
        settings.handshakeGuard.loadThresholdPerSecond = 100_000
        settings.handshakeGuard.perSourcePerSecond = 100_000
        settings.handshakeGuard.perSourceBurst = 100_000
        configure(&settings)
        let crl = revoked.isEmpty ? nil : try RevocationList.sign(by: ca, serials: revoked, number: 1, nextUpdate: now + 3600)
        var logger = Logger(label: "nms-test")
        logger.logLevel = .critical
        server = try NMSServer(identity: identity, settings: settings, revocations: crl, logger: logger)
        try server.start()
    }

    func stop() { server.stop() }

    /// A node certificate (and key) for NAME.cyphonic.internal; `by` another CA, or
    /// already expired.
    func node(_ name: String, group: String? = nil, by issuer: CertificateAuthority? = nil, expired: Bool = false) throws -> SimulatedNode {
        let n = counter.withLock { c -> Int in
            c += 1
            return c
        }
        let key = try X25519PrivateKey()
        let now = unixNow()
        let template = CertificateTemplate.node(
            fqdn: try FQDN("\(name).cyphonic.internal"),
            addresses: [IPAddress("198.18.0.\(n)")!, IPAddress("2001:db8:c0ff:ee::\(String(n, radix: 16))")!], group: group,
            serial: try CertificateAuthority.randomSerial(), validFrom: expired ? now - 3 * 86_400 : now - 300, days: 1)
        let cert = try (issuer ?? ca).issue(template, publicKey: key.publicKey)
        return SimulatedNode(key: key, certificate: cert, verifier: try CertificateVerifier(trustAnchor: ca.certificate))
    }

    /// A loopback socket with a receive timeout.
    func socket(timeoutMilliseconds: Int = 2000) throws -> UDPSocket {
        let s = try UDPSocket(bind: Endpoint("127.0.0.1:0")!)
        try s.setReceiveTimeout(milliseconds: timeoutMilliseconds)
        return s
    }

    /// A registered node on its own socket.
    func registered(_ name: String, group: String? = nil, local: Bool = true) throws -> (SimulatedNode, UDPSocket) {
        let node = try node(name, group: group)
        let s = try socket()
        let answer = try node.register(with: nms, over: s, localEndpoints: local ? [try s.localEndpoint()] : [])
        guard case .registrationAck = answer.body else { throw SessionError.protocolViolation("not registered: \(answer.body)") }
        return (node, s)
    }
}
