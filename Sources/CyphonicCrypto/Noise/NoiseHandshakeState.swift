/// Why a Noise handshake step failed. Every malformed or forged handshake message
/// ends in one of these; none traps.
public enum NoiseError: Error, Equatable, Sendable {
    /// `write` was called when it is the peer's turn, or `read` when it is ours.
    case wrongTurn
    /// The handshake already finished.
    case handshakeComplete
    /// The message is shorter than its tokens require.
    case messageTooShort
    /// A message or payload exceeds 65535 bytes (spec §3).
    case messageTooLong
    /// A key the pattern needs was not supplied (for example `rs` for IK).
    case missingKey(String)
    /// A cryptographic step failed (a tag that does not verify, a low-order key).
    case crypto(CryptoError)
}

/// Which side of a handshake this party is.
public enum NoiseRole: Sendable { case initiator, responder }

/// Noise HandshakeState (spec §5.3): runs any pattern of ``NoisePattern/all`` with
/// DH 25519, SHA-256 and the chosen cipher. A pure state machine: it does no I/O,
/// and tests drive it message by message. Not thread-safe: one owner at a time.
public final class NoiseHandshake {
    public let noiseProtocol: NoiseProtocol
    public let role: NoiseRole
    private var symmetric: NoiseSymmetricState
    private let s: X25519PrivateKey?
    private var e: X25519PrivateKey?
    public private(set) var remoteStatic: X25519PublicKey?
    public private(set) var remoteEphemeral: X25519PublicKey?
    private var messageIndex = 0
    /// Ephemeral keys to use instead of fresh ones, in order (test vectors only).
    private var fixedEphemerals: [X25519PrivateKey]

    /// Sets up a handshake. `localStatic` and `remoteStatic` are needed where the
    /// pattern's pre-messages or tokens name them; a missing one is reported by the
    /// first step that needs it. `ephemeral` fixes the ephemeral key (test vectors).
    public init(
        protocol noiseProtocol: NoiseProtocol, role: NoiseRole, prologue: [UInt8] = [],
        localStatic: X25519PrivateKey? = nil, remoteStatic: X25519PublicKey? = nil,
        ephemeral: X25519PrivateKey? = nil
    ) throws(NoiseError) {
        self.noiseProtocol = noiseProtocol
        self.role = role
        self.s = localStatic
        self.remoteStatic = remoteStatic
        self.fixedEphemerals = ephemeral.map { [$0] } ?? []
        symmetric = NoiseSymmetricState(protocolName: noiseProtocol.name, algorithm: noiseProtocol.cipher)
        symmetric.mixHash(prologue)
        // Pre-messages: the initiator's first, then the responder's (spec §7.1).
        for (owner, tokens) in [
            (NoiseRole.initiator, noiseProtocol.pattern.initiatorPreMessage),
            (NoiseRole.responder, noiseProtocol.pattern.responderPreMessage),
        ] {
            for token in tokens {
                guard token == .s else { throw .missingKey("pre-message ephemeral is not supported") }
                let key = owner == role ? localStatic?.publicKey : remoteStatic
                guard let key else { throw .missingKey(owner == role ? "s" : "rs") }
                symmetric.mixHash(key.bytes)
            }
        }
    }

    /// An independent copy of this handshake in its current state, so a responder can
    /// try a message on the copy and keep the original when the message (or what it
    /// carries, such as a certificate) is refused.
    public func copy() throws(NoiseError) -> NoiseHandshake {
        let symmetricCopy: NoiseSymmetricState
        do { symmetricCopy = try symmetric.copy() } catch { throw .crypto(.invalidLength("state copy: \(error)")) }
        return NoiseHandshake(copying: self, symmetric: symmetricCopy)
    }

    private init(copying o: NoiseHandshake, symmetric: NoiseSymmetricState) {
        noiseProtocol = o.noiseProtocol
        role = o.role
        self.symmetric = symmetric
        s = o.s
        e = o.e
        remoteStatic = o.remoteStatic
        remoteEphemeral = o.remoteEphemeral
        messageIndex = o.messageIndex
        fixedEphemerals = o.fixedEphemerals
    }

    /// True once every handshake message has been written or read.
    public var isComplete: Bool { messageIndex >= noiseProtocol.pattern.messages.count }

    /// Whether the next handshake message is ours to write.
    public var isOurTurn: Bool { (messageIndex % 2 == 0) == (role == .initiator) }

    /// The handshake hash `h`: channel binding, equal on both sides after completion.
    public var handshakeHash: [UInt8] { symmetric.h }

    /// Writes the next handshake message carrying `payload`.
    public func writeMessage(payload: [UInt8] = []) throws(NoiseError) -> [UInt8] {
        guard !isComplete else { throw .handshakeComplete }
        guard isOurTurn else { throw .wrongTurn }
        var out: [UInt8] = []
        do {
            for token in noiseProtocol.pattern.messages[messageIndex] {
                switch token {
                case .e:
                    let key = fixedEphemerals.isEmpty ? try X25519PrivateKey() : fixedEphemerals.removeFirst()
                    e = key
                    out += key.publicKey.bytes
                    symmetric.mixHash(key.publicKey.bytes)
                case .s:
                    guard let s else { throw NoiseError.missingKey("s") }
                    out += try symmetric.encryptAndHash(s.publicKey.bytes)
                default:
                    try symmetric.mixKey(try dh(token))
                }
            }
            out += try symmetric.encryptAndHash(payload)
        } catch let error as NoiseError {
            throw error
        } catch let error as CryptoError {
            throw .crypto(error)
        } catch {
            throw .crypto(.invalidLength("unexpected \(error)"))
        }
        guard out.count <= 65535 else { throw .messageTooLong }
        messageIndex += 1
        return out
    }

    /// Reads the peer's next handshake message and returns its payload. On error the
    /// state is rolled back to what it was before the call, so a forged or corrupted
    /// message cannot kill a handshake in flight: the genuine message can still follow.
    public func readMessage(_ message: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard !isComplete else { throw .handshakeComplete }
        guard !isOurTurn else { throw .wrongTurn }
        guard message.count <= 65535 else { throw .messageTooLong }
        let saved: NoiseSymmetricState
        do { saved = try symmetric.copy() } catch { throw .crypto(.invalidLength("state copy: \(error)")) }
        let savedRemote = (remoteStatic, remoteEphemeral)
        do {
            return try readMessageAdvancing(message)
        } catch {
            symmetric = saved
            (remoteStatic, remoteEphemeral) = savedRemote
            throw error
        }
    }

    private func readMessageAdvancing(_ message: [UInt8]) throws(NoiseError) -> [UInt8] {
        var rest = message[...]
        do {
            for token in noiseProtocol.pattern.messages[messageIndex] {
                switch token {
                case .e:
                    guard rest.count >= 32 else { throw NoiseError.messageTooShort }
                    let re = try X25519PublicKey(bytes: Array(rest.prefix(32)))
                    rest = rest.dropFirst(32)
                    remoteEphemeral = re
                    symmetric.mixHash(re.bytes)
                case .s:
                    let n = 32 + (symmetric.cipher.hasKey ? 16 : 0)
                    guard rest.count >= n else { throw NoiseError.messageTooShort }
                    let plain = try symmetric.decryptAndHash(Array(rest.prefix(n)))
                    rest = rest.dropFirst(n)
                    remoteStatic = try X25519PublicKey(bytes: plain)
                default:
                    try symmetric.mixKey(try dh(token))
                }
            }
            guard rest.count >= (symmetric.cipher.hasKey ? 16 : 0) else { throw NoiseError.messageTooShort }
            let payload = try symmetric.decryptAndHash(Array(rest))
            messageIndex += 1
            return payload
        } catch let error as NoiseError {
            throw error
        } catch let error as CryptoError {
            throw .crypto(error)
        } catch {
            throw .crypto(.invalidLength("unexpected \(error)"))
        }
    }

    /// The transport CipherStates once the handshake is complete: `send` for our
    /// messages, `receive` for the peer's. The chaining key is wiped.
    public func split() throws(NoiseError) -> (send: NoiseCipherState, receive: NoiseCipherState) {
        guard isComplete else { throw .wrongTurn }
        do {
            let (c1, c2) = try symmetric.split()
            symmetric.ck.wipe()
            return role == .initiator ? (c1, c2) : (c2, c1)
        } catch let error as CryptoError {
            throw .crypto(error)
        } catch {
            throw .crypto(.invalidLength("unexpected \(error)"))
        }
    }

    /// The DH for a two-letter token, from this party's point of view (spec §5.3).
    private func dh(_ token: NoiseToken) throws -> SecureBytes {
        let initiator = role == .initiator
        let local: X25519PrivateKey?
        let remote: X25519PublicKey?
        switch token {
        case .ee: (local, remote) = (e, remoteEphemeral)
        case .es: (local, remote) = initiator ? (e, remoteStatic) : (s, remoteEphemeral)
        case .se: (local, remote) = initiator ? (s, remoteEphemeral) : (e, remoteStatic)
        case .ss: (local, remote) = (s, remoteStatic)
        case .e, .s: throw NoiseError.missingKey("token \(token) is not a DH")
        }
        guard let local else { throw NoiseError.missingKey("local key for \(token)") }
        guard let remote else { throw NoiseError.missingKey("remote key for \(token)") }
        return try local.sharedSecret(with: remote)
    }
}

extension NoiseError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .wrongTurn: return "a handshake message out of turn"
        case .handshakeComplete: return "the handshake had already finished"
        case .messageTooShort: return "a handshake message too short"
        case .messageTooLong: return "a handshake message too long"
        case .missingKey(let k): return "the key \(k) is missing"
        case .crypto(let e): return "a handshake message did not verify (\(e))"
        }
    }
}
