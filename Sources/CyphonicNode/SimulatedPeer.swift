import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicSignaling
import CyphonicWire

/// A node's side of a tunnel handshake as initiator, reduced to its messages, for the
/// `cyphonic-bench peers` load generator: the real Noise XX handshake a node makes
/// (padded message 1, a cookie retry when the responder asks, the responder's
/// certificate checked, ours in message 3) and keepalives on the session, with no
/// socket, pipeline or TUN of its own, so one process can hold a thousand sessions with
/// a real responder. Not thread-safe: one owner at a time.
public final class SimulatedPeer {
    public let key: X25519PrivateKey
    public let certificate: Certificate
    /// The index the responder's datagrams to us carry.
    public let localIndex: UInt32
    public let verifier: CertificateVerifier
    private var handshake: NoiseHandshake?
    private var cookieUsed = false
    /// The responder's index and our send key, once the handshake completed.
    public private(set) var remoteIndex: UInt32?
    private var sendKey: AEADKey?
    private var counter: UInt64 = 0

    public init(key: X25519PrivateKey, certificate: Certificate, verifier: CertificateVerifier, localIndex: UInt32) {
        self.key = key
        self.certificate = certificate
        self.verifier = verifier
        self.localIndex = localIndex
    }

    /// What a datagram from the responder asked of us.
    public enum Step {
        /// Send this datagram (message 1 again with the cookie, or message 3).
        case send([UInt8])
        /// The datagram was not for this handshake's current step.
        case ignored
    }

    /// The TunnelRequest (message 1), padded as nodes pad it.
    public func initiation(cookie: [UInt8]? = nil) throws -> [UInt8] {
        let hs = try NoiseHandshake(protocol: tunnelNoiseProtocol, role: .initiator, prologue: tunnelPrologue, localStatic: key)
        let message = try hs.writeMessage(
            payload: HandshakeGuard.initiationPayload(cookie: cookie, overhead: Header.size + 4 + 8 + 32))
        handshake = hs
        return try Datagram(.tunnelRequest(senderIndex: localIndex, pathID: 0, noise: message)).encode()
    }

    /// Handles the responder's answer: a cookie reply (once), or message 2 whose
    /// certificate must name `responder`; returns what to send next. A datagram that does
    /// not decode or does not authenticate against this handshake (say, a late answer to
    /// an earlier attempt) is ignored and leaves the handshake as it was; a responder
    /// certificate that does not check is an error.
    public func handle(_ datagram: [UInt8], responder: String) throws -> Step {
        guard let d = try? Datagram.decode(datagram), d.header.receiverIndex == localIndex else { return .ignored }
        switch d.body {
        case .cookieReply(let cookie) where !cookieUsed && remoteIndex == nil:
            cookieUsed = true
            return .send(try initiation(cookie: cookie))
        case .tunnelResponse(let senderIndex, let noise):
            // Read on a copy, kept only when message 2 authenticates (as TunnelManager does).
            guard let pending = handshake, remoteIndex == nil, let hs = try? pending.copy(), let der = try? hs.readMessage(noise) else {
                return .ignored
            }
            _ = try TunnelManager.acceptPeerCertificate(der, proven: hs.remoteStatic, expectedName: responder, verifier: verifier)
            let m3 = try hs.writeMessage(payload: certificate.derBytes)
            let (send, _) = try hs.split()
            sendKey = try send.key!.keyBytes.withUnsafeBytes { try AEADKey(tunnelNoiseProtocol.cipher, key: $0) }
            remoteIndex = senderIndex
            handshake = nil
            return .send(try Datagram(.handshakeCompletion(noise: m3), receiverIndex: senderIndex).encode())
        default:
            return .ignored
        }
    }

    /// Takes over the session another instance with the same identity completed (a retry).
    public func adopt(_ other: SimulatedPeer) {
        remoteIndex = other.remoteIndex
        sendKey = other.sendKey
        counter = other.counter
    }

    /// An empty capsule (keepalive) on the session; nil before the handshake completed.
    public func keepalive() throws -> [UInt8]? {
        guard let sendKey, let remoteIndex else { return nil }
        var datagram = [UInt8](repeating: 0, count: Header.size + 16)
        let c = counter
        counter += 1
        try datagram.withUnsafeMutableBytes { buffer in
            Header(type: .capsule, receiverIndex: remoteIndex, counter: c).write(to: buffer)
            _ = try sendKey.seal(
                nonce: c, aad: UnsafeRawBufferPointer(rebasing: buffer[0..<Header.size]),
                buffer: UnsafeMutableRawBufferPointer(rebasing: buffer[Header.size...]), plaintextCount: 0)
        }
        return datagram
    }
}
