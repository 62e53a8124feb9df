/// The type byte of the CYPHONIC header: what follows the 16-byte header.
public enum MessageType: UInt8, Sendable, CaseIterable {
    /// Node → service, Noise handshake message 1 (opens a signaling session).
    case handshakeInitiation = 0x01
    /// Service → node, Noise handshake message 2.
    case handshakeResponse = 0x02
    /// Node → service, Noise handshake message 3 (XX).
    case handshakeCompletion = 0x03
    /// A signaling message sealed in the node's session with a service.
    case signaling = 0x04
    /// Node → node, the peer handshake's first message (CYPHONIC TunnelRequest).
    case tunnelRequest = 0x05
    /// Node → node, the peer handshake's reply (CYPHONIC TunnelResponse).
    case tunnelResponse = 0x06
    /// Node → node, an encrypted virtual IP packet (or a control message with the control flag).
    case capsule = 0x07
    /// Node → node, opens NAT bindings as NMS directed.
    case holePunching = 0x08
    /// Node → node over a relayed tunnel: tries the direct path in the background.
    case holePunchingForOptimization = 0x09
    /// Node → NMS probe port: lets NMS observe the node's mapping from a second address.
    case natProbe = 0x0a
    /// Cleartext error answered before any session exists (a hint only: unauthenticated).
    case error = 0x0b
    /// Responder → initiator, instead of handshake message 2 when the initiator's source
    /// address is not yet verified: a 16-byte cookie to repeat in message 1 (a stateless
    /// retry, as WireGuard's cookie reply or QUIC's Retry). Never larger than the request.
    case cookieReply = 0x0c
}

/// CYPHONIC status codes, in the header's status byte and in signaling errors.
public enum StatusCode: UInt8, Sendable, CaseIterable, Equatable {
    case ok = 0
    case badRequest = 1
    case unauthorized = 2
    case forbidden = 3
    case notFound = 4
    case revoked = 5
    case rateLimited = 6
    case poolExhausted = 7
    case nameTaken = 8
    case expired = 9
    case unsupportedVersion = 10
    case internalError = 11
    case unavailable = 12
}

/// Flag bits of the header's flags byte. Unknown bits must be zero.
public struct HeaderFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// A capsule whose plaintext is a ``SignalingMessage`` (finalization, keepalive
    /// control) instead of a virtual IP packet.
    public static let control = HeaderFlags(rawValue: 0x01)

    public static let known: HeaderFlags = [.control]
}
