import CyphonicCore
import CyphonicSignaling
import CyphonicWire

// AuthorizationRenewal (docs/protocol.md §4): a path's authorization bounds how long the
// relay carries it, so a node whose tunnel still needs the path asks for a fresh one
// before it ends. The NMS checks that it signed the old one (every replica holds the same
// signing key), that the requester is one of the two nodes it names and `peer` — here or
// with another replica — the other, that the path may use a relay configured now, that it
// is due (in the last half of its lifetime, ended no longer than a lifetime ago), and that
// policy still allows the tunnel; then it signs the same path, nodes, route and relay with
// a later expiry and sends it to both nodes (a repeated request gets the same one again,
// unsigned anew). Nothing else about the path changes: no new route, no new handshake.
// Rotating the NMS signing key ends renewals of the paths signed with the old one: their
// tunnels end with their authorization, and the next name lookup directs new ones.
extension NMSServer {
    func renew(_ bytes: [UInt8], peer: String, from requester: String, transaction: UInt32, now: Int64) {
        let refuse = renewalRefusal(requester, transaction: transaction)
        guard let old = try? PathAuthorization(bytes: bytes), let me = registry.node(named: requester),
            (try? old.verify(signer: identity.signingKey.publicKey, pathID: old.pathID, between: old.initiatorKey, and: old.responderKey, now: 0))
                != nil,
            old.initiatorKey == me.staticKey || old.responderKey == me.staticKey
        else { return refuse("invalid", .badRequest, "not a path authorization of this NMS that names you") }
        // Only paths that may use a relay end with their authorization; and only through a
        // relay configured now (one removed from the configuration carries no renewed path).
        guard old.processCode != .direct, !settings.relays.isEmpty,
            old.relayID == PathAuthorization.anyRelay || settings.relayHosts.contains(where: { $0.relayID == old.relayID })
        else { return refuse("no_relay", .badRequest, "path \(old.pathID) may not use a relay configured here; ask for a new direction") }
        // Due: in the last half of its lifetime (the nodes ask in the last quarter), and
        // ended no longer than a lifetime ago, so an old authorization cannot be replayed for ever.
        let lifetime = UInt64(settings.relayAuthorizationSeconds)
        let wall = UInt64(max(0, now))
        guard old.expires <= wall + lifetime / 2, old.expires + lifetime >= wall else {
            return refuse("not_due", .badRequest, "path \(old.pathID) is not due for renewal")
        }
        // Renewed already (the other node asked too, or this is a resend): the same answer.
        if let (expires, signed) = renewed.withLock({ $0[old.pathID] }), expires > old.expires, expires > wall + lifetime / 2,
            let peerName = try? FQDN(peer)
        {
            metrics.renewal("repeated")
            send(SignalingMessage(transactionID: transaction, body: .authorizationRenewal(peer: peerName, authorization: signed)), to: requester)
            return
        }
        let mine = DirectoryEntry(me)
        if let local = registry.node(named: peer) {
            return renew(old, mine, DirectoryEntry(local), remote: nil, transaction: transaction, now: now)
        }
        guard let shared else { return refuse("not_found", .notFound, "\(peer) is not registered") }
        let queued = shared.perform { [self] in
            guard let found = try? shared.lookup(peer), found.replica != shared.replica else {
                return refuse("not_found", .notFound, "\(peer) is not registered")
            }
            guard found.alive else { return refuse("unavailable", .unavailable, "\(peer)'s NMS replica stopped answering; try again") }
            renew(old, mine, found.entry, remote: found.replica, transaction: transaction, now: now)
        }
        if !queued { refuse("unavailable", .unavailable, "too many directory lookups in progress; try again") }
    }

    /// The renewal once both nodes are found (`peer` registered with `remote`, or here).
    private func renew(_ old: PathAuthorization, _ me: DirectoryEntry, _ peer: DirectoryEntry, remote: String?, transaction: UInt32, now: Int64) {
        let refuse = renewalRefusal(me.fqdn, transaction: transaction)
        let (i, r) = old.initiatorKey == me.staticKey ? (me, peer) : (peer, me)
        guard i.staticKey == old.initiatorKey, r.staticKey == old.responderKey else {
            return refuse("invalid", .badRequest, "\(peer.fqdn) is not the other node of path \(old.pathID)")
        }
        guard settings.policy.allows(from: i.group, to: r.group) else {
            return refuse("forbidden", .forbidden, "policy does not allow a tunnel to \(peer.fqdn) any more")
        }
        let fresh = PathAuthorization(
            processCode: old.processCode, pathID: old.pathID, expires: UInt64(max(0, now)) + UInt64(settings.relayAuthorizationSeconds),
            initiatorKey: old.initiatorKey, responderKey: old.responderKey, relayID: old.relayID)
        signer.submit(fresh) { [self] result in
            guard case .success(let signed) = result else {
                logger.error("nms: cannot sign a renewed route authorization: \(result)")
                return refuse("unavailable", .internalError, "internal error")
            }
            metrics.renewal("ok")
            renewed.withLock { r in
                // Bounded: renewals past their end go first once the table is large.
                if r.count >= settings.maxPendingDirections { r = r.filter { $0.value.expires > UInt64(max(0, now)) } }
                if r.count < settings.maxPendingDirections { r[old.pathID] = (fresh.expires, signed.bytes) }
            }
            logger.debug("nms: path \(old.pathID) between \(me.fqdn) and \(peer.fqdn) renewed until \(fresh.expires)")
            send(SignalingMessage(transactionID: transaction, body: .authorizationRenewal(peer: peer.name, authorization: signed.bytes)), to: me.fqdn)
            sendToResponder(
                SignalingMessage(transactionID: 0, body: .authorizationRenewal(peer: me.name, authorization: signed.bytes)), peer.fqdn,
                via: remote, pathID: old.pathID)
        }
    }

    /// Answers `requester`'s renewal with an error (counted by result).
    private func renewalRefusal(_ requester: String, transaction: UInt32) -> @Sendable (String, StatusCode, String) -> Void {
        { [self] result, code, text in
            metrics.renewal(result)
            if refusalLog.admit(now: unixNowSeconds(), summary: refusalsNotLogged) {
                logger.notice("nms: authorization renewal for \(requester) refused: \(text)")
            }
            send(SignalingMessage(transactionID: transaction, body: .error(code: code, message: text)), to: requester, status: code)
        }
    }
}
