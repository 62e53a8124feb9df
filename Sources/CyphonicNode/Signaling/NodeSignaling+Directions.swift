import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

/// How a name lookup through the NMS ended.
public enum TunnelLookupResult: Sendable, Equatable {
    /// The tunnel is up; the peer's virtual IPs.
    case up([IPAddress])
    /// No node of that name is registered (NXDOMAIN).
    case notFound(String)
    /// Refused by policy, the NMS unreachable, or the set-up failed (SERVFAIL); the
    /// message, and a snake_case reason for counters (not_registered, forbidden,
    /// refused, timeout, relay_unavailable, bad_direction).
    case failed(String, reason: String)
}

extension NodeSignaling {
    /// Seconds a name the NMS does not know is answered NXDOMAIN without asking again.
    static let negativeSeconds = 5.0
    /// Seconds between handshake attempts to the next endpoint of a direction.
    static let retrySeconds = 0.4
    /// Seconds before an unanswered DirectionRequest is sent again.
    static let askAgainSeconds = 1.0
    /// Queries waiting for one name's set-up, at most.
    static let maxWaiters = 64

    /// Sets up (or finds) the tunnel to `fqdn` and calls `done` once, when it is up, was
    /// refused, or `deadline` (monotonic seconds) passed. A lookup already in flight for
    /// the name is joined, not repeated. Any thread.
    public func requestTunnel(to fqdn: String, deadline: Double, _ done: @escaping @Sendable (TunnelLookupResult) -> Void) {
        if let addresses = manager.liveAddresses(of: fqdn) { return done(.up(addresses)) }
        guard let name = try? FQDN(fqdn), name.value == fqdn else { return done(.notFound("\(fqdn) is not a valid name")) }
        let now = monotonicSeconds()
        enum Next {
            case ask(UInt32)
            case wait
            case answer(TunnelLookupResult)
        }
        let next = state.withLock { s -> Next in
            if let until = s.negative[fqdn], until > now { return .answer(.notFound("\(fqdn) is not registered")) }
            if s.lookups[fqdn] != nil {
                // Joined, with the set-up's own deadline (a stream of queries never
                // keeps it alive), and a bounded number of waiters.
                guard s.lookups[fqdn]!.waiters.count < Self.maxWaiters else {
                    return .answer(.failed("too many queries waiting for \(fqdn)", reason: "busy"))
                }
                s.lookups[fqdn]!.waiters.append(done)
                return .wait
            }
            guard s.registration != nil else { return .answer(.failed("not registered with the NMS (\(s.reason))", reason: "not_registered")) }
            let tid = UInt32.random(in: 1...UInt32.max)
            s.lookups[fqdn] = Lookup(transactionID: tid, waiters: [done], deadline: deadline, started: now, lastAsk: now)
            s.counters.directionsRequested += 1
            return .ask(tid)
        }
        switch next {
        case .answer(let r): done(r)
        case .wait: break
        case .ask(let tid):
            // A tunnel that came up between the first check and the insert answers at once.
            if let addresses = manager.liveAddresses(of: fqdn) { return finish(fqdn, .up(addresses), transactionID: tid) }
            if !sendToNMS(.directionRequest(target: name), transactionID: tid) {
                finish(fqdn, .failed("not registered with the NMS", reason: "not_registered"), transactionID: tid)
            }
        }
    }

    /// Completes the lookup of `fqdn` for every waiter (outside the lock).
    func finish(_ fqdn: String, _ result: TunnelLookupResult, transactionID: UInt32? = nil) {
        let waiters = state.withLock { s -> [@Sendable (TunnelLookupResult) -> Void] in
            guard let l = s.lookups[fqdn], transactionID == nil || l.transactionID == transactionID else { return [] }
            if case .notFound = result { s.negative[fqdn] = monotonicSeconds() + Self.negativeSeconds }
            if case .failed = result { s.counters.directionsRefused += 1 }
            return s.lookups.removeValue(forKey: fqdn)?.waiters ?? []
        }
        for w in waiters { w(result) }
    }

    /// The tunnel manager installed a session with `fqdn`: answer whoever waits for it.
    func peerUp(_ fqdn: String, addresses: [IPAddress]) {
        guard state.withLock({ $0.lookups[fqdn] != nil }) else { return }
        finish(fqdn, .up(addresses))
    }

    /// An error answer from the NMS for one of our requests.
    func refused(transactionID: UInt32, code: StatusCode, message: String) {
        // Not for a lookup that already has its direction (a late answer to a repeated request).
        guard
            let fqdn = state.withLock({ s in s.lookups.first { $0.value.transactionID == transactionID && $0.value.direction == nil }?.key })
        else { return }
        logger.notice("signaling: tunnel to \(fqdn) refused by the NMS: \(message)")
        finish(
            fqdn, code == .notFound ? .notFound(message) : .failed(message, reason: code == .forbidden ? "forbidden" : "refused"),
            transactionID: transactionID)
    }

    /// Checks a route direction's authorization: signed by the NMS, for this path,
    /// naming us and the peer, not expired.
    func authorize(_ d: RouteDirection) -> PathAuthorization? {
        let signer = state.withLock { $0.registration?.signer }
        guard let signer, let auth = try? PathAuthorization(bytes: d.authorization), auth.processCode == d.processCode,
            (try? auth.verify(signer: signer, pathID: d.pathID, between: localKey, and: d.peerStaticKey)) != nil
        else {
            state.withLock { $0.counters.authorizationsRefused += 1 }
            logger.warning("signaling: route direction for \(d.peerFQDN) (path \(d.pathID)) has no valid NMS authorization; refused")
            return nil
        }
        return auth
    }

    /// A route direction from the NMS, as initiator (our lookup) or responder.
    func direction(_ d: RouteDirection, transactionID: UInt32, now: Double) {
        let fqdn = d.peerFQDN.value
        guard let auth = authorize(d) else {
            if d.role == .responder {
                sendToNMS(
                    .routeDirectionConfirmation(RouteDirectionConfirmation(pathID: d.pathID, status: .unauthorized, localEndpoints: [])),
                    transactionID: transactionID)
            } else {
                finish(
                    fqdn, .failed("the NMS direction for \(fqdn) carried no valid authorization", reason: "bad_direction"),
                    transactionID: transactionID)
            }
            return
        }
        // A second direction for a lookup that has one (its request was repeated) changes nothing.
        if d.role == .initiator, state.withLock({ $0.lookups[fqdn]?.direction != nil }) { return }
        let kind = routeKind(d)
        let relayed = d.processCode == .relay
        let punch = !relayed && (d.processCode == .natTraversal || d.role == .responder)
        if relayed, d.relay == nil {
            if d.role == .responder {
                sendToNMS(
                    .routeDirectionConfirmation(RouteDirectionConfirmation(pathID: d.pathID, status: .unavailable, localEndpoints: [])),
                    transactionID: transactionID)
            } else {
                finish(
                    fqdn, .failed("the NMS routes \(fqdn) through a relay but named none", reason: "relay_unavailable"), transactionID: transactionID)
            }
            return
        }
        state.withLock { s in
            var path = PathInfo(
                pathID: d.pathID, kind: kind, role: d.role, peerNodeID: d.peerNodeID, authorization: auth, punchKey: auth,
                endpoints: d.peerEndpoints,
                punchesLeft: punch ? 4 : 0, lastPunchAnswer: 0)
            path.relay = d.relay
            path.reason = routeReason(d, kind: kind, s)
            if relayed {
                path.mode = .relayed
            } else if d.processCode == .natTraversal, d.relay != nil {
                path.mode = .punching(deadline: now + manager.config.punchTimeoutSeconds)
            }
            s.paths[fqdn] = path
        }
        if relayed {
            useRelay(fqdn, now: now)
            switch d.role {
            case .responder:
                confirm(d, transactionID: transactionID)
            case .initiator:
                // The handshake goes through the relay once it bound both ends (its grant says so).
                var viaRelay = d
                viaRelay.peerEndpoints = [d.relay!]
                // A reroute of a live tunnel: the session moved to the new relay above.
                if adopt(viaRelay, for: fqdn, transactionID: transactionID, now: now), let addresses = manager.liveAddresses(of: fqdn) {
                    finish(fqdn, .up(addresses), transactionID: transactionID)
                }
            }
            logger.info("signaling: tunnel with \(fqdn) through the relay at \(d.relay!) (path \(d.pathID))")
            return
        }
        if punch { self.punch(fqdn) }
        switch d.role {
        case .responder:
            // Accept the initiator's handshake, open our NAT towards it, confirm.
            confirm(d, transactionID: transactionID)
            logger.debug("signaling: \(fqdn) will connect to us (\(kind), path \(d.pathID))")
        case .initiator:
            let ours = adopt(d, for: fqdn, transactionID: transactionID, now: now)
            guard ours, let first = d.peerEndpoints.first else {
                if ours { finish(fqdn, .failed("the NMS gave no address for \(fqdn)", reason: "bad_direction"), transactionID: transactionID) }
                return
            }
            logger.debug("signaling: tunnel to \(fqdn): \(kind) via \(first), path \(d.pathID)")
            manager.initiate(fqdn: fqdn, endpoint: SocketAddress(first))
        }
    }

    /// Asks the NMS for a new path to `fqdn` through another relay than `relay`, which
    /// stopped answering (we initiated the path; its responder waits for the new
    /// direction). The live session moves to the new relay when it comes. At most every
    /// ``rerouteSeconds`` per peer, and not while a lookup for it is in flight.
    func reroute(_ fqdn: String, avoiding relay: Endpoint, now: Double) {
        guard let name = try? FQDN(fqdn) else { return }
        let tid = state.withLock { s -> UInt32? in
            guard s.registration != nil, s.lookups[fqdn] == nil, let p = s.paths[fqdn], p.relay == relay,
                now - p.lastReroute >= Self.rerouteSeconds
            else { return nil }
            s.paths[fqdn]!.lastReroute = now
            let tid = UInt32.random(in: 1...UInt32.max)
            var lookup = Lookup(transactionID: tid, waiters: [], deadline: now + 10, started: now, lastAsk: now)
            lookup.avoidRelay = relay
            s.lookups[fqdn] = lookup
            s.counters.relayReroutes += 1
            return tid
        }
        guard let tid else { return }
        logger.notice("signaling: the relay at \(relay) is not answering; asking the NMS for another relay for \(fqdn)")
        sendToNMS(.directionRequest(target: name, avoidRelay: relay), transactionID: tid)
    }

    /// Seconds between reroute requests for one peer.
    static let rerouteSeconds = 5.0

    /// Responder: confirms a direction to the NMS with our current local endpoints.
    func confirm(_ d: RouteDirection, transactionID: UInt32) {
        let locals = state.withLock { s -> [Endpoint] in
            s.counters.directionsAsResponder += 1
            return s.localEndpoints
        }
        sendToNMS(
            .routeDirectionConfirmation(RouteDirectionConfirmation(pathID: d.pathID, status: .ok, localEndpoints: locals)),
            transactionID: transactionID)
    }

    /// Initiator: the direction answers our lookup of `fqdn` (false: not ours any more).
    func adopt(_ d: RouteDirection, for fqdn: String, transactionID: UInt32, now: Double) -> Bool {
        state.withLock { s -> Bool in
            guard s.lookups[fqdn]?.transactionID == transactionID else { return false }
            s.lookups[fqdn]!.direction = d
            s.lookups[fqdn]!.lastTry = now
            s.counters.directionsAnswered += 1
            return true
        }
    }

    /// How status names a directed tunnel: "local" when a NATed node was sent to a LAN
    /// address, else by process code.
    func routeKind(_ d: RouteDirection) -> String {
        switch d.processCode {
        case .natTraversal: return "punched"
        case .relay: return "relay"
        case .direct:
            let (natted, locals) = state.withLock { s in
                (s.mapping4.map { $0 != .none } ?? false || s.mapping6.map { $0 != .none } ?? false, s.localEndpoints)
            }
            let lan = d.peerEndpoints.first.map { e in locals.contains { $0.address.sharesSubnet(with: e.address) } } ?? false
            return natted && lan ? "local" : "direct"
        }
    }

    /// Sends one authenticated hole-punching probe to each endpoint of the path to `fqdn`.
    func punch(_ fqdn: String) {
        guard
            let (path, left) = state.withLock({ s -> (PathInfo, Int)? in
                guard let p = s.paths[fqdn], p.punchesLeft > 0 else { return nil }
                s.paths[fqdn]!.punchesLeft -= 1
                s.counters.punchesSent += UInt64(p.endpoints.count)
                return (p, p.punchesLeft)
            })
        else { return }
        _ = left
        let probe = HolePunch(pathID: path.pathID, senderNodeID: nodeID, authenticator: path.punchKey.punchAuthenticator(senderNodeID: nodeID))
        guard let bytes = try? Datagram(.holePunching(probe)).encode() else { return }
        for e in path.endpoints { send(bytes, to: e) }
    }

    /// A peer's punch: authenticated by the path's authorization, and only while that is
    /// valid; answered once a second (so both NATs open), and an initiator still waiting
    /// retries its handshake once to where the punch came from (the peer's real mapping).
    func punched(_ p: HolePunch, probe: Bool, from: SocketAddress, now: Double) {
        let wall = UInt64(max(0, unixNowSeconds()))
        let found = state.withLock { s -> (String, PathInfo, Bool)? in
            guard let (fqdn, path) = s.paths.first(where: { $0.value.pathID == p.pathID }), p.senderNodeID == path.peerNodeID,
                path.authorization.expires >= wall,
                p.authenticator == path.punchKey.punchAuthenticator(senderNodeID: p.senderNodeID)
            else { return nil }
            s.counters.punchesReceived += 1
            // A direct-path probe is answered every time (at most twice a second): the answer
            // is how the prober knows the direct path works both ways.
            let answer = now - path.lastPunchAnswer >= (probe ? 0.5 : 1)
            if answer { s.paths[fqdn]!.lastPunchAnswer = now }
            return (fqdn, path, answer)
        }
        guard let (fqdn, path, answer) = found else { return countBad() }
        if answer {
            let probe = HolePunch(
                pathID: path.pathID, senderNodeID: nodeID, authenticator: path.punchKey.punchAuthenticator(senderNodeID: nodeID))
            if let bytes = try? Datagram(.holePunching(probe)).encode() { manager.send(bytes, to: from) }
        }
        // The punch came from where the peer's NAT really maps it (a NAT may give each
        // destination its own port): the public side answers to the source it sees
        // (DESIGN §5). Once, at once, and retries go there from now on.
        guard path.role == .initiator, let seen = from.endpoint else { return }
        let waiting = state.withLock { s -> Bool in
            guard let l = s.lookups[fqdn], let d = l.direction, !l.retargeted else { return false }
            s.lookups[fqdn]!.retargeted = true
            if !d.peerEndpoints.contains(seen) { s.lookups[fqdn]!.direction!.peerEndpoints.insert(seen, at: 0) }
            s.lookups[fqdn]!.endpointIndex = 0
            s.lookups[fqdn]!.lastTry = now
            return true
        }
        if waiting, !manager.hasSession(fqdn) { manager.initiate(fqdn: fqdn, endpoint: from) }
    }

    /// Lookups past their deadline fail; directed ones without a session yet try the
    /// next endpoint; pending punches go out.
    func tickLookups(now: Double) {
        var expired: [(String, UInt32)] = []
        var retry: [(String, Endpoint)] = []
        var punches: [String] = []
        var askAgain: [(String, UInt32, Endpoint?)] = []
        state.withLock { s in
            for (fqdn, l) in s.lookups {
                if now > l.deadline {
                    expired.append((fqdn, l.transactionID))
                } else if l.direction == nil, now - l.lastAsk >= Self.askAgainSeconds {
                    // The request or its answer was lost: ask again, same transaction.
                    s.lookups[fqdn]!.lastAsk = now
                    askAgain.append((fqdn, l.transactionID, l.avoidRelay))
                } else if let d = l.direction, now - l.lastTry >= Self.retrySeconds, !d.peerEndpoints.isEmpty,
                    s.paths[fqdn].map({ $0.mode != .relayed || $0.peerBound }) ?? true
                {
                    let next = (l.endpointIndex + 1) % d.peerEndpoints.count
                    s.lookups[fqdn]!.endpointIndex = next
                    s.lookups[fqdn]!.lastTry = now
                    retry.append((fqdn, d.peerEndpoints[next]))
                }
            }
            // A lookup unanswered for 2 s while the NMS has been silent as long: ask for a
            // keepalive ack now (a dead NMS is then noticed 4.5 s later, not up to 9.5 s).
            if let r = s.registration, !r.awaitingAck, now - r.lastAck >= 2,
                s.lookups.values.contains(where: { $0.direction == nil && now - $0.started >= 2 })
            {
                s.registration!.lastKeepAliveSent = now - r.keepAliveSeconds
            }
            for (fqdn, p) in s.paths where p.punchesLeft > 0 { punches.append(fqdn) }
            s.negative = s.negative.filter { $0.value > now }
        }
        for (fqdn, tid) in expired { finish(fqdn, .failed("tunnel set-up to \(fqdn) timed out", reason: "timeout"), transactionID: tid) }
        for (fqdn, tid, avoid) in askAgain {
            if let name = try? FQDN(fqdn) { sendToNMS(.directionRequest(target: name, avoidRelay: avoid), transactionID: tid) }
        }
        for (fqdn, e) in retry where !manager.hasSession(fqdn) && !manager.isInitiating(fqdn) {
            manager.initiate(fqdn: fqdn, endpoint: SocketAddress(e))
        }
        for fqdn in punches { punch(fqdn) }
    }

    /// Whether the NMS directed a tunnel with `name` to us and its authorization, still
    /// valid, names `key` (the peer's proven static key).
    func authorizes(name: String, key: [UInt8]) -> Bool {
        let now = UInt64(max(0, unixNowSeconds()))
        return state.withLock { s in
            guard let p = s.paths[name], p.authorization.expires >= now else { return false }
            return p.authorization.initiatorKey == key || p.authorization.responderKey == key
        }
    }

    /// How the tunnel to `fqdn` was made, for status: its route kind and path id.
    func path(of fqdn: String) -> (kind: String, pathID: UInt64, expires: UInt64)? {
        state.withLock { s in s.paths[fqdn].map { ($0.kind, $0.pathID, $0.authorization.expires) } }
    }

    /// Forgets the path to `fqdn` (its tunnel was torn down).
    func forget(_ fqdn: String) { state.withLock { _ = $0.paths.removeValue(forKey: fqdn) } }
}
