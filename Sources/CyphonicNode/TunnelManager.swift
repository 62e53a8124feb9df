import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire
import Logging

/// The Noise protocol of node ↔ node tunnels: XX, so neither side needs the other's
/// static key in advance; each proves its certificate inside the encrypted handshake.
public let tunnelNoiseProtocol = NoiseProtocol(pattern: .xx, cipher: .aes256gcm)
let tunnelPrologue = Array("CYPHONIC-Swift tunnel v1".utf8)

/// Counters of the control plane (status and metrics).
public final class ControlStats: Sendable {
    public let handshakesCompleted = AtomicCounter()
    public let handshakesRefused = AtomicCounter()
    public let badControl = AtomicCounter()
    /// Initiations the handshake guard dropped (per-source or total limit).
    public let handshakesThrottled = AtomicCounter()
    /// Cookie replies sent to unverified sources, and cookie retries we made.
    public let cookiesSent = AtomicCounter()
    public let cookieRetries = AtomicCounter()
    /// Handshakes refused because another peer with a session owns the virtual IPs.
    public let addressConflicts = AtomicCounter()
    /// Peers whose sessions ended because their certificate was revoked or expired.
    public let peersRevoked = AtomicCounter()
    /// Handshake message 3 sent again while the responder had not confirmed it.
    public let message3Retransmits = AtomicCounter()
    /// Closed tunnels asked for again because this host sent a packet to the peer's
    /// address (the NMS asked; a name already live again is not counted), and how many
    /// of those asks ended without a tunnel.
    public let reopens = AtomicCounter()
    public let reopensFailed = AtomicCounter()
    public init() {}
}

/// The node's tunnel control plane (DESIGN §4 step 4), run on the pipeline's control
/// thread: TunnelRequest / TunnelResponse / completion (Noise XX carrying each side's
/// certificate) behind the ``HandshakeGuard`` (cookies for unverified sources, per-source
/// and total limits, no answer larger than the request to an unverified source);
/// verifies the peer's certificate (CA chain, validity, the current revocation list,
/// role, the FQDN the tunnel was set up for; its virtual IPs become the peer's allowed
/// inner sources, and never those of another peer with a session); installs sessions in
/// the data plane's peer table. Guarantees: a forged or corrupted handshake message
/// never destroys a handshake in flight (state is tried on a copy); during a rekey the
/// old session carries traffic until the responder confirms the new one; a revoked or
/// expired peer's sessions end within one revocation-list refresh. Session keys never
/// leave this process. `@unchecked Sendable`: its tables sit behind `sync`.
public final class TunnelManager: ControlPlane, @unchecked Sendable {
    let localKey: X25519PrivateKey
    /// Our certificate as sent in handshakes (guarded by `sync`: a renewal replaces it).
    private var certificateValue: [UInt8]
    var certificateDER: [UInt8] { sync.withLock { certificateValue } }
    let peers: PeerTable
    let keySlots: Int
    let config: NodeConfig
    public let stats = ControlStats()
    public let handshakeGuard: HandshakeGuard
    var logger: Logger
    /// Set once the pipeline exists (sending needs its socket and keepalive path).
    public var pipeline: Pipeline?
    /// The signaling module (NMS registration, directed tunnels), when an NMS is known.
    public var signaling: NodeSignaling?

    let sync = MutexCondition()
    /// The verifier with the newest revocation list (guarded by `sync`).
    private var verifierValue: CertificateVerifier
    /// A list fetched by the refresher, applied by the control thread's next tick.
    var pendingRevocations: RevocationList?

    struct Initiation {
        var handshake: NoiseHandshake
        let fqdn: String
        let endpoint: SocketAddress
        var sentAt: Double
        var cookieUsed: Bool
    }
    struct Response {
        let handshake: NoiseHandshake
        let remoteIndex: UInt32
        let createdAt: Double
        let sourceKey: [UInt8]
    }
    /// An initiator's session whose message 3 the responder has not confirmed yet.
    struct Confirmation {
        let datagram: [UInt8]
        let endpoint: SocketAddress
        let session: DataSession
        let fqdn: String
        var sentAt: Double
        var tries: Int
    }
    var initiations: [UInt32: Initiation] = [:]
    var responses: [UInt32: Response] = [:]
    var confirmations: [UInt32: Confirmation] = [:]
    /// Responder: message 3s accepted in the last seconds, so a retransmitted one is
    /// answered with a keepalive on the session instead of being dropped.
    var finished: [UInt32: Finished] = [:]
    struct Finished {
        let message: [UInt8]
        let at: Double
        var answered: Double
        let session: DataSession?
    }
    var lastAttempt: [String: Double] = [:]
    /// Closed tunnels asked for again (by name), and when: at most one ask per 5 s.
    var reopenAsked: [String: Double] = [:]
    /// Lines about reopened tunnels, at most 5 a second.
    let reopenLog = LogRateLimiter(perSecond: 5)
    /// Configured peers' endpoints given as DNS names: what they resolved to, and when.
    var resolvedNames: [String: (endpoint: Endpoint?, at: Double)] = [:]
    /// Handshakes started per peer name since its last session (status: "sent N
    /// initiations, no answer"), reset when a session comes up.
    var unanswered: [String: Int] = [:]

    /// Pending responder handshakes, in total and per source.
    static let maxResponses = 1024
    static let maxResponsesPerSource = 8

    public init(
        localKey: X25519PrivateKey, certificate: Certificate, verifier: CertificateVerifier, peers: PeerTable,
        keySlots: Int, config: NodeConfig, logger: Logger
    ) throws {
        self.localKey = localKey
        certificateValue = certificate.derBytes
        verifierValue = verifier
        self.peers = peers
        self.keySlots = keySlots
        self.config = config
        self.logger = logger
        var limits = HandshakeGuard.Limits()
        limits.loadThresholdPerSecond = config.handshakeLoadThreshold
        limits.perSourcePerSecond = config.handshakesPerSourcePerSecond
        limits.perSourceBurst = 4 * config.handshakesPerSourcePerSecond
        limits.totalPerSecond = config.handshakesPerSecond
        handshakeGuard = try HandshakeGuard(limits: limits)
    }

    var verifier: CertificateVerifier { sync.withLock { verifierValue } }

    /// The revocation list in force (number), if any.
    public var revocationListNumber: UInt64? { sync.withLock { verifierValue.revocations?.number } }

    /// Hands over a newer revocation list (from the refresher thread); the control
    /// thread applies it at its next tick.
    public func offerRevocations(_ crl: RevocationList) {
        sync.withLock {
            let have = pendingRevocations?.number ?? verifierValue.revocations?.number
            if have == nil || crl.number > have! { pendingRevocations = crl }
        }
    }

    func setVerifier(_ v: CertificateVerifier) { sync.withLock { verifierValue = v } }

    private func newIndex() -> UInt32 {
        while true {
            let i = (try? SecureRandom.u32()) ?? UInt32.random(in: 1...UInt32.max)
            if i != 0, initiations[i] == nil, responses[i] == nil, !peers.withLock({ peers.isIndexInUseLocked(i) }) { return i }
        }
    }

    /// Sends a handshake message without ever waiting: a full send buffer (say, answers
    /// queued for addresses that do not resolve) drops it, and the peer retries.
    func send(_ bytes: [UInt8], to address: SocketAddress) {
        guard let socket = pipeline?.socket else { return }
        try? bytes.withUnsafeBytes { try socket.send($0, to: address, nonBlocking: true) }
    }

    /// Size of our message 2 (what an unverified source would get back).
    var responseSize: Int { Header.size + 4 + 32 + 48 + certificateDER.count + 16 }

    // MARK: initiating

    /// Starts a handshake with a configured peer.
    public func initiate(_ target: NodeConfig.PeerEntry) {
        guard let endpoint = configuredEndpoint(target.endpoint) else { return }
        initiate(fqdn: target.fqdn, endpoint: SocketAddress(endpoint))
    }

    /// Starts a handshake with the node named `fqdn` at `endpoint`.
    func initiate(fqdn: String, endpoint: SocketAddress, cookie: [UInt8]? = nil, index reuse: UInt32? = nil) {
        do {
            let hs = try NoiseHandshake(
                protocol: tunnelNoiseProtocol, role: .initiator, prologue: tunnelPrologue,
                localStatic: localKey)
            // Padded (so an idle responder may answer at once) and carrying the cookie if we have one.
            let message = try hs.writeMessage(payload: HandshakeGuard.initiationPayload(cookie: cookie, overhead: Header.size + 4 + 8 + 32))
            let now = monotonicSeconds()
            let index: UInt32 = sync.withLock {
                let i = reuse ?? newIndex()
                initiations[i] = Initiation(handshake: hs, fqdn: fqdn, endpoint: endpoint, sentAt: now, cookieUsed: cookie != nil)
                lastAttempt[fqdn] = now
                unanswered[fqdn, default: 0] += 1
                return i
            }
            // The NMS path id, so a relay on the way finds the path (0 for static peers).
            let pathID = signaling?.path(of: fqdn)?.pathID ?? 0
            send(try Datagram(.tunnelRequest(senderIndex: index, pathID: pathID, noise: message)).encode(), to: endpoint)
            logger.debug(
                "tunnel: handshake initiation to \(fqdn) at \(endpoint.endpoint.map(\.description) ?? "?")\(cookie == nil ? "" : " with cookie")")
        } catch {
            logger.warning("tunnel: cannot start handshake with \(fqdn): \(error)")
        }
    }

    /// Uses a renewed certificate (same key) for every handshake from now on.
    public func replaceCertificate(_ certificate: Certificate) { sync.withLock { certificateValue = certificate.derBytes } }

    // MARK: ControlPlane

    public func handleControl(_ bytes: UnsafeRawBufferPointer, from: SocketAddress, verified: Bool) {
        // Initiations pass the guard before anything is decoded or allocated: a flood of
        // them costs one HMAC each (and a 32-byte cookie reply at most).
        if bytes.count >= Self.requestNoiseOffset + 32, bytes[1] == MessageType.tunnelRequest.rawValue,
            !admit(bytes, from: from, verified: verified)
        {
            return
        }
        let datagram: Datagram
        do { datagram = try Datagram.decode(bytes) } catch {
            stats.badControl.add()
            return
        }
        if let signaling, signaling.owns(type: datagram.header.type, receiverIndex: datagram.header.receiverIndex) {
            signaling.handle(datagram, raw: Array(bytes), from: from)
            return
        }
        switch datagram.body {
        case .tunnelRequest(let senderIndex, _, let noise):
            respond(to: noise, remoteIndex: senderIndex, from: from)
        case .tunnelResponse(let senderIndex, let noise):
            complete(noise, localIndex: datagram.header.receiverIndex, remoteIndex: senderIndex, from: from)
        case .handshakeCompletion(let noise):
            finish(noise, localIndex: datagram.header.receiverIndex, from: from)
        case .cookieReply(let cookie):
            retry(localIndex: datagram.header.receiverIndex, cookie: cookie, from: from)
        default:
            stats.badControl.add()
        }
    }

    /// Responder, message 1 → message 2 (our certificate); the guard let it through.
    private func respond(to message: [UInt8], remoteIndex: UInt32, from: SocketAddress) {
        guard let source = from.endpoint else {
            stats.badControl.add()
            return
        }
        let sourceKey = HandshakeGuard.sourceKey(source.address)
        let room = sync.withLock { () -> Bool in
            // A source's oldest pending handshake makes way for its newest, so nobody can
            // hold another's slots (an old one was abandoned, or forged).
            let mine = responses.filter { $0.value.sourceKey == sourceKey }
            if mine.count >= Self.maxResponsesPerSource, let oldest = mine.min(by: { $0.value.createdAt < $1.value.createdAt }) {
                responses.removeValue(forKey: oldest.key)
            }
            return responses.count < Self.maxResponses
        }
        guard room else {
            stats.handshakesThrottled.add()
            return
        }
        do {
            let hs = try NoiseHandshake(
                protocol: tunnelNoiseProtocol, role: .responder, prologue: tunnelPrologue,
                localStatic: localKey)
            _ = try hs.readMessage(message)
            let reply = try hs.writeMessage(payload: certificateDER)
            let index: UInt32 = sync.withLock {
                let i = newIndex()
                responses[i] = Response(handshake: hs, remoteIndex: remoteIndex, createdAt: monotonicSeconds(), sourceKey: sourceKey)
                return i
            }
            send(try Datagram(.tunnelResponse(senderIndex: index, noise: reply), receiverIndex: remoteIndex).encode(), to: from)
        } catch {
            stats.handshakesRefused.add()
            logger.debug("tunnel: bad tunnel request from \(source): \(error)")
        }
    }

    /// Initiator, message 2 (their certificate) → message 3 (ours); the session starts,
    /// unconfirmed until the responder's first packet on it. The pending state is used
    /// up only by a message 2 that authenticates and carries an acceptable certificate.
    private func complete(_ message: [UInt8], localIndex: UInt32, remoteIndex: UInt32, from: SocketAddress) {
        guard let pending = sync.withLock({ initiations[localIndex] }) else {
            stats.badControl.add()
            return
        }
        do {
            let hs = try pending.handshake.copy()
            let certDER = try hs.readMessage(message)
            let cert = try accept(certDER, proven: hs.remoteStatic, expectedName: pending.fqdn)
            guard sync.withLock({ initiations.removeValue(forKey: localIndex) }) != nil else { return }
            let m3 = try hs.writeMessage(payload: certificateDER)
            let (send, receive) = try hs.split()
            let session = try DataSession(
                localIndex: localIndex, remoteIndex: remoteIndex, isInitiator: true,
                send: send.key!.keyBytes, receive: receive.key!.keyBytes,
                algorithm: tunnelNoiseProtocol.cipher, threads: keySlots, confirmed: false)
            let datagram = try Datagram(.handshakeCompletion(noise: m3), receiverIndex: remoteIndex).encode()
            // Installed first (so the responder's confirming keepalive finds the session),
            // and message 3 is sent only for a session we keep.
            guard install(session, certificate: cert, from: from) != nil else { return }
            sync.withLock {
                confirmations[localIndex] = Confirmation(
                    datagram: datagram, endpoint: from, session: session,
                    fqdn: pending.fqdn, sentAt: monotonicSeconds(), tries: 1)
            }
            self.send(datagram, to: from)
        } catch {
            stats.handshakesRefused.add()
            logger.warning("tunnel: refused \(pending.fqdn) at \(from.endpoint.map(\.description) ?? "?"): \(error)")
        }
    }

    /// Responder, message 3 (their certificate); the session starts, and a keepalive on
    /// it tells the initiator at once that we have it.
    private func finish(_ message: [UInt8], localIndex: UInt32, from: SocketAddress) {
        if let done = sync.withLock({ finished[localIndex] }) {
            // A retransmitted message 3: our confirming keepalive was lost; send another on
            // that very session, at most once a second (a replayed copy gains nothing).
            let now = monotonicSeconds()
            let due = sync.withLock { () -> Bool in
                guard done.message == message, now - (finished[localIndex]?.answered ?? now) >= 1 else { return false }
                finished[localIndex]?.answered = now
                return true
            }
            if due, let session = done.session, let peer = peers.withLock({ peers.sessionOwnerLocked(index: localIndex) }) {
                pipeline?.sendKeepalive(to: peer, on: session)
            } else if done.message != message {
                stats.badControl.add()
            }
            return
        }
        guard let pending = sync.withLock({ responses[localIndex] }) else {
            stats.badControl.add()
            return
        }
        do {
            let hs = try pending.handshake.copy()
            let certDER = try hs.readMessage(message)
            let cert = try accept(certDER, proven: hs.remoteStatic, expectedName: nil)
            let known = peers.withLock { peers.peerLocked(staticKey: cert.x25519PublicKey?.bytes ?? []) != nil }
            let directed = signaling?.authorizes(name: cert.commonName ?? "", key: cert.x25519PublicKey?.bytes ?? []) ?? false
            let open = config.acceptUnknownPeers ?? (signaling == nil)
            guard open || known || directed || config.peers.contains(where: { $0.fqdn == cert.commonName }) else {
                throw PKIError.untrusted(
                    "peer \(cert.commonName ?? "?") is not configured, not directed to us by the NMS, and acceptUnknownPeers is off")
            }
            guard sync.withLock({ responses.removeValue(forKey: localIndex) }) != nil else { return }
            let (send, receive) = try hs.split()
            let session = try DataSession(
                localIndex: localIndex, remoteIndex: pending.remoteIndex, isInitiator: false,
                send: send.key!.keyBytes, receive: receive.key!.keyBytes,
                algorithm: tunnelNoiseProtocol.cipher, threads: keySlots)
            let now = monotonicSeconds()
            sync.withLock { finished[localIndex] = Finished(message: message, at: now, answered: now, session: session) }
            if let peer = install(session, certificate: cert, from: from) { pipeline?.sendKeepalive(to: peer, on: session) }
        } catch {
            stats.handshakesRefused.add()
            logger.warning("tunnel: refused peer at \(from.endpoint.map(\.description) ?? "?"): \(error)")
        }
    }

    /// Verifies a peer certificate and that it carries the key the handshake proved.
    private func accept(_ der: [UInt8], proven: X25519PublicKey?, expectedName: String?) throws -> Certificate {
        try Self.acceptPeerCertificate(der, proven: proven, expectedName: expectedName, verifier: verifier)
    }

    /// A peer's certificate from a tunnel handshake, checked as every node checks it: issued
    /// by our CA for a node (named `expectedName` when given), carrying the static key the
    /// handshake proved, naming at least one virtual IP. Shared with ``SimulatedPeer``.
    static func acceptPeerCertificate(
        _ der: [UInt8], proven: X25519PublicKey?, expectedName: String?, verifier: CertificateVerifier
    ) throws -> Certificate {
        let cert = try Certificate(der: der)
        try verifier.verify(cert, role: .node, name: expectedName)
        guard let proven, cert.x25519PublicKey == proven else {
            throw PKIError.wrongKeyType("certificate does not carry the key the handshake proved")
        }
        guard !cert.ipAddresses.isEmpty else { throw PKIError.addressMismatch("certificate names no virtual IP") }
        return cert
    }

    /// Installs `session` for the peer the certificate names, updating the peer's
    /// identity from it (a peer whose addresses or name changed is replaced). Refuses
    /// (nil) when another peer with a session owns those virtual IPs.
    private func install(_ session: DataSession, certificate: Certificate, from: SocketAddress) -> Peer? {
        guard let key = certificate.x25519PublicKey else { return nil }
        let fqdn = certificate.commonName ?? "?"
        var conflict: Peer?
        var replaced = false
        let installed: Peer? = peers.withLock {
            var peer = peers.peerLocked(staticKey: key.bytes)
            // A peer whose certificate now says other things, or that said goodbye, is
            // replaced by a fresh one; insertLocked removes the old one only if the new
            // addresses are not another live peer's (so a refused change loses nothing).
            if let existing = peer, existing.addresses != certificate.ipAddresses || existing.fqdn != fqdn || existing.finalized {
                peer = nil
                replaced = !existing.finalized
            }
            if peer == nil {
                let fresh = Peer(staticKey: key, fqdn: fqdn, addresses: certificate.ipAddresses, endpoint: nil)
                if let owner = peers.insertLocked(fresh) {
                    conflict = owner
                    return nil
                }
                peer = fresh
            }
            guard let peer else { return nil }
            peers.setCertificateLocked(peer, serial: certificate.serial, notAfter: certificate.notAfter)
            peers.installLocked(session, for: peer, endpoint: from)
            peer.stats.handshakes.add()
            return peer
        }
        let addresses = certificate.ipAddresses.map(\.description).joined(separator: ", ")
        if let conflict {
            stats.addressConflicts.add()
            stats.handshakesRefused.add()
            logger.warning(
                "tunnel: refused \(fqdn) (serial \(certificate.serial.map(String.init) ?? "?")): its addresses \(addresses) belong to \(conflict.fqdn), which has a session"
            )
            return nil
        }
        if replaced { logger.notice("tunnel: \(fqdn) presents new identity (\(addresses)); its old sessions ended") }
        stats.handshakesCompleted.add()
        logger.info("tunnel: session with \(fqdn) (\(addresses)) at \(from.endpoint.map(\.description) ?? "?")")
        // A name lookup is answered once the peer holds the session: at once for a
        // responder's, at the peer's first packet for ours (sessionConfirmed), so the
        // application's first packet never overtakes our handshake message 3.
        if session.isConfirmed { signaling?.peerUp(fqdn, addresses: certificate.ipAddresses) }
        sync.withLock { _ = unanswered.removeValue(forKey: fqdn) }
        return installed
    }
}
