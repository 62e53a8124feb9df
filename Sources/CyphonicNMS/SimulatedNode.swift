import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

/// A node's NMS (or relay) signaling reduced to its messages, for the `cyphonic-bench nms`
/// load generator and the tests: the real handshake (Noise XX, the service certificate checked,
/// our certificate in message 3) and the real session, with no socket of its own, so
/// one socket can carry many simulated nodes (datagrams are told apart by the receiver
/// index, ``localIndex``). Not thread-safe: one owner at a time.
public final class SimulatedNode {
    public let key: X25519PrivateKey
    public let certificate: Certificate
    public let fqdn: String
    private let verifier: CertificateVerifier
    /// The service it talks to (nms, or trs for a relay).
    private let role: CertificateRole
    private var handshake: ServiceClientHandshake?
    public private(set) var session: SignalingSession?
    private var nextTransaction: UInt32 = 1

    public init(key: X25519PrivateKey, certificate: Certificate, verifier: CertificateVerifier, role: CertificateRole = .nms) {
        self.role = role
        self.key = key
        self.certificate = certificate
        self.verifier = verifier
        fqdn = certificate.commonName ?? ""
    }

    /// The index datagrams to us carry: the handshake's, then the session's.
    public var localIndex: UInt32 { session?.localIndex ?? handshake?.localIndex ?? 0 }

    /// Handshake message 1 (a fresh handshake; `cookie` when the NMS asked for one).
    public func initiation(cookie: [UInt8]? = nil) throws -> [UInt8] {
        let h = try ServiceClientHandshake(localStatic: key, verifier: verifier, role: role)
        handshake = h
        session = nil
        return try h.initiation(cookie: cookie)
    }

    /// Message 3 with our registration, from the NMS's message 2.
    public func completion(response: [UInt8], localEndpoints: [Endpoint]) throws -> [UInt8] {
        guard let h = handshake else { throw SessionError.protocolViolation("no handshake in progress") }
        let payload = try SignalingMessage(
            transactionID: UInt32(truncatingIfNeeded: h.transactionID),
            body: .registration(Registration(certificate: certificate.derBytes, localEndpoints: localEndpoints))
        ).encode()
        let (m3, s) = try h.complete(response: response, payload: payload)
        session = s
        return m3
    }

    /// A request sealed in the session; returns the datagram and its transaction id.
    public func seal(_ body: SignalingBody) throws -> (datagram: [UInt8], transactionID: UInt32) {
        guard let s = session else { throw SessionError.protocolViolation("not registered") }
        let tid = nextTransaction
        nextTransaction &+= 1
        return (try s.seal(SignalingMessage(transactionID: tid, body: body)), tid)
    }

    /// A reply sealed in the session under a given transaction id.
    public func seal(_ body: SignalingBody, transactionID: UInt32) throws -> [UInt8] {
        guard let s = session else { throw SessionError.protocolViolation("not registered") }
        return try s.seal(SignalingMessage(transactionID: transactionID, body: body))
    }

    /// Opens a datagram from the NMS.
    public func open(_ datagram: [UInt8]) throws -> SignalingMessage {
        guard let s = session else { throw SessionError.protocolViolation("not registered") }
        return try s.open(datagram)
    }

    /// Registers over `socket` (blocking; the socket needs a receive timeout): message 1
    /// (again with the cookie if asked), message 3, and the NMS's answer, which is the
    /// ack or an error.
    public func register(with nms: Endpoint, over socket: UDPSocket, localEndpoints: [Endpoint] = []) throws -> SignalingMessage {
        var response = try exchange(socket, try initiation(), to: nms)
        if let d = try? Datagram.decode(response), case .cookieReply(let cookie) = d.body {
            response = try exchange(socket, try initiation(cookie: cookie), to: nms)
        }
        return try open(try exchange(socket, try completion(response: response, localEndpoints: localEndpoints), to: nms))
    }

    /// Sends `datagram` and returns the next datagram for us (by receiver index).
    public func exchange(_ socket: UDPSocket, _ datagram: [UInt8], to: Endpoint) throws -> [UInt8] {
        try socket.send(datagram, to: to)
        return try receive(socket)
    }

    /// The next datagram on `socket` addressed to us (others are skipped).
    public func receive(_ socket: UDPSocket) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let (n, _) = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
            let bytes = Array(buffer[0..<n])
            if let h = try? bytes.withUnsafeBytes({ try Header.decode($0) }), h.receiverIndex == localIndex { return bytes }
        }
    }
}
