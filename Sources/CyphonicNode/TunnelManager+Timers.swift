import CyphonicCore
import CyphonicDataPlane
import CyphonicPKI
import CyphonicPosix

// The control thread's housekeeping (every ~250 ms): revocation lists, certificate
// expiry, unconfirmed sessions, session lifetimes, rekeys, keepalives, reconnects.
// Log lines are collected under the locks and written after them.
extension TunnelManager {
    public func tick() {
        let now = monotonicSeconds()
        var notes: [String] = []
        applyRevocations(&notes)
        sync.withLock {
            // An initiation unanswered for 5 s is given up (and logged: the first, then every tenth).
            for (_, i) in initiations where now - i.sentAt >= 5 {
                let n = unanswered[i.fqdn] ?? 0
                if n == 1 || (n > 0 && n % 10 == 0) {
                    notes.append(
                        "tunnel: no answer from \(i.fqdn) at \(i.endpoint.endpoint.map(\.description) ?? "?") (\(n) handshake initiation\(n == 1 ? "" : "s") so far)"
                    )
                }
            }
            initiations = initiations.filter { now - $0.value.sentAt < 5 }
            responses = responses.filter { now - $0.value.createdAt < 10 }
            finished = finished.filter { now - $0.value.at < 10 }
        }
        confirmPending(now, &notes)
        var toInitiate: [(fqdn: String, endpoint: SocketAddress)] = []
        var keepalive: [Peer] = []
        var silent: [String] = []
        let wallClock = unixNow()
        // Configured peers' endpoints, names resolved here, outside the locks.
        let configuredAt = Dictionary(config.peers.map { ($0.fqdn, configuredEndpoint($0.endpoint)) }, uniquingKeysWith: { a, _ in a })
        peers.withLock {
            for peer in peers.peersLocked {
                if let notAfter = peer.notAfter, notAfter < wallClock {
                    peers.removeLocked(peer)
                    stats.peersRevoked.add()
                    notes.append("tunnel: \(peer.fqdn)'s certificate expired; its sessions ended")
                    continue
                }
                let configured = config.peers.first { $0.fqdn == peer.fqdn }
                if peer.finalized {
                    close(peer, reopenable: configured == nil, now: now)
                    notes.append("tunnel: \(peer.fqdn) said goodbye (finalization); its sessions ended")
                    continue
                }
                for s in [peer.current, peer.previous, peer.next].compactMap({ $0 }) {
                    let expired = now - s.created > DataSession.rejectAfterSeconds
                    if expired || now - s.lastReceived > config.idleTimeoutSeconds {
                        peers.dropLocked(s, of: peer)
                        notes.append("tunnel: session with \(peer.fqdn) ended (\(expired ? "expired" : "idle"))")
                    }
                }
                // A peer with no session left is forgotten after the idle timeout (its
                // next handshake brings it back with whatever its certificate says then).
                if peer.current == nil, peer.next == nil, peer.previous == nil,
                    now - peer.lastHandshake > config.idleTimeoutSeconds
                {
                    close(peer, reopenable: configured == nil, now: now)
                    notes.append("tunnel: forgot \(peer.fqdn) (no session)")
                    continue
                }
                guard let s = peer.current else { continue }
                // A peer that is not configured (directed by the NMS, or that connected to
                // us) and fell silent for two keepalives is gone: end its tunnel, so the
                // next name lookup, or packet for its address, sets up a new one.
                if configured == nil, now - s.lastReceived > 2 * config.keepaliveSeconds + 5 {
                    close(peer, reopenable: true, now: now)
                    silent.append(peer.fqdn)
                    notes.append(
                        "tunnel: \(peer.fqdn) silent for \(Int(now - s.lastReceived)) s; tunnel closed (a lookup of its name\(reopening ? " or a packet for its address" : "") sets it up again)"
                    )
                    continue
                }
                // Message-count limit: whichever side sends that much starts the rekey.
                // Time limit, for every peer (configured, directed by the NMS, or that
                // connected to us; a session is refused at 180 s, so a tunnel that did not
                // rekey would end then): the side that initiated the session starts it after
                // rekeyAfterSeconds; the other side halfway from then to the session's end,
                // should the initiator not have (after crossed handshakes both sides can hold
                // the session as responders).
                let countDue = s.messagesSent > DataSession.rekeyAfterMessages && peer.next == nil
                let rekeyAt = s.isInitiator ? config.rekeyAfterSeconds : (config.rekeyAfterSeconds + DataSession.rejectAfterSeconds) / 2
                let timeDue = now - s.created > rekeyAt && peer.next == nil
                if countDue || timeDue, let endpoint = configured.flatMap({ configuredAt[$0.fqdn] ?? nil }).map(SocketAddress.init) ?? peer.endpoint {
                    toInitiate.append((peer.fqdn, endpoint))
                }
                // Both sides send at least a keepalive every keepaliveSeconds: silence for
                // longer means the peer lost the session (restart, new address): reconnect.
                if let configured, let e = configuredAt[configured.fqdn] ?? nil, now - s.lastReceived > config.keepaliveSeconds + 5 {
                    toInitiate.append((peer.fqdn, SocketAddress(e)))
                }
                if now - s.lastSent > config.keepaliveSeconds { keepalive.append(peer) }
            }
        }
        for note in notes { logger.info("\(note)") }
        // Configured peers without a session: (re)connect, at most every 5 s.
        for target in config.peers {
            let connected = peers.withLock { peers.peersLocked.contains { $0.fqdn == target.fqdn && $0.current != nil } }
            if !connected, let e = configuredAt[target.fqdn] ?? nil { toInitiate.append((target.fqdn, SocketAddress(e))) }
        }
        var started = Set<String>()
        for target in toInitiate where !started.contains(target.fqdn) {
            let due = sync.withLock { now - (lastAttempt[target.fqdn] ?? 0) >= min(5, config.rekeyAfterSeconds) }
            let pending = sync.withLock { initiations.values.contains { $0.fqdn == target.fqdn } }
            if due && !pending {
                started.insert(target.fqdn)
                initiate(fqdn: target.fqdn, endpoint: target.endpoint)
            }
        }
        for peer in keepalive { pipeline?.sendKeepalive(to: peer) }
        for fqdn in silent { signaling?.forget(fqdn) }
        reopenWanted(now: now)
        signaling?.tick()
    }

    /// Applies a revocation list the refresher fetched: from now on handshakes with a
    /// listed certificate are refused, and peers that proved one lose their sessions.
    private func applyRevocations(_ notes: inout [String]) {
        guard
            let crl = sync.withLock({ () -> RevocationList? in
                defer { pendingRevocations = nil }
                return pendingRevocations
            })
        else { return }
        let current = verifier
        if let have = current.revocations?.number, have >= crl.number { return }
        guard let updated = try? CertificateVerifier(trustAnchor: current.trustAnchor, revocations: crl) else {
            notes.append("tunnel: revocation list #\(crl.number) is not signed by our CA; ignored")
            return
        }
        setVerifier(updated)
        var removed: [String] = []
        peers.withLock {
            for peer in peers.peersLocked {
                if let serial = peer.serial, crl.contains(serial) {
                    peers.removeLocked(peer)
                    removed.append(peer.fqdn)
                }
            }
        }
        stats.peersRevoked.add(UInt64(removed.count))
        notes.append(
            "tunnel: revocation list #\(crl.number) in force (\(crl.serials.count) serials)"
                + (removed.isEmpty ? "" : "; sessions ended for revoked \(removed.joined(separator: ", "))"))
    }

    /// Initiator: resends message 3 of sessions the responder has not confirmed within
    /// a second (up to 5 times); a rekey that never gets confirmed is abandoned while
    /// the old session goes on carrying traffic.
    private func confirmPending(_ now: Double, _ notes: inout [String]) {
        var resend: [([UInt8], SocketAddress)] = []
        var abandoned: [Confirmation] = []
        sync.withLock {
            for (index, c) in confirmations {
                if c.session.isConfirmed {
                    confirmations.removeValue(forKey: index)
                } else if now - c.sentAt >= 1 {
                    if c.tries >= 5 {
                        confirmations.removeValue(forKey: index)
                        abandoned.append(c)
                    } else {
                        confirmations[index]?.tries += 1
                        confirmations[index]?.sentAt = now
                        resend.append((c.datagram, c.endpoint))
                    }
                }
            }
        }
        for (datagram, endpoint) in resend {
            stats.message3Retransmits.add()
            send(datagram, to: endpoint)
        }
        for c in abandoned {
            peers.withLock {
                // Confirmed (and promoted) meanwhile by a data thread: keep it.
                if !c.session.isConfirmed, let peer = peers.sessionOwnerLocked(index: c.session.localIndex) {
                    peers.dropLocked(c.session, of: peer)
                }
            }
            notes.append("tunnel: \(c.fqdn) never confirmed the new session; dropped it")
        }
    }
}
