import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicWire

/// Why a login did not produce a Provision.
public enum LoginError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The AS answered with this status and message.
    case refused(StatusCode, String)
    /// No answer after every retry.
    case timeout(Endpoint)
    /// The AS is not the one the pinned CA vouches for, or broke the protocol.
    case protocolError(String)

    public var description: String {
        switch self {
        case .refused(_, let message): return "the AS refused the login: \(message)"
        case .timeout(let e): return "no answer from the AS at \(e)"
        case .protocolError(let s): return "the AS did not complete the login: \(s)"
        }
    }
}

/// The node's login client (DESIGN §4 step 1): a Noise XX session with the AS pinned to
/// the CA certificate, the Login in message 3, the Provision (or an error) back sealed.
/// Blocking, on the caller's thread, over its own UDP socket; each step is retried on
/// timeout. Also fetches the signed revocation list in the same session.
public struct ASClient: Sendable {
    public let server: Endpoint
    public let caCertificate: Certificate
    public var timeoutMilliseconds = 1000
    public var attempts = 4

    public init(server: Endpoint, caCertificate: Certificate) {
        self.server = server
        self.caCertificate = caCertificate
    }

    /// Logs in with `credential` for node `name`; the handshake proves `key`.
    public func login(name: String, credential: Login.Credential, key: X25519PrivateKey) throws -> Provision {
        let socket = try UDPSocket(bind: Endpoint(address: server.address.isIPv4 ? IPAddress("0.0.0.0")! : IPAddress("::")!, port: 0))
        defer { socket.close() }
        try socket.setReceiveTimeout(milliseconds: timeoutMilliseconds)
        let (_, reply) = try exchange(socket: socket, key: key, body: .login(Login(name: name, credential: credential)))
        switch reply.body {
        case .provision(let p):
            // The certificate we got must be for our key and chain to our CA.
            guard let cert = try? Certificate(der: p.certificate), cert.x25519PublicKey == key.publicKey,
                (try? CertificateVerifier(trustAnchor: caCertificate).verify(cert, role: .node, name: p.fqdn.value)) != nil
            else { throw LoginError.protocolError("provisioned certificate does not match our key and CA") }
            return p
        case .error(let code, let message):
            throw LoginError.refused(code, message)
        default:
            throw LoginError.protocolError("unexpected reply kind \(reply.body.kind)")
        }
    }

    /// Runs the handshake and returns the session with the AS's first reply.
    func exchange(socket: UDPSocket, key: X25519PrivateKey, body: SignalingBody) throws -> (SignalingSession, SignalingMessage) {
        let verifier = try CertificateVerifier(trustAnchor: caCertificate)
        var handshake = try ServiceClientHandshake(localStatic: key, verifier: verifier, role: .as)
        var response = try request(socket, try handshake.initiation(), accept: Self.answers(to: handshake))
        if let d = try? Datagram.decode(response), case .cookieReply(let cookie) = d.body {
            // The AS wants proof that we receive at our address: repeat its cookie in a
            // fresh message 1 (one extra round trip, only while it is under load).
            handshake = try ServiceClientHandshake(localStatic: key, verifier: verifier, role: .as)
            response = try request(socket, try handshake.initiation(cookie: cookie), accept: Self.answers(to: handshake))
            if let again = try? Datagram.decode(response), again.header.type == .cookieReply {
                throw LoginError.protocolError("the AS refused our cookie")
            }
        }
        let payload = try SignalingMessage(
            transactionID: UInt32(truncatingIfNeeded: handshake.transactionID),
            body: body
        ).encode()
        let (completion, session): ([UInt8], SignalingSession)
        do {
            (completion, session) = try handshake.complete(response: response, payload: payload)
        } catch {
            throw LoginError.protocolError("\(error)")
        }
        let sealed = try request(socket, completion, retry: false) { bytes in
            (try? Datagram.decode(bytes)).map { $0.header.type == .signaling && $0.header.receiverIndex == session.localIndex } ?? false
        }
        do {
            return (session, try session.open(sealed))
        } catch {
            throw LoginError.protocolError("reply did not open: \(error)")
        }
    }

    /// Accepts message 2 or a cookie reply addressed to `handshake`.
    static func answers(to handshake: ServiceClientHandshake) -> ([UInt8]) -> Bool {
        let index = handshake.localIndex
        return { bytes in
            guard let d = try? Datagram.decode(bytes), d.header.receiverIndex == index else { return false }
            return d.header.type == .handshakeResponse || d.header.type == .cookieReply
        }
    }

    /// Sends `datagram` and waits for a reply that `accept` takes, resending on timeout
    /// (`retry`) or waiting up to the same total time (`retry: false`, for message 3,
    /// which the AS accepts only once).
    func request(_ socket: UDPSocket, _ datagram: [UInt8], retry: Bool = true, accept: ([UInt8]) -> Bool) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        for attempt in 0..<attempts {
            if attempt == 0 || retry { try socket.send(datagram, to: server) }
            while true {
                do {
                    let (n, from) = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
                    let bytes = Array(buffer[0..<n])
                    if from == server, accept(bytes) { return bytes }
                } catch let error as SystemError where error.wouldBlock {
                    break
                }
            }
        }
        throw LoginError.timeout(server)
    }

    /// Asks for one part of a revocation list and waits for it; each retry is sealed
    /// anew (a resent copy would be refused as a replay).
    private func requestPart(
        _ socket: UDPSocket, session: SignalingSession, number: UInt64, offset: UInt32,
        transactionID: UInt32
    ) throws -> SignalingMessage {
        let request = SignalingMessage(transactionID: transactionID, body: .revocationListPartRequest(number: number, offset: offset))
        var once = self
        once.attempts = 1
        for _ in 0..<attempts {
            let sealed = try session.seal(request)
            guard
                let answer = try? once.request(
                    socket, sealed,
                    accept: { bytes in
                        (try? Datagram.decode(bytes)).map { $0.header.type == .signaling && $0.header.receiverIndex == session.localIndex } ?? false
                    })
            else { continue }
            do { return try session.open(answer) } catch { throw LoginError.protocolError("part did not open: \(error)") }
        }
        throw LoginError.timeout(server)
    }

    /// Fetches the CA's current revocation list (public: no login needed) and checks
    /// its signature against the pinned CA.
    public func revocationList(key: X25519PrivateKey) throws -> RevocationList {
        let socket = try UDPSocket(bind: Endpoint(address: server.address.isIPv4 ? IPAddress("0.0.0.0")! : IPAddress("::")!, port: 0))
        defer { socket.close() }
        try socket.setReceiveTimeout(milliseconds: timeoutMilliseconds)
        var (session, reply) = try exchange(socket: socket, key: key, body: .revocationListRequest(haveNumber: 0))
        // A list larger than one datagram comes in parts: ask for the rest in the same
        // session, part by part (each answer below the path MTU).
        var der: [UInt8] = []
        var listNumber: UInt64? = nil
        var restarts = 0
        var parts = 0
        while case .revocationListPart(let number, let offset, let total, let bytes) = reply.body {
            // Bounded whatever the AS says: non-empty parts, at most 4 MiB, 4096 parts.
            parts += 1
            guard !bytes.isEmpty, total <= 4 << 20, parts <= 4096 else {
                throw LoginError.protocolError("revocation list parts out of bounds")
            }
            if Int(offset) != der.count || (listNumber != nil && listNumber != number) {
                // A newer list appeared meanwhile: start over, a few times at most.
                restarts += 1
                guard restarts <= 3, offset == 0 else { throw LoginError.protocolError("revocation list parts out of order") }
                der = []
            }
            listNumber = number
            der += bytes
            guard der.count < Int(total) else {
                reply = SignalingMessage(transactionID: reply.transactionID, body: .revocationList(der: der))
                break
            }
            reply = try requestPart(
                socket, session: session, number: number, offset: UInt32(der.count),
                transactionID: reply.transactionID &+ 1)
        }
        switch reply.body {
        case .revocationList(let der):
            let crl = try RevocationList(der: der)
            try crl.verify(issuedBy: caCertificate)
            return crl
        case .error(let code, let message):
            throw LoginError.refused(code, message)
        default:
            throw LoginError.protocolError("expected a revocation list")
        }
    }
}
