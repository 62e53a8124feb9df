import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

// Registration (message 3), keepalives, finalization and NAT probes.
extension NMSServer {
    /// Message 3: the node's Registration, checked (certificate of our CA, role node,
    /// valid now, not revoked, carrying the key the handshake proved), recorded, and
    /// answered with a RegistrationAck. On a worker.
    func completion(_ bytes: [UInt8], header: Header, from: Endpoint, socket: UDPSocket, index: Int, now: Int64) {
        // Taken out, so message 3 is single-use (a replay finds nothing).
        let clientKey: X25519PublicKey
        let payload: [UInt8]
        let session: SignalingSession
        switch responder.finish(bytes, header: header, from: from, now: now) {
        case .success(let c): (clientKey, payload, session) = (c.clientKey, c.payload, c.session)
        case .failure(let drop): return metrics.drop(drop.reason)
        }
        metrics.handshakes.increment()
        let message: SignalingMessage
        do { message = try SignalingMessage.decode(payload) } catch {
            metrics.registration("bad_request")
            return
        }
        func refuse(_ result: String, _ code: StatusCode, _ text: String) {
            metrics.registration(result)
            if refusalLog.admit(now: now, summary: refusalsNotLogged) { logger.notice("nms: registration from \(from) refused: \(text)") }
            let reply = SignalingMessage(transactionID: message.transactionID, body: .error(code: code, message: text))
            if let sealed = try? session.seal(reply, status: code) { try? socket.send(sealed, to: from) }
        }
        guard case .registration(let registration) = message.body else { return refuse("bad_request", .badRequest, "expected a registration") }
        let cert: Certificate
        do {
            cert = try Certificate(der: registration.certificate)
            try verifier.verify(cert, role: .node, at: now)
        } catch PKIError.expired {
            return refuse("expired", .expired, "certificate expired")
        } catch PKIError.revoked {
            return refuse("revoked", .revoked, "certificate revoked")
        } catch {
            return refuse("untrusted", .unauthorized, "certificate not accepted")
        }
        guard cert.x25519PublicKey == clientKey, let fqdn = cert.commonName, let name = try? FQDN(fqdn), name.value == fqdn,
            let v4 = cert.ipAddresses.first(where: { $0.isIPv4 }), let v6 = cert.ipAddresses.first(where: { !$0.isIPv4 })
        else { return refuse("key_mismatch", .unauthorized, "certificate does not match the handshake or names no virtual IPs") }
        var network = NodeNetwork(local: registration.localEndpoints)
        let view = FamilyView(mapped: from, mapping: registration.localEndpoints.contains(from) ? .none : .unknown)
        if from.address.isIPv4 { network.v4 = view } else { network.v6 = view }
        guard let token = try? SecureRandom.bytes(Datagram.probeTokenSize) else {
            return refuse("bad_request", .internalError, "internal error")
        }
        let ack = RegistrationAck(
            observed: from, keepAliveSeconds: UInt16(settings.keepAliveSeconds), probeToken: token,
            probeEndpoints: settings.probeListen.map { Endpoint(address: $0.address, port: $0.port) },
            signingCertificate: signingCertificateDER)
        let sealed: [UInt8]
        do { sealed = try session.seal(SignalingMessage(transactionID: message.transactionID, body: .registrationAck(ack))) } catch {
            metrics.drop("handshake_failed")
            return
        }
        let record = NodeRecord(
            nodeID: cert.serial ?? 0, name: name, group: cert.group, staticKey: clientKey.bytes, virtualIPv4: v4, virtualIPv6: v6,
            serial: cert.serial ?? 0, notAfter: cert.notAfter ?? now, network: network, signalingEndpoint: from, socketIndex: index,
            session: session.compact(), probeToken: token, now: now)
        let (replaced, full) = registry.register(record)
        guard !full else { return refuse("full", .unavailable, "registry full") }
        shared?.publish(DirectoryEntry(record))
        metrics.registration(replaced == nil ? "ok" : "replaced")
        metrics.registeredNodes.set(Int64(registry.count))
        logger.info("nms: \(replaced == nil ? "registered" : "re-registered") \(fqdn) (\(v4), \(v6)) from \(from)")
        try? socket.send(sealed, to: from)
    }

    /// A datagram in an established session: keepalive, direction request,
    /// confirmation or finalization.
    func signaling(_ bytes: [UInt8], header: Header, from: Endpoint, index: Int, now: Int64) {
        guard let (session, fqdn) = registry.withNode(sessionIndex: header.receiverIndex, { ($0.session, $0.fqdn) }) else {
            metrics.drop("unknown_session")
            return
        }
        let opened = bytes.withUnsafeBytes { b in Result { () throws(SessionError) in try session.decrypt(b, header: header) } }
        let message: SignalingMessage
        switch opened {
        case .success(let m): message = m
        case .failure(let e):
            metrics.drop(e.dropReason)
            return
        }
        // Authenticated: the node may have moved (roaming); its signaling goes where it is now.
        var moved: DirectoryEntry?
        let fresh =
            registry.withNode(sessionIndex: header.receiverIndex) { r -> Bool in
                guard r.session.accept(header.counter, now: now) else { return false }
                r.lastSeen = now
                if r.signalingEndpoint != from {
                    r.signalingEndpoint = from
                    r.socketIndex = index
                    let view = FamilyView(mapped: from, mapping: r.network.local.contains(from) ? .none : .unknown)
                    if from.address.isIPv4 { r.network.v4 = view } else { r.network.v6 = view }
                    if shared != nil { moved = DirectoryEntry(r) }
                }
                return true
            } ?? false
        guard fresh else {
            metrics.drop("replay")
            return
        }
        if let moved { shared?.publish(moved) }
        switch message.body {
        case .keepAlive:
            metrics.keepalives.increment()
            send(SignalingMessage(transactionID: message.transactionID, body: .keepAliveAck(observed: from)), to: fqdn)
        case .directionRequest(let target, let avoid):
            direction(to: target.value, from: fqdn, transaction: message.transactionID, avoidRelay: avoid, now: now)
        case .routeDirectionConfirmation(let c):
            confirmation(c, from: fqdn, now: now)
        case .authorizationRenewal(let peer, let authorization):
            renew(authorization, peer: peer.value, from: fqdn, transaction: message.transactionID, now: now)
        case .finalization:
            if registry.remove(named: fqdn, sessionIndex: header.receiverIndex) != nil {
                shared?.withdraw(fqdn)
                metrics.registeredNodes.set(Int64(registry.count))
                logger.info("nms: \(fqdn) signed off (finalization)")
            }
        default:
            metrics.drop("bad_request")
            send(SignalingMessage(transactionID: message.transactionID, body: .error(code: .badRequest, message: "unsupported request")), to: fqdn)
        }
    }

    /// Seconds after a registration during which its NAT probes count.
    static let probeWindowSeconds: Int64 = 10

    /// A NAT probe (on either port): records what that port saw; once both ports saw
    /// the node on a family, its mapping behaviour there is known and told to it. The
    /// token travels in clear, so each observation (family × port) is taken once, from
    /// the first probe, within ``probeWindowSeconds`` of the registration: a copy seen on
    /// the way arrives after the original and changes nothing.
    func probe(_ bytes: UnsafeRawBufferPointer, from: Endpoint, probePort: Bool, now: Int64) {
        metrics.probes.increment()
        guard let d = try? Datagram.decode(bytes), case .natProbe(let token) = d.body, let fqdn = registry.node(probeToken: token) else {
            metrics.drop("unknown_probe")
            return
        }
        let result = registry.withNode(named: fqdn) { r -> NATProbeResult? in
            let v4 = from.address.isIPv4
            guard now - r.registeredAt <= Self.probeWindowSeconds else { return nil }
            if probePort {
                guard (v4 ? r.probeSeen4 : r.probeSeen6) == nil else { return nil }
                if v4 { r.probeSeen4 = from } else { r.probeSeen6 = from }
            } else {
                guard (v4 ? r.signalingSeen4 : r.signalingSeen6) == nil else { return nil }
                if v4 { r.signalingSeen4 = from } else { r.signalingSeen6 = from }
            }
            let registered = r.signalingEndpoint.address.isIPv4 == v4
            guard let primary = registered ? r.signalingEndpoint : (v4 ? r.signalingSeen4 : r.signalingSeen6),
                let second = v4 ? r.probeSeen4 : r.probeSeen6
            else { return nil }
            let mapping: NATProbeResult.Mapping =
                r.network.local.contains(primary) ? .none : (primary == second ? .endpointIndependent : .endpointDependent)
            let view = FamilyView(mapped: primary, mapping: mapping)
            if v4 { r.network.v4 = view } else { r.network.v6 = view }
            return NATProbeResult(primary: primary, probe: second, mapping: mapping)
        }
        if let result = result ?? nil {
            if let shared, let r = registry.node(named: fqdn) { shared.publish(DirectoryEntry(r)) }
            logger.debug("nms: \(fqdn) maps \(result.primary) / \(result.probe.map(\.description) ?? "-"): \(result.mapping)")
            send(SignalingMessage(transactionID: 0, body: .natProbeResult(result)), to: fqdn)
        }
    }
}
