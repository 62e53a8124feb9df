import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicPKI
import CyphonicPosix
import CyphonicWire
import Logging

/// The Noise protocol of node ↔ node tunnels: XX, so neither side needs the other's
/// static key in advance; each proves its certificate inside the encrypted handshake.
public let tunnelNoiseProtocol = NoiseProtocol(pattern: .xx, cipher: .aes256gcm)
let tunnelPrologue = Array("CYPHONIC-Swift tunnel v1".utf8)

/// Counters of the control plane.
public final class ControlStats: Sendable {
    public let handshakesCompleted = AtomicCounter()
    public let handshakesRefused = AtomicCounter()
    public let badControl = AtomicCounter()
    public init() {}
}

/// The node's tunnel control plane (DESIGN §4 step 4): runs TunnelRequest /
/// TunnelResponse / completion (Noise XX carrying each side's certificate), verifies the
/// peer's certificate (CA chain, validity, CRL, role, the FQDN the tunnel was set up
/// for; its virtual IPs become the peer's allowed inner sources), installs sessions in
/// the data plane's peer table, and on its timer keeps tunnels alive, rekeys, retries
/// and tears down idle ones. Session keys never leave this process. `@unchecked
/// Sendable`: its tables sit behind `sync`.
public final class TunnelManager: ControlPlane, @unchecked Sendable {
    let localKey: X25519PrivateKey
    let certificateDER: [UInt8]
    let verifier: CertificateVerifier
    let peers: PeerTable
    let keySlots: Int
    let config: NodeConfig
    public let stats = ControlStats()
    var logger: Logger
    /// Set once the pipeline exists (sending needs its socket and keepalive path).
    public var pipeline: Pipeline?

    private let sync = MutexCondition()
    private struct Initiation {
        let handshake: NoiseHandshake
        let target: NodeConfig.PeerEntry?
        let endpoint: SocketAddress
        let sentAt: Double
    }
    private struct Response {
        let handshake: NoiseHandshake
        let remoteIndex: UInt32
        let createdAt: Double
    }
    private var initiations: [UInt32: Initiation] = [:]
    private var responses: [UInt32: Response] = [:]
    private var lastAttempt: [String: Double] = [:]

    public init(localKey: X25519PrivateKey, certificate: Certificate, verifier: CertificateVerifier, peers: PeerTable,
                keySlots: Int, config: NodeConfig, logger: Logger) {
        self.localKey = localKey
        certificateDER = certificate.derBytes
        self.verifier = verifier
        self.peers = peers
        self.keySlots = keySlots
        self.config = config
        self.logger = logger
    }

    private func newIndex() -> UInt32 {
        while true {
            let i = (try? SecureRandom.u32()) ?? UInt32.random(in: 1...UInt32.max)
            if i != 0, initiations[i] == nil, responses[i] == nil, !peers.withLock({ peers.isIndexInUseLocked(i) }) { return i }
        }
    }

    private func send(_ bytes: [UInt8], to address: SocketAddress) {
        guard let socket = pipeline?.socket else { return }
        try? bytes.withUnsafeBytes { try socket.send($0, to: address) }
    }

    // MARK: initiating

    /// Starts a handshake with a configured peer.
    public func initiate(_ target: NodeConfig.PeerEntry) {
        guard let endpoint = Endpoint(target.endpoint) else { return }
        do {
            let hs = try NoiseHandshake(protocol: tunnelNoiseProtocol, role: .initiator, prologue: tunnelPrologue,
                                        localStatic: localKey)
            let message = try hs.writeMessage()
            let index: UInt32 = sync.withLock {
                let i = newIndex()
                initiations[i] = Initiation(handshake: hs, target: target, endpoint: SocketAddress(endpoint), sentAt: monotonicSeconds())
                lastAttempt[target.fqdn] = monotonicSeconds()
                return i
            }
            let datagram = try Datagram(.tunnelRequest(senderIndex: index, pathID: 0, noise: message)).encode()
            send(datagram, to: SocketAddress(endpoint))
            logger.debug("tunnel: handshake initiation to \(target.fqdn) at \(endpoint)")
        } catch {
            logger.warning("tunnel: cannot start handshake with \(target.fqdn): \(error)")
        }
    }

    // MARK: ControlPlane

    public func handleControl(_ bytes: UnsafeRawBufferPointer, from: SocketAddress) {
        let datagram: Datagram
        do { datagram = try Datagram.decode(bytes) } catch {
            stats.badControl.add()
            return
        }
        switch datagram.body {
        case let .tunnelRequest(senderIndex, _, noise):
            respond(to: noise, remoteIndex: senderIndex, from: from)
        case let .tunnelResponse(senderIndex, noise):
            complete(noise, localIndex: datagram.header.receiverIndex, remoteIndex: senderIndex, from: from)
        case let .handshakeCompletion(noise):
            finish(noise, localIndex: datagram.header.receiverIndex, from: from)
        default:
            stats.badControl.add()
        }
    }

    /// Responder, message 1 → message 2 (our certificate).
    private func respond(to message: [UInt8], remoteIndex: UInt32, from: SocketAddress) {
        do {
            let hs = try NoiseHandshake(protocol: tunnelNoiseProtocol, role: .responder, prologue: tunnelPrologue,
                                        localStatic: localKey)
            _ = try hs.readMessage(message)
            let reply = try hs.writeMessage(payload: certificateDER)
            let index: UInt32? = sync.withLock {
                guard responses.count < 1024 else { return nil }
                let i = newIndex()
                responses[i] = Response(handshake: hs, remoteIndex: remoteIndex, createdAt: monotonicSeconds())
                return i
            }
            guard let index else {
                stats.handshakesRefused.add()
                return
            }
            send(try Datagram(.tunnelResponse(senderIndex: index, noise: reply), receiverIndex: remoteIndex).encode(), to: from)
        } catch {
            stats.handshakesRefused.add()
            logger.debug("tunnel: bad tunnel request from \(from.endpoint.map(\.description) ?? "?"): \(error)")
        }
    }

    /// Initiator, message 2 (their certificate) → message 3 (ours); the session starts.
    private func complete(_ message: [UInt8], localIndex: UInt32, remoteIndex: UInt32, from: SocketAddress) {
        guard let pending = sync.withLock({ initiations.removeValue(forKey: localIndex) }) else {
            stats.badControl.add()
            return
        }
        do {
            let certDER = try pending.handshake.readMessage(message)
            let cert = try accept(certDER, proven: pending.handshake.remoteStatic, expectedName: pending.target?.fqdn)
            let m3 = try pending.handshake.writeMessage(payload: certificateDER)
            let (send, receive) = try pending.handshake.split()
            let session = try DataSession(localIndex: localIndex, remoteIndex: remoteIndex, isInitiator: true,
                                          send: send.key!.keyBytes, receive: receive.key!.keyBytes,
                                          algorithm: tunnelNoiseProtocol.cipher, threads: keySlots)
            self.send(try Datagram(.handshakeCompletion(noise: m3), receiverIndex: remoteIndex).encode(), to: from)
            install(session, certificate: cert, from: from)
        } catch {
            stats.handshakesRefused.add()
            logger.warning("tunnel: refused \(pending.target?.fqdn ?? "peer") at \(from.endpoint.map(\.description) ?? "?"): \(error)")
        }
    }

    /// Responder, message 3 (their certificate); the session starts.
    private func finish(_ message: [UInt8], localIndex: UInt32, from: SocketAddress) {
        guard let pending = sync.withLock({ responses.removeValue(forKey: localIndex) }) else {
            stats.badControl.add()
            return
        }
        do {
            let certDER = try pending.handshake.readMessage(message)
            let cert = try accept(certDER, proven: pending.handshake.remoteStatic, expectedName: nil)
            let known = peers.withLock { peers.peerLocked(staticKey: cert.x25519PublicKey?.bytes ?? []) != nil }
            guard config.acceptUnknownPeers || known || config.peers.contains(where: { $0.fqdn == cert.commonName }) else {
                throw PKIError.untrusted("peer \(cert.commonName ?? "?") is not configured and acceptUnknownPeers is off")
            }
            let (send, receive) = try pending.handshake.split()
            let session = try DataSession(localIndex: localIndex, remoteIndex: pending.remoteIndex, isInitiator: false,
                                          send: send.key!.keyBytes, receive: receive.key!.keyBytes,
                                          algorithm: tunnelNoiseProtocol.cipher, threads: keySlots)
            install(session, certificate: cert, from: from)
        } catch {
            stats.handshakesRefused.add()
            logger.warning("tunnel: refused peer at \(from.endpoint.map(\.description) ?? "?"): \(error)")
        }
    }

    /// Verifies a peer certificate and that it carries the key the handshake proved.
    private func accept(_ der: [UInt8], proven: X25519PublicKey?, expectedName: String?) throws -> Certificate {
        let cert = try Certificate(der: der)
        try verifier.verify(cert, role: .node, name: expectedName)
        guard let proven, cert.x25519PublicKey == proven else {
            throw PKIError.wrongKeyType("certificate does not carry the key the handshake proved")
        }
        guard !cert.ipAddresses.isEmpty else { throw PKIError.addressMismatch("certificate names no virtual IP") }
        return cert
    }

    private func install(_ session: DataSession, certificate: Certificate, from: SocketAddress) {
        guard let key = certificate.x25519PublicKey else { return }
        let fqdn = certificate.commonName ?? "?"
        peers.withLock {
            let peer: Peer
            if let existing = peers.peerLocked(staticKey: key.bytes) {
                peer = existing
            } else {
                peer = Peer(staticKey: key, fqdn: fqdn, addresses: certificate.ipAddresses, endpoint: nil)
                peers.insertLocked(peer)
            }
            peers.installLocked(session, for: peer, endpoint: from)
            peer.stats.handshakes.add()
        }
        stats.handshakesCompleted.add()
        logger.info("tunnel: session with \(fqdn) (\(certificate.ipAddresses.map(\.description).joined(separator: ", "))) at \(from.endpoint.map(\.description) ?? "?")")
    }

    // MARK: timers

    public func tick() {
        let now = monotonicSeconds()
        sync.withLock {
            initiations = initiations.filter { now - $0.value.sentAt < 5 }
            responses = responses.filter { now - $0.value.createdAt < 10 }
        }
        var toInitiate: [NodeConfig.PeerEntry] = []
        var keepalive: [Peer] = []
        peers.withLock {
            for peer in peers.peersLocked {
                for s in [peer.current, peer.previous].compactMap({ $0 }) {
                    if now - s.created > DataSession.rejectAfterSeconds || now - s.lastReceived > config.idleTimeoutSeconds {
                        peers.dropLocked(s, of: peer)
                        logger.info("tunnel: session with \(peer.fqdn) ended (\(now - s.created > DataSession.rejectAfterSeconds ? "expired" : "idle"))")
                    }
                }
                guard let s = peer.current else { continue }
                let target = config.peers.first { $0.fqdn == peer.fqdn }
                if let target, s.isInitiator, now - s.created > config.rekeyAfterSeconds || s.messagesSent > DataSession.rekeyAfterMessages {
                    toInitiate.append(target)
                }
                // Both sides send at least a keepalive every keepaliveSeconds: silence for
                // longer means the peer lost the session (restart, new address): reconnect.
                if let target, now - s.lastReceived > config.keepaliveSeconds + 5 { toInitiate.append(target) }
                if now - s.lastSent > config.keepaliveSeconds { keepalive.append(peer) }
            }
        }
        // Configured peers without a session: (re)connect, at most every 5 s.
        for target in config.peers {
            let connected = peers.withLock { peers.peersLocked.contains { $0.fqdn == target.fqdn && $0.current != nil } }
            if !connected { toInitiate.append(target) }
        }
        for target in toInitiate {
            let due = sync.withLock { now - (lastAttempt[target.fqdn] ?? 0) >= min(5, config.rekeyAfterSeconds) }
            let pending = sync.withLock { initiations.values.contains { $0.target?.fqdn == target.fqdn } }
            if due && !pending { initiate(target) }
        }
        for peer in keepalive { pipeline?.sendKeepalive(to: peer) }
    }
}
