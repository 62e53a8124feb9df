import CyphonicCore
import CyphonicCrypto
import CyphonicPKI
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

/// Our session with one relay (TRS): a Noise XX handshake from the tunnel socket (our
/// certificate in message 3), then a RelayRequest per path, repeated every refresh
/// interval (it keeps our end bound where our NAT maps us now, and tells the relay our
/// session indices); a relay that stops granting is connected to again.
struct RelayLink: @unchecked Sendable {
    var connecting: NodeSignaling.Connecting?
    var session: SignalingSession?
    var refreshSeconds = 5.0
    var lastRefresh = 0.0
    var lastHeard = 0.0
    /// A refresh waiting for its grant since then, and how often it was sent again.
    var awaitingSince: Double?
    var resent = 0
    var attempts = 0
    var nextAttempt = 0.0
}

extension NodeSignaling {
    func isRelay(_ endpoint: Endpoint) -> Bool { state.withLock { $0.relays[endpoint] != nil } }

    /// Paths that need their relay binding now: relayed ones, and direct ones that were
    /// bound (kept warm for a fast fallback).
    func pathsNeedingRelay(_ s: State, _ relay: Endpoint) -> [String] {
        s.paths.filter { $0.value.relay == relay && $0.value.needsRelay }.map(\.key)
    }

    /// Binds our end of the path to `fqdn` at its relay without moving traffic there
    /// (a punched tunnel's warm fallback).
    func keepRelayWarm(_ fqdn: String, now: Double) {
        guard
            let relay = state.withLock({ s -> Endpoint? in
                guard let r = s.paths[fqdn]?.relay else { return nil }
                s.paths[fqdn]!.keepRelay = true
                if s.relays[r] == nil { s.relays[r] = RelayLink() }
                return r
            })
        else { return }
        if state.withLock({ $0.relays[relay]?.session != nil }) { requestRelay(fqdn) } else { connectRelay(relay, now: now) }
    }

    /// Sends the tunnel to `fqdn` through its relay: binds our end (connecting to the
    /// relay first when needed), and moves an existing session's traffic there.
    func useRelay(_ fqdn: String, now: Double) {
        guard
            let relay = state.withLock({ s -> Endpoint? in
                guard let r = s.paths[fqdn]?.relay else { return nil }
                s.paths[fqdn]!.mode = .relayed
                s.paths[fqdn]!.keepRelay = true
                if s.relays[r] == nil { s.relays[r] = RelayLink() }
                return r
            })
        else { return }
        if manager.hasSession(fqdn) { manager.move(fqdn, to: SocketAddress(relay)) }
        let connected = state.withLock { $0.relays[relay]?.session != nil }
        if connected { requestRelay(fqdn) } else { connectRelay(relay, now: now) }
    }

    /// Starts a handshake with `relay` unless one is under way.
    func connectRelay(_ relay: Endpoint, now: Double, cookie: [UInt8]? = nil) {
        guard let handshake = try? ServiceClientHandshake(localStatic: key, verifier: manager.verifier, role: .trs) else { return }
        let go = state.withLock { s -> Bool in
            guard var link = s.relays[relay] else { return false }
            if cookie == nil, let c = link.connecting, now - c.sentAt < 1 { return false }
            link.connecting = Connecting(handshake: handshake, sentAt: now, completed: nil)
            link.attempts += 1
            link.nextAttempt = now + min(4, 0.5 * Double(link.attempts))
            s.relays[relay] = link
            return true
        }
        guard go, let first = try? handshake.initiation(cookie: cookie) else { return }
        send(first, to: relay)
        logger.debug("signaling: connecting to the relay at \(relay)")
    }

    /// One relay request (bind or refresh) for the path to `fqdn`.
    func requestRelay(_ fqdn: String) {
        let indices = manager.sessionIndices(of: fqdn)
        guard
            let (bytes, relay) = state.withLock({ s -> ([UInt8], Endpoint)? in
                guard let p = s.paths[fqdn], let r = p.relay, let session = s.relays[r]?.session,
                    let signing = s.registration?.signingCertificate
                else { return nil }
                s.counters.relayRequests += 1
                let request = RelayRequest(
                    pathID: p.pathID, authorization: p.authorization.bytes, signingCertificate: signing,
                    sessionIndices: Array(indices.prefix(RelayRequest.maxIndices)))
                guard
                    let sealed = try? session.seal(
                        SignalingMessage(transactionID: UInt32(truncatingIfNeeded: p.pathID), body: .relayRequest(request)))
                else { return nil }
                return (sealed, r)
            })
        else { return }
        send(bytes, to: relay)
    }

    /// A datagram from a relay we use: its handshake answer, cookie, or a sealed message.
    func relayDatagram(_ datagram: Datagram, raw: [UInt8], from relay: Endpoint, now: Double) {
        switch datagram.body {
        case .handshakeResponse:
            guard
                let handshake = state.withLock({ s -> ServiceClientHandshake? in
                    guard let c = s.relays[relay]?.connecting, c.handshake.localIndex == datagram.header.receiverIndex, c.completed == nil
                    else { return nil }
                    return c.handshake
                })
            else { return countBad() }
            do {
                let payload = try SignalingMessage(
                    transactionID: UInt32(truncatingIfNeeded: handshake.transactionID),
                    body: .registration(CyphonicWire.Registration(certificate: certificateDER, localEndpoints: []))
                ).encode()
                let (completion, session) = try handshake.complete(response: raw, payload: payload)
                state.withLock { s in
                    if s.relays[relay]?.connecting?.handshake.localIndex == handshake.localIndex { s.relays[relay]!.connecting!.completed = session }
                }
                send(completion, to: relay)
            } catch {
                state.withLock { $0.relays[relay]?.connecting = nil }
                logger.warning("signaling: the relay at \(relay) is not acceptable: \(error)")
            }
        case .cookieReply(let cookie):
            connectRelay(relay, now: now, cookie: cookie)
        case .signaling:
            relaySignaling(raw, receiverIndex: datagram.header.receiverIndex, from: relay, now: now)
        default:
            countBad()
        }
    }

    private func relaySignaling(_ raw: [UInt8], receiverIndex: UInt32, from relay: Endpoint, now: Double) {
        let opened = state.withLock { s -> (SignalingMessage, SignalingSession, Bool)? in
            guard let link = s.relays[relay] else { return nil }
            if let session = link.session, session.localIndex == receiverIndex, let m = try? session.open(raw) { return (m, session, false) }
            if let session = link.connecting?.completed, session.localIndex == receiverIndex, let m = try? session.open(raw) {
                return (m, session, true)
            }
            return nil
        }
        guard let (message, session, fresh) = opened else { return countBad() }
        state.withLock { s in
            s.relays[relay]?.lastHeard = now
            s.relays[relay]?.awaitingSince = nil
            s.relays[relay]?.resent = 0
        }
        switch message.body {
        case .registrationAck(let ack) where fresh:
            let paths = state.withLock { s -> [String] in
                s.relays[relay]!.session = session
                s.relays[relay]!.connecting = nil
                s.relays[relay]!.attempts = 0
                s.relays[relay]!.refreshSeconds = min(Double(max(1, ack.keepAliveSeconds)), manager.config.keepaliveSeconds)
                s.relays[relay]!.lastRefresh = now
                return pathsNeedingRelay(s, relay)
            }
            logger.info("signaling: connected to the relay at \(relay); it sees us at \(ack.observed)")
            for fqdn in paths { requestRelay(fqdn) }
        case .relayGrant(let g):
            granted(g, relay: relay, now: now)
        case .keepAliveAck:
            break
        case .error(let code, let text):
            let fqdn = state.withLock { s -> String? in
                s.counters.relayRefusals += 1
                guard let (fqdn, _) = s.paths.first(where: { UInt32(truncatingIfNeeded: $0.value.pathID) == message.transactionID }) else {
                    return nil
                }
                s.paths[fqdn]!.reason = "relay refused the path: \(text)"
                s.paths[fqdn]!.relayBound = false
                return fqdn
            }
            logger.warning("signaling: the relay at \(relay) refused \(fqdn ?? "a request") (\(code)): \(text)")
            if let fqdn, !manager.hasSession(fqdn) {
                finish(fqdn, .failed("the relay refused the tunnel to \(fqdn): \(text)", reason: "relay_refused"))
            }
        default:
            countBad()
        }
    }

    /// The relay bound our end of a path (again); when the peer's end is bound too, an
    /// initiator still waiting for its tunnel sends its handshake through the relay.
    private func granted(_ g: RelayGrant, relay: Endpoint, now: Double) {
        let start = state.withLock { s -> String? in
            guard let (fqdn, p) = s.paths.first(where: { $0.value.pathID == g.pathID }), p.relay == relay else { return nil }
            let first = !p.relayBound || p.peerBound != g.peerBound
            s.paths[fqdn]!.relayBound = true
            s.paths[fqdn]!.peerBound = g.peerBound
            guard first, g.peerBound, p.role == .initiator, p.mode == .relayed, s.lookups[fqdn]?.direction != nil else { return nil }
            s.lookups[fqdn]!.lastTry = now
            return fqdn
        }
        logger.debug(
            "signaling: relay grant for path \(g.pathID) (peer bound: \(g.peerBound))\(start.map { "; handshake with \($0) through it" } ?? "")")
        if let fqdn = start, !manager.hasSession(fqdn) { manager.initiate(fqdn: fqdn, endpoint: SocketAddress(relay)) }
    }

    /// Every tick: connect to relays that paths need, refresh bindings, notice a relay
    /// that stopped answering (restarted: its sessions are gone) and connect again, and
    /// drop relays no path needs.
    func tickRelays(now: Double) {
        var connect: [Endpoint] = []
        var refresh: [String] = []
        // A relayed tunnel we send on but hear nothing from may have lost its relay
        // (restarted): refresh now instead of at the next interval, which finds out.
        let relayed = state.withLock { s in s.paths.filter { $0.value.mode == .relayed && $0.value.relayBound }.map(\.key) }
        let silent = Set(
            relayed.filter { fqdn in manager.activity(of: fqdn, now: now).map { $0.received > 2 && $0.sent < 1 } ?? false }
                .compactMap { fqdn in state.withLock { $0.paths[fqdn]?.relay } })
        state.withLock { s in
            for (relay, link) in s.relays {
                let needed = pathsNeedingRelay(s, relay)
                let anyPath = s.paths.values.contains { $0.relay == relay && $0.mode != .direct }
                if needed.isEmpty && !anyPath {
                    s.relays.removeValue(forKey: relay)
                    continue
                }
                if link.session != nil {
                    if let since = link.awaitingSince, now - since >= Self.ackWaitSeconds {
                        if link.resent < 1 {
                            // A lost datagram is not a lost relay: once more.
                            s.relays[relay]!.resent += 1
                            s.relays[relay]!.awaitingSince = now
                            refresh += needed
                        } else {
                            // Refreshes unanswered: the relay lost us (restarted). Connect again.
                            s.relays[relay]!.session = nil
                            s.relays[relay]!.awaitingSince = nil
                            for p in needed { s.paths[p]!.relayBound = false }
                            logger.notice("signaling: the relay at \(relay) stopped answering; connecting again")
                            connect.append(relay)
                        }
                    } else if link.awaitingSince == nil, !needed.isEmpty,
                        now - link.lastRefresh >= (silent.contains(relay) ? Self.ackWaitSeconds : link.refreshSeconds)
                    {
                        s.relays[relay]!.lastRefresh = now
                        s.relays[relay]!.awaitingSince = now
                        refresh += needed
                    }
                } else if !needed.isEmpty, now >= link.nextAttempt, link.connecting.map({ now - $0.sentAt >= 1 }) ?? true {
                    connect.append(relay)
                }
            }
        }
        for relay in connect { connectRelay(relay, now: now) }
        for fqdn in refresh { requestRelay(fqdn) }
        // A relay that lost us and does not take us back after three attempts (about 3 s
        // of handshakes unanswered) is gone: the paths we initiated through it ask the NMS
        // for another relay (their responders get the new direction from the NMS).
        let stranded = state.withLock { s -> [(String, Endpoint)] in
            s.paths.compactMap { fqdn, p -> (String, Endpoint)? in
                guard p.role == .initiator, p.mode == .relayed, let r = p.relay, let link = s.relays[r], link.session == nil,
                    link.attempts >= Self.relayAttemptsBeforeReroute
                else { return nil }
                return (fqdn, r)
            }
        }
        for (fqdn, relay) in stranded { reroute(fqdn, avoiding: relay, now: now) }
    }

    /// Unanswered connection attempts after which a relay's paths are moved to another.
    static let relayAttemptsBeforeReroute = 3
}
