import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicWire

/// Runs a handshake step, turning whatever it throws into a ``SessionError``.
func sessionStep<R>(_ body: () throws -> R) throws(SessionError) -> R {
    do {
        return try body()
    } catch let e as SessionError {
        throw e
    } catch let e as NoiseError {
        throw .handshake(e)
    } catch {
        throw .protocolViolation("\(error)")
    }
}

/// The Noise protocol of every node ↔ service channel (docs/protocol.md §1).
public let serviceNoiseProtocol = NoiseProtocol(pattern: .xx, cipher: .aes256gcm)
/// Prologue binding the handshake to this protocol version.
public let serviceNoisePrologue = Array("CYPHONIC-Swift signaling v1".utf8)

/// Node side of the node ↔ service handshake (Noise XX, node = initiator):
/// 1. ``initiation()`` → HandshakeInitiation;
/// 2. ``complete(response:payload:)`` checks the service certificate in message 2
///    (chains to the pinned CA, has the expected role and names, and carries the very
///    static key that the handshake proved), then returns HandshakeCompletion carrying
///    `payload` (encrypted) and the established session.
/// Pure: no I/O. Not thread-safe.
public final class ServiceClientHandshake {
    public let localIndex: UInt32
    public let transactionID: UInt64
    private let noise: NoiseHandshake
    private let verifier: CertificateVerifier
    private let role: CertificateRole
    private let serviceName: String?
    /// The service certificate, once message 2 was accepted.
    public private(set) var serviceCertificate: Certificate?

    public init(
        localStatic: X25519PrivateKey, verifier: CertificateVerifier, role: CertificateRole,
        serviceName: String? = nil
    ) throws {
        localIndex = try SecureRandom.u32() | 1
        transactionID = try SecureRandom.u64()
        noise = try NoiseHandshake(
            protocol: serviceNoiseProtocol, role: .initiator, prologue: serviceNoisePrologue,
            localStatic: localStatic)
        self.verifier = verifier
        self.role = role
        self.serviceName = serviceName
    }

    /// Message 1, padded so an idle service may answer it at once, carrying `cookie`
    /// when the service asked for one (a cookie reply to an earlier initiation; that
    /// needs a fresh ``ServiceClientHandshake``, since message 1 is written once).
    public func initiation(cookie: [UInt8]? = nil) throws -> [UInt8] {
        let payload = HandshakeGuard.initiationPayload(cookie: cookie, overhead: Header.size + 4 + 32)
        return try Datagram(
            .handshakeInitiation(senderIndex: localIndex, noise: try noise.writeMessage(payload: payload)),
            counter: transactionID
        ).encode()
    }

    public func complete(
        response: [UInt8], payload: [UInt8], now: Int64 = unixNowSeconds()
    ) throws(SessionError)
        -> (completion: [UInt8], session: SignalingSession)
    {
        let d: Datagram
        do { d = try Datagram.decode(response) } catch { throw .malformed(error) }
        guard case .handshakeResponse(let serviceIndex, let message) = d.body else { throw .unexpectedType(d.header.type) }
        guard d.header.receiverIndex == localIndex else { throw .wrongSession(d.header.receiverIndex) }
        let certDER: [UInt8]
        do { certDER = try noise.readMessage(message) } catch { throw .handshake(error) }
        let cert: Certificate
        do {
            cert = try Certificate(der: certDER)
            try verifier.verify(cert, role: role, name: serviceName, at: now)
        } catch {
            throw .untrustedPeer("\(error)")
        }
        guard let proven = noise.remoteStatic, cert.x25519PublicKey == proven else {
            throw .untrustedPeer("service certificate does not carry the key the handshake proved")
        }
        serviceCertificate = cert
        return try sessionStep {
            let m3 = try noise.writeMessage(payload: payload)
            let (send, receive) = try noise.split()
            let completion = try Datagram(
                .handshakeCompletion(noise: m3), receiverIndex: serviceIndex,
                counter: transactionID
            ).encode()
            let session = try SignalingSession(
                localIndex: localIndex, remoteIndex: serviceIndex, remoteStatic: proven,
                send: send, receive: receive, now: now)
            return (completion, session)
        }
    }
}

/// Service side of the handshake (Noise XX, service = responder). Pure state machine:
/// ``respond(to:)`` answers message 1 with the service certificate; ``finish(_:)``
/// reads message 3 and returns the client's proven static key, its payload, and the
/// session. Not thread-safe; services keep pending handshakes in a TTL table.
public final class ServiceServerHandshake {
    public let localIndex: UInt32
    public private(set) var remoteIndex: UInt32 = 0
    public private(set) var transactionID: UInt64 = 0
    private let noise: NoiseHandshake
    private let certificateDER: [UInt8]

    public init(localStatic: X25519PrivateKey, certificate: Certificate) throws {
        localIndex = try SecureRandom.u32() | 1
        noise = try NoiseHandshake(
            protocol: serviceNoiseProtocol, role: .responder, prologue: serviceNoisePrologue,
            localStatic: localStatic)
        certificateDER = certificate.derBytes
    }

    /// Answers a HandshakeInitiation datagram with a HandshakeResponse.
    public func respond(to initiation: Datagram) throws(SessionError) -> [UInt8] {
        guard case .handshakeInitiation(let senderIndex, let message) = initiation.body else {
            throw .unexpectedType(initiation.header.type)
        }
        remoteIndex = senderIndex
        transactionID = initiation.header.counter
        return try sessionStep {
            // Message 1's payload is the cookie and padding (HandshakeGuard), hashed into
            // the transcript and otherwise ignored here.
            _ = try noise.readMessage(message)
            let m2 = try noise.writeMessage(payload: certificateDER)
            return try Datagram(
                .handshakeResponse(senderIndex: localIndex, noise: m2), receiverIndex: senderIndex,
                counter: transactionID
            ).encode()
        }
    }

    /// Reads HandshakeCompletion: the client's static key (proven), payload, session.
    public func finish(
        _ completion: Datagram, now: Int64 = unixNowSeconds()
    ) throws(SessionError)
        -> (clientStatic: X25519PublicKey, payload: [UInt8], session: SignalingSession)
    {
        guard case .handshakeCompletion(let message) = completion.body else { throw .unexpectedType(completion.header.type) }
        guard completion.header.receiverIndex == localIndex else { throw .wrongSession(completion.header.receiverIndex) }
        return try sessionStep {
            let payload = try noise.readMessage(message)
            guard let client = noise.remoteStatic else { throw SessionError.protocolViolation("no client static key") }
            let (send, receive) = try noise.split()
            let session = try SignalingSession(
                localIndex: localIndex, remoteIndex: remoteIndex, remoteStatic: client,
                send: send, receive: receive, now: now)
            return (client, payload, session)
        }
    }
}
