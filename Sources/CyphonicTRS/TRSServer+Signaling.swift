import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

// The relay's signaling: handshakes (behind the guard), registrations, relay requests,
// keepalives and finalization; on the socket's thread, after its batch.
extension TRSServer {
    func signaling(_ bytes: [UInt8], from: Endpoint, socketIndex: Int) {
        guard let header = try? bytes.withUnsafeBytes({ try Header.decode($0) }) else { return metrics.drop("malformed") }
        let now = unixNowSeconds()
        switch header.type {
        case .handshakeInitiation: initiation(bytes, from: from, socketIndex: socketIndex, now: now)
        case .handshakeCompletion: completion(bytes, header: header, from: from, socketIndex: socketIndex, now: now)
        case .signaling: sealed(bytes, header: header, from: from, socketIndex: socketIndex, now: now)
        default: metrics.drop("unexpected_type")
        }
    }

    func send(_ bytes: [UInt8], to: Endpoint, socketIndex: Int) {
        guard let socket = sockets.withLock({ socketIndex < $0.count ? $0[socketIndex] : nil }) else { return }
        do { try socket.send(bytes, to: to) } catch { metrics.drop("send_failed") }
    }

    private func initiation(_ bytes: [UInt8], from: Endpoint, socketIndex: Int, now: Int64) {
        let answer = bytes.withUnsafeBytes {
            responder.answer($0, from: from, socketIndex: socketIndex, now: now, inUse: { i in nodes.withLock { $0.byIndex[i] != nil } })
        }
        switch answer {
        case .reply(let reply, let cookie):
            if cookie { metrics.drop("cookie_sent") }
            send(reply, to: from, socketIndex: socketIndex)
        case .drop(let reason):
            metrics.drop(reason)
        }
    }

    /// Message 3: the node's certificate (our CA, role node, the key it proved).
    private func completion(_ bytes: [UInt8], header: Header, from: Endpoint, socketIndex: Int, now: Int64) {
        let key: X25519PublicKey
        let payload: [UInt8]
        let session: SignalingSession
        switch responder.finish(bytes, header: header, from: from, now: now) {
        case .success(let c): (key, payload, session) = (c.clientKey, c.payload, c.session)
        case .failure(let drop): return metrics.drop(drop.reason)
        }
        metrics.handshakes.increment()
        func refuse(_ text: String) {
            metrics.drop("registration_refused")
            logger.notice("trs: registration from \(from) refused: \(text)")
            if let sealed = try? session.seal(
                SignalingMessage(transactionID: 0, body: .error(code: .unauthorized, message: text)), status: .unauthorized)
            {
                send(sealed, to: from, socketIndex: socketIndex)
            }
        }
        guard let message = try? SignalingMessage.decode(payload), case .registration(let r) = message.body else {
            return refuse("expected a registration")
        }
        guard let cert = try? Certificate(der: r.certificate), (try? verifier.verify(cert, role: .node, at: now)) != nil,
            cert.x25519PublicKey == key, let fqdn = cert.commonName
        else { return refuse("certificate not accepted") }
        // Sealed before the session is compacted (the compact copy continues its counter).
        let ack = RegistrationAck(
            observed: from, keepAliveSeconds: UInt16(settings.refreshSeconds), probeToken: [UInt8](repeating: 0, count: Datagram.probeTokenSize),
            probeEndpoints: [])
        guard let sealedAck = try? session.seal(SignalingMessage(transactionID: message.transactionID, body: .registrationAck(ack))) else {
            return metrics.drop("handshake_failed")
        }
        let full = nodes.withLock { n -> Bool in
            if let old = n.byKey[key.bytes] { n.remove(old) }
            guard n.byIndex.count < settings.maxNodes else { return true }
            n.byIndex[session.localIndex] = NodeSessions.Node(
                session: session.compact(), key: key.bytes, fqdn: fqdn, serial: cert.serial ?? 0, endpoint: from, socketIndex: socketIndex,
                lastSeen: now,
                budget: SignalingBudget(now: now))
            n.byKey[key.bytes] = session.localIndex
            return false
        }
        guard !full else { return refuse("relay full") }
        send(sealedAck, to: from, socketIndex: socketIndex)
        logger.info("trs: \(fqdn) connected from \(from)")
    }

    /// Seals `message` in the session of the node with our index `index`, to where it is.
    func send(_ message: SignalingMessage, toNode index: UInt32, status: StatusCode = .ok) {
        guard
            let (session, counter, endpoint, socketIndex) = nodes.withLock({ n -> (CompactSignalingSession, UInt64, Endpoint, Int)? in
                guard let c = try? n.byIndex[index]?.session.nextCounter(), let node = n.byIndex[index] else { return nil }
                return (node.session, c, node.endpoint, node.socketIndex)
            })
        else { return }
        if let bytes = try? session.seal(message, counter: counter, status: status) { send(bytes, to: endpoint, socketIndex: socketIndex) }
    }

    private func sealed(_ bytes: [UInt8], header: Header, from: Endpoint, socketIndex: Int, now: Int64) {
        guard let session = nodes.withLock({ $0.byIndex[header.receiverIndex]?.session }) else { return metrics.drop("unknown_session") }
        let opened = bytes.withUnsafeBytes { b in Result { () throws(SessionError) in try session.decrypt(b, header: header) } }
        let message: SignalingMessage
        switch opened {
        case .success(let m): message = m
        case .failure(let e): return metrics.drop(e.dropReason)
        }
        // Only from the address the node proved in its handshake (it had to receive our
        // message 2 there): a node that moved connects again, so no one can point an end
        // at an address that never answered. And at most its signaling budget.
        enum Check {
            case ok([UInt8])
            case replay, moved, limited
        }
        let check = nodes.withLock { n -> Check in
            guard var node = n.byIndex[header.receiverIndex] else { return .replay }
            guard node.endpoint == from else { return .moved }
            guard node.budget.take(now: now) else { return .limited }
            guard node.session.accept(header.counter, now: now) else { return .replay }
            node.lastSeen = now
            n.byIndex[header.receiverIndex] = node
            return .ok(node.key)
        }
        let key: [UInt8]
        switch check {
        case .ok(let k): key = k
        case .replay: return metrics.drop("replay")
        case .moved: return metrics.drop("moved")
        case .limited: return metrics.drop("signaling_rate_limited")
        }
        let index = header.receiverIndex
        switch message.body {
        case .keepAlive:
            send(SignalingMessage(transactionID: message.transactionID, body: .keepAliveAck(observed: from)), toNode: index)
        case .relayRequest(let q):
            relayRequest(q, key: key, transactionID: message.transactionID, node: index, from: from, socketIndex: socketIndex, now: now)
        case .finalization:
            nodes.withLock { $0.remove(index) }
        default:
            send(
                SignalingMessage(transactionID: message.transactionID, body: .error(code: .badRequest, message: "unsupported request")), toNode: index
            )
        }
    }

    /// A relay request: the authorization checked offline, then this end bound.
    private func relayRequest(
        _ q: RelayRequest, key: [UInt8], transactionID: UInt32, node: UInt32, from: Endpoint, socketIndex: Int, now: Int64
    ) {
        func refuse(_ reason: String, _ code: StatusCode, _ text: String) {
            metrics.refuse(reason)
            // A refused refresh ends this node's part in the path.
            table.withLock { $0.unbind(q.pathID, nodeKey: key) }
            logger.notice("trs: relay request for path \(q.pathID) from \(from) refused: \(text)")
            send(SignalingMessage(transactionID: transactionID, body: .error(code: code, message: text)), toNode: node, status: code)
        }
        let authorization: PathAuthorization
        do { authorization = try PathAuthorization(bytes: q.authorization) } catch {
            return refuse("malformed", .badRequest, "malformed route authorization")
        }
        guard let signer = signingKey(q.signingCertificate) else {
            return refuse("untrusted_signer", .unauthorized, "the NMS signing certificate is not one of our CA's")
        }
        guard authorization.processCode == .relay || authorization.processCode == .natTraversal else {
            return refuse("wrong_code", .forbidden, "the authorization is for a direct route")
        }
        // A refresh of an authorization verified before costs a hash, not a signature check.
        let digest = SHA256.hash(q.authorization)
        let known = verified.withLock { $0[digest] }
        do throws(AuthorizationError) {
            if let expires = known {
                guard expires >= now else { throw AuthorizationError.expired }
                guard authorization.pathID == q.pathID else { throw AuthorizationError.wrongPath }
            } else {
                try authorization.verify(
                    signer: signer, pathID: q.pathID, between: authorization.initiatorKey, and: authorization.responderKey, now: now)
                verified.withLock { v in
                    if v.count >= 100_000 { v.removeAll() }
                    v[digest] = Int64(clamping: authorization.expires)
                }
            }
        } catch {
            switch error {
            case .badSignature: return refuse("bad_signature", .unauthorized, "\(error)")
            case .expired: return refuse("expired", .expired, "\(error)")
            case .wrongPath: return refuse("wrong_path", .badRequest, "\(error)")
            default: return refuse("malformed", .badRequest, "\(error)")
            }
        }
        // An authorization that names a relay is for that relay only (another relay host
        // of the overlay, chosen by the NMS for this path, carries it).
        guard authorization.allowsRelay(named: relayName) else {
            return refuse("wrong_relay", .forbidden, "the route authorization names another relay")
        }
        let result = table.withLock {
            $0.bind(
                authorization, nodeKey: key, address: SocketAddress(from), socketIndex: socketIndex, indices: q.sessionIndices,
                now: monotonicSeconds(), validFor: Double(Int64(clamping: authorization.expires) - now))
        }
        switch result {
        case .refused(let reason):
            refuse(
                reason, reason == "wrong_node" ? .forbidden : .unavailable,
                "relay request refused (\(reason.replacingOccurrences(of: "_", with: " ")))")
        case .bound(let peerBound, let notify):
            let idle = UInt16(clamping: settings.sessionIdleSeconds)
            send(
                SignalingMessage(
                    transactionID: transactionID, body: .relayGrant(RelayGrant(pathID: q.pathID, peerBound: peerBound, idleSeconds: idle))),
                toNode: node)
            if let other = notify, let otherIndex = nodes.withLock({ $0.byKey[other] }) {
                send(
                    SignalingMessage(transactionID: 0, body: .relayGrant(RelayGrant(pathID: q.pathID, peerBound: true, idleSeconds: idle))),
                    toNode: otherIndex)
            }
            if notify != nil { logger.info("trs: path \(q.pathID) relayed (both ends bound)") }
        }
    }

    /// The Ed25519 key of an NMS signing certificate of our CA; verdicts (also refusals)
    /// are cached by certificate until it expires, at most 64.
    private func signingKey(_ der: [UInt8]) -> Ed25519PublicKey? {
        let now = unixNowSeconds()
        if let cached = signers.withLock({ $0[der] }), cached.until >= now { return cached.key }
        let cert = try? Certificate(der: der)
        let key = try? nmsSigningKey(certificate: der, verifier: verifier, now: now)
        signers.withLock { s in
            if s.count >= 64 { s.removeAll() }
            s[der] = (key, key == nil ? now + 60 : cert?.notAfter ?? now)
        }
        return key
    }
}
