import CyphonicCore
import CyphonicCrypto
import CyphonicSignaling
import CyphonicWire

// Path authorization renewal (docs/protocol.md §4, AuthorizationRenewal). The relay carries
// a path only while its NMS authorization is valid (24 h by default), so a node whose
// tunnel goes through the relay — or keeps its relay binding warm as a fallback — asks the
// NMS for a fresh authorization of the same path before it ends: the initiator three
// quarters into it, the responder (should the initiator's renewal not have come) seven
// eighths. The NMS sends the renewed authorization to both nodes; each takes it when it is
// the NMS's, for the same path, nodes, route and relay, and later; and rebinds at the relay
// with it at once, which moves the relay's end of the path on. The tunnel's session and
// route stay as they are.
extension NodeSignaling {
    /// Seconds between renewal requests for one path (one that was refused waits a minute).
    static let renewalRetrySeconds = 5.0

    /// When the path to the peer should be renewed (Unix seconds).
    static func renewalDue(_ p: PathInfo) -> UInt64 {
        let lifetime = p.authorization.expires &- min(p.authorization.expires, p.authorizedAt)
        // lifetime × 6/8 or 7/8, exact and without overflow whatever the NMS signed.
        let eighths: UInt64 = p.role == .initiator ? 6 : 7
        return p.authorizedAt &+ lifetime / 8 * eighths + lifetime % 8 * eighths / 8
    }

    /// Every tick: asks for the renewals that are due.
    func tickRenewals(now: Double) {
        let wall = UInt64(max(0, unixNowSeconds()))
        let due = state.withLock { s -> [(FQDN, UInt32, [UInt8])] in
            guard s.registration != nil else { return [] }
            var due: [(FQDN, UInt32, [UInt8])] = []
            for (fqdn, p) in s.paths
            where p.needsRelay && wall >= Self.renewalDue(p) && now >= p.nextRenewal {
                guard let name = try? FQDN(fqdn) else { continue }
                let tid = UInt32.random(in: 1...UInt32.max)
                s.paths[fqdn]!.renewalTransaction = tid
                s.paths[fqdn]!.nextRenewal = now + Self.renewalRetrySeconds
                s.counters.renewalsRequested += 1
                due.append((name, tid, p.authorization.bytes))
            }
            return due
        }
        for (name, tid, authorization) in due {
            logger.debug("signaling: asking the NMS to renew the authorization of the path to \(name.value)")
            sendToNMS(.authorizationRenewal(peer: name, authorization: authorization), transactionID: tid)
        }
    }

    /// A renewed authorization from the NMS (asked for by us or by the peer).
    func renewed(peer fqdn: String, _ bytes: [UInt8], now: Double) {
        let found = state.withLock { s -> (PathAuthorization, Ed25519PublicKey)? in
            guard let p = s.paths[fqdn], let signer = s.registration?.signer else { return nil }
            return (p.authorization, signer)
        }
        guard let (old, signer) = found, let fresh = try? PathAuthorization(bytes: bytes), fresh.pathID == old.pathID,
            fresh.processCode == old.processCode, fresh.initiatorKey == old.initiatorKey, fresh.responderKey == old.responderKey,
            fresh.relayID == old.relayID,
            (try? fresh.verify(signer: signer, pathID: old.pathID, between: old.initiatorKey, and: old.responderKey)) != nil
        else {
            state.withLock { $0.counters.authorizationsRefused += 1 }
            logger.warning("signaling: a renewed authorization for \(fqdn) does not match its path or the NMS signature; ignored")
            return
        }
        guard fresh.expires > old.expires else {
            // The NMS's answer, but no later than ours (one we have, or a shorter lifetime
            // configured since): an answer all the same; ask again in a minute.
            state.withLock { s in
                guard s.paths[fqdn]?.pathID == fresh.pathID else { return }
                s.paths[fqdn]!.renewalTransaction = nil
                s.paths[fqdn]!.nextRenewal = max(s.paths[fqdn]!.nextRenewal, now + 60)
            }
            logger.debug("signaling: a renewal for \(fqdn) that ends no later than the authorization we hold; kept ours")
            return
        }
        let wall = UInt64(max(0, unixNowSeconds()))
        let rebind = state.withLock { s -> Bool? in
            guard var p = s.paths[fqdn], p.authorization.pathID == fresh.pathID, fresh.expires > p.authorization.expires else { return nil }
            p.authorization = fresh
            p.authorizedAt = wall
            p.renewalTransaction = nil
            p.nextRenewal = 0
            s.paths[fqdn] = p
            s.counters.authorizationsRenewed += 1
            return p.needsRelay
        }
        guard let rebind else { return }
        logger.info("signaling: the authorization of the path to \(fqdn) (path \(fresh.pathID)) was renewed until \(fresh.expires)")
        if rebind { requestRelay(fqdn) }
    }

    /// An error answer to one of our renewal requests (false: not one); the path keeps
    /// its authorization until it ends, and asks again in a minute.
    func renewalRefused(transactionID: UInt32, message: String, now: Double) -> Bool {
        let fqdn = state.withLock { s -> String? in
            guard let (fqdn, _) = s.paths.first(where: { $0.value.renewalTransaction == transactionID }) else { return nil }
            s.paths[fqdn]!.renewalTransaction = nil
            s.paths[fqdn]!.nextRenewal = now + 60
            s.counters.renewalsRefused += 1
            return fqdn
        }
        guard let fqdn else { return false }
        logger.warning("signaling: the NMS refused to renew the authorization of the path to \(fqdn): \(message)")
        return true
    }
}
