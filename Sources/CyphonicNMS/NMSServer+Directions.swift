import CyphonicCore
import CyphonicCrypto
import CyphonicSignaling
import CyphonicWire
import Dispatch

// DirectionRequest → route selection → RouteDirection to the responder →
// RouteDirectionConfirmation → RouteDirection to the initiator (DESIGN §4 step 3).
extension NMSServer {
    /// Answers `initiator`'s request for a tunnel to `target`: a refusal (error answer
    /// naming why), or a direction to the responder (once the batch signer signed its
    /// authorization), remembered until it confirms. `avoidRelay`: the initiator's relay
    /// for the path this one replaces stopped answering (reported, and not chosen again).
    func direction(to target: String, from initiator: String, transaction: UInt32, avoidRelay: Endpoint? = nil, now: Int64) {
        let refuse = refusal(initiator: initiator, target: target, transaction: transaction, now: now)
        guard target != initiator else { return refuse("self", .badRequest, "a node cannot direct a tunnel to itself", nil) }
        guard let initiatorRecord = registry.node(named: initiator) else { return }
        let i = DirectoryEntry(initiatorRecord)
        // The responder: registered here, or with another replica (the shared directory).
        if let local = registry.node(named: target) {
            return direct(i, DirectoryEntry(local), remote: nil, target: target, transaction: transaction, avoidRelay: avoidRelay, now: now)
        }
        guard let shared else { return refuse("not_found", .notFound, "\(target) is not registered", nil) }
        // The lookup runs on the directory's own threads, a bounded number waiting: a slow
        // or unreachable database never stalls keepalives and registrations.
        let queued = shared.perform { [self] in
            let found: (replica: String, entry: DirectoryEntry, alive: Bool)?
            do { found = try shared.lookup(target) } catch {
                logger.warning("nms: shared directory lookup of \(target) failed: \(error)")
                return refuse("directory_unavailable", .unavailable, "the shared directory cannot be reached; try again", nil)
            }
            guard let found, found.replica != shared.replica else {
                return refuse("not_found", .notFound, "\(target) is not registered", nil)
            }
            // Its replica stopped: it is registering with another (not "no such name",
            // which the initiator would remember for a while).
            guard found.alive else {
                return refuse(
                    "replica_down", .unavailable, "\(target)'s NMS replica stopped answering; it is moving to another, try again", nil)
            }
            direct(i, found.entry, remote: found.replica, target: target, transaction: transaction, avoidRelay: avoidRelay, now: now)
        }
        if !queued { refuse("directory_unavailable", .unavailable, "too many directory lookups in progress; try again", nil) }
    }

    /// Sends `initiator` the refusal of its request (counted, logged at a bounded rate).
    func refusal(
        initiator: String, target: String, transaction: UInt32, now: Int64
    )
        -> @Sendable (String, StatusCode, String, Route.Kind?) -> Void
    {
        { [self] reason, code, text, route in
            metrics.refusal(reason)
            if let route { metrics.direction(route, "refused") }
            if refusalLog.admit(now: now, summary: refusalsNotLogged) { logger.notice("nms: direction \(initiator) → \(target) refused: \(text)") }
            send(SignalingMessage(transactionID: transaction, body: .error(code: code, message: text)), to: initiator, status: code)
        }
    }

    /// The direction between `i` and `r` (registered with `remote`, or here): policy,
    /// route, relay, the authorization, then the responder's direction.
    func direct(
        _ i: DirectoryEntry, _ r: DirectoryEntry, remote: String?, target: String, transaction: UInt32, avoidRelay: Endpoint?, now: Int64
    ) {
        let initiator = i.fqdn
        let refusal = refusal(initiator: initiator, target: target, transaction: transaction, now: now)
        @Sendable func refuse(_ reason: String, _ code: StatusCode, _ text: String, route: Route.Kind? = nil) {
            refusal(reason, code, text, route)
        }
        // Group names stay private: the refusal says no more than that policy forbids it.
        guard settings.policy.allows(from: i.group, to: r.group) else {
            return refuse("forbidden", .forbidden, "policy does not allow a tunnel to \(target)")
        }
        let route = selectRoute(initiator: i.network, responder: r.network)
        if route.kind == .relay, settings.relays.isEmpty {
            return refuse("no_relay", .unavailable, "the route needs a relay (\(route.reason)) and none is configured", route: .relay)
        }
        switch directions.withLock({
            $0.reserve(initiator, transaction: transaction, max: settings.maxPendingDirections, perNode: settings.maxPendingDirectionsPerNode)
        }) {
        case .reserved: break
        case .duplicate: return  // a repeat of a request in progress: its answer is on the way
        case .full:
            metrics.drop("table_full")
            return refuse("bad_request", .unavailable, "too many directions in progress")
        }
        @Sendable func unreserve() {
            directions.withLock {
                $0.reserved -= 1
                $0.release(initiator, transaction: transaction)
            }
        }
        // Routes that may use the relay (relay; a punch that fails falls back to it) get
        // the relay's lifetime: the relay checks the authorization at every bind.
        let relayable = route.kind == .relay || (route.kind == .punched && !settings.relays.isEmpty)
        if let avoidRelay {
            relaySelector.report(avoidRelay, by: initiator, now: now)
            metrics.relayReports.increment()
        }
        let relay =
            relayable ? relaySelector.pick(between: i.signalingEndpoint, and: r.signalingEndpoint, avoid: avoidRelay, for: initiator, now: now) : nil
        let expires = UInt64(now) + UInt64(relayable ? settings.relayAuthorizationSeconds : settings.authorizationSeconds)
        guard let pathID = try? SecureRandom.u64() | 1 else {
            unreserve()
            return refuse("bad_request", .internalError, "internal error")
        }
        let unsigned = PathAuthorization(
            processCode: route.processCode, pathID: pathID, expires: expires, initiatorKey: i.staticKey, responderKey: r.staticKey,
            relayID: relay?.relayID ?? PathAuthorization.anyRelay)
        signer.submit(unsigned) { [self] result in
            guard case .success(let authorization) = result else {
                unreserve()
                logger.error("nms: cannot sign a route authorization: \(result)")
                return refuse("bad_request", .internalError, "internal error")
            }
            let toResponder = RouteDirection(
                pathID: pathID, processCode: route.processCode, role: .responder, peerNodeID: i.nodeID,
                peerFQDN: i.name, peerVirtualIPv4: i.virtualIPv4, peerVirtualIPv6: i.virtualIPv6,
                peerStaticKey: i.staticKey, peerEndpoints: Array(route.toResponder.prefix(WireLimits.maxEndpoints)),
                relay: relay?.endpoint(for: r.signalingEndpoint), expires: expires, authorization: authorization.bytes)
            let message = SignalingMessage(transactionID: UInt32(truncatingIfNeeded: pathID), body: .routeDirection(toResponder))
            let pendingCount = directions.withLock {
                $0.reserved -= 1
                $0.entries[pathID] = PendingDirection(
                    initiator: initiator, initiatorTransaction: transaction, responder: target, route: route,
                    authorization: authorization.bytes, relay: relay, responderEntry: r, responderReplica: remote, expires: expires,
                    created: monotonicMilliseconds(), resent: false,
                    responderMessage: message)
                return $0.count
            }
            metrics.pendingDirections.set(Int64(pendingCount))
            logger.debug(
                "nms: direction \(initiator) → \(target): \(route.kind.rawValue) (\(route.reason)), path \(pathID)\(relay.map { ", relay \($0)" } ?? "")"
            )
            sendToResponder(message, target, via: remote, pathID: pathID)
        }
    }

    /// The responder's answer: on ok the initiator gets its direction (with the
    /// responder's current local addresses for a same-site route); otherwise an error.
    func confirmation(_ c: RouteDirectionConfirmation, from responder: String, now: Int64) {
        guard
            let p = directions.withLock({ d -> PendingDirection? in
                guard d.entries[c.pathID]?.responder == responder, let p = d.entries.removeValue(forKey: c.pathID) else { return nil }
                d.release(p.initiator, transaction: p.initiatorTransaction)
                return p
            })
        else {
            // A direction another replica asked us to deliver: its confirmation goes back there.
            if forwardConfirmation(c, from: responder) { return }
            metrics.drop("stale_confirmation")
            return
        }
        metrics.pendingDirections.set(Int64(directions.withLock { $0.count }))
        guard c.status == .ok else {
            metrics.direction(p.route.kind, "refused")
            metrics.refusal("responder_refused")
            send(
                SignalingMessage(
                    transactionID: p.initiatorTransaction, body: .error(code: c.status, message: "\(responder) refused the tunnel")),
                to: p.initiator, status: c.status)
            return
        }
        let r = p.responderEntry
        guard let i = registry.node(named: p.initiator) else { return }
        var endpoints = p.route.toInitiator
        if p.route.kind == .local {
            let family = endpoints.first?.address.isIPv4 ?? true
            let fresh = c.localEndpoints.filter { $0.address.isIPv4 == family }
            if !fresh.isEmpty { endpoints = fresh }
        }
        let toInitiator = RouteDirection(
            pathID: c.pathID, processCode: p.route.processCode, role: .initiator, peerNodeID: r.nodeID,
            peerFQDN: r.name, peerVirtualIPv4: r.virtualIPv4, peerVirtualIPv6: r.virtualIPv6,
            peerStaticKey: r.staticKey, peerEndpoints: Array(endpoints.prefix(WireLimits.maxEndpoints)),
            relay: p.relay?.endpoint(for: i.signalingEndpoint), expires: p.expires,
            authorization: p.authorization)
        if send(SignalingMessage(transactionID: p.initiatorTransaction, body: .routeDirection(toInitiator)), to: p.initiator) {
            metrics.direction(p.route.kind, "ok")
        }
    }

    /// Directions whose responder has not answered: resent once at half the timeout,
    /// refused to the initiator at the timeout. At most every 100 ms.
    func sweepDirections() {
        let now = monotonicMilliseconds()
        guard now - lastDirectionSweep.load(ordering: .relaxed) >= 100 else { return }
        lastDirectionSweep.store(now, ordering: .relaxed)
        let timeout = Int64(settings.directionTimeoutMilliseconds)
        var resend: [(UInt64, PendingDirection)] = []
        let late = directions.withLock { d -> [PendingDirection] in
            var late: [PendingDirection] = []
            for (id, p) in d.entries {
                if now - p.created >= timeout {
                    late.append(p)
                    d.entries.removeValue(forKey: id)
                    d.release(p.initiator, transaction: p.initiatorTransaction)
                } else if !p.resent, now - p.created >= timeout / 2 {
                    d.entries[id]?.resent = true
                    resend.append((id, p))
                }
            }
            return late
        }
        for (id, p) in resend { sendToResponder(p.responderMessage, p.responder, via: p.responderReplica, pathID: id) }
        for p in late {
            metrics.direction(p.route.kind, "timeout")
            metrics.refusal("responder_timeout")
            send(
                SignalingMessage(
                    transactionID: p.initiatorTransaction,
                    body: .error(code: .unavailable, message: "\(p.responder) did not answer the direction")),
                to: p.initiator, status: .unavailable)
        }
        if !late.isEmpty || !resend.isEmpty { metrics.pendingDirections.set(Int64(directions.withLock { $0.count })) }
    }
}

/// Milliseconds on the monotonic clock.
func monotonicMilliseconds() -> Int64 { Int64(monotonicSeconds() * 1000) }
