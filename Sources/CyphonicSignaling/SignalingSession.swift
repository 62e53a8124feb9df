import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicWire

/// Why a signaling datagram was refused. Counted and dropped by callers; never a trap.
public enum SessionError: Error, Equatable, Sendable {
    case malformed(DecodeError)
    case unexpectedType(MessageType)
    case wrongSession(UInt32)
    case replayed(UInt64)
    case authenticationFailed
    case handshake(NoiseError)
    case untrustedPeer(String)
    case protocolViolation(String)
}

extension SessionError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .malformed(let e): return "the answer was malformed (\(e))"
        case .unexpectedType(let t): return "an unexpected message (\(t)) arrived"
        case .wrongSession(let i): return "the answer was for another session (\(i))"
        case .replayed: return "a message arrived twice"
        case .authenticationFailed: return "a message did not authenticate"
        case .handshake(let e): return "the handshake failed (\(e))"
        case .untrustedPeer(let why): return "the service's certificate is not acceptable: \(why) (is ca.pem the CA of this network?)"
        case .protocolViolation(let why): return why
        }
    }
}

extension SessionError {
    /// How a service counts a signaling datagram it refused (a metrics label).
    public var dropReason: String {
        switch self {
        case .replayed: return "replay"
        case .authenticationFailed: return "authentication_failed"
        default: return "malformed"
        }
    }
}

/// An established node ↔ service session after the Noise handshake: seals signaling
/// messages into `signaling` datagrams (header as AAD, counter as nonce) and opens the
/// peer's, refusing replays with a ``ReplayWindow``. Not thread-safe: one owner at a
/// time (the service's session table or the client).
public final class SignalingSession {
    /// Our index: the peer puts it in the header's receiver index.
    public let localIndex: UInt32
    /// The peer's index: we put it in our headers.
    public let remoteIndex: UInt32
    /// The peer's static key, proven in the handshake.
    public let remoteStatic: X25519PublicKey
    private let sendKey: AEADKey
    private let receiveKey: AEADKey
    private var sendCounter: UInt64 = 0
    private var replay = ReplayWindow()
    /// Unix time of the last authenticated datagram from the peer.
    public private(set) var lastReceived: Int64

    init(
        localIndex: UInt32, remoteIndex: UInt32, remoteStatic: X25519PublicKey, send: NoiseCipherState,
        receive: NoiseCipherState, now: Int64
    ) throws(SessionError) {
        guard let s = send.key, let r = receive.key else { throw .protocolViolation("handshake produced no keys") }
        self.localIndex = localIndex
        self.remoteIndex = remoteIndex
        self.remoteStatic = remoteStatic
        sendKey = s
        receiveKey = r
        lastReceived = now
    }

    /// The datagram carrying `message`, sealed for the peer.
    public func seal(_ message: SignalingMessage, status: StatusCode = .ok) throws -> [UInt8] {
        let header = Header(type: .signaling, status: status, receiverIndex: remoteIndex, counter: sendCounter)
        guard sendCounter < ReplayWindow.rejectAfter else { throw CryptoError.nonceExhausted }
        sendCounter += 1
        let plain = try message.encode()
        let sealed = try sendKey.seal(nonce: header.counter, aad: header.bytes, plaintext: plain)
        return header.bytes + sealed
    }

    /// The same session in compact form (raw keys, a 64-counter replay window) for a
    /// service that keeps one per registered node; this object must not be used after.
    public func compact() -> CompactSignalingSession {
        CompactSignalingSession(
            localIndex: localIndex, remoteIndex: remoteIndex, sendKey: Array(sendKey.keyBytes.bytes),
            receiveKey: Array(receiveKey.keyBytes.bytes), sendCounter: sendCounter, lastReceived: lastReceived)
    }

    /// Opens a `signaling` datagram addressed to this session.
    public func open(_ datagram: [UInt8], now: Int64 = unixNowSeconds()) throws(SessionError) -> SignalingMessage {
        let d: Datagram
        do { d = try Datagram.decode(datagram) } catch { throw .malformed(error) }
        guard case .signaling(let ciphertext) = d.body else { throw .unexpectedType(d.header.type) }
        guard d.header.receiverIndex == localIndex else { throw .wrongSession(d.header.receiverIndex) }
        guard replay.mightAccept(d.header.counter) else { throw .replayed(d.header.counter) }
        let plain: [UInt8]
        do {
            plain = try receiveKey.open(nonce: d.header.counter, aad: d.header.bytes, ciphertext: ciphertext)
        } catch {
            throw .authenticationFailed
        }
        guard replay.accept(d.header.counter) else { throw .replayed(d.header.counter) }
        lastReceived = now
        do { return try SignalingMessage.decode(plain) } catch { throw .malformed(error) }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The current unix time in seconds.
public func unixNowSeconds() -> Int64 { Int64(time(nil)) }
