import CyphonicCore
import CyphonicDataPlane
import CyphonicPosix

// What the signaling module, the resolver and `status` ask of the tunnel control
// plane about one peer name: is a tunnel up, was one tried, end it.
extension TunnelManager {
    public func sessionConfirmed(_ session: DataSession, of peer: Peer) {
        signaling?.peerUp(peer.fqdn, addresses: peer.addresses)
    }

    /// The virtual IPs of `fqdn` when a tunnel with it is up (a current session).
    public func liveAddresses(of fqdn: String) -> [IPAddress]? {
        peers.withLock { peers.peersLocked.first { $0.fqdn == fqdn && $0.current?.isConfirmed == true && !$0.finalized }?.addresses }
    }

    /// Handshakes started with `fqdn` that got no session yet, and seconds since the last.
    public func attempts(_ fqdn: String) -> (sent: Int, lastSecondsAgo: Double?) {
        let now = monotonicSeconds()
        return sync.withLock { (unanswered[fqdn] ?? 0, lastAttempt[fqdn].map { now - $0 }) }
    }

    /// Sends to `fqdn` at `endpoint` from now on (a tunnel moving between the relay and a
    /// direct path); the peer follows our newest packets. False when there is no peer.
    @discardableResult
    func move(_ fqdn: String, to endpoint: SocketAddress) -> Bool {
        peers.withLock {
            guard let peer = peers.peersLocked.first(where: { $0.fqdn == fqdn }) else { return false }
            peers.relocateLocked(peer, to: endpoint)
            return true
        }
    }

    /// Seconds since the last authenticated packet from `fqdn` (any of its sessions).
    func secondsSinceReceived(from fqdn: String, now: Double) -> Double? { activity(of: fqdn, now: now)?.received }

    /// Seconds since the last packet from and to `fqdn` (any of its sessions).
    func activity(of fqdn: String, now: Double) -> (received: Double, sent: Double)? {
        peers.withLock {
            guard let p = peers.peersLocked.first(where: { $0.fqdn == fqdn }) else { return nil }
            let sessions = [p.current, p.next, p.previous].compactMap { $0 }
            guard let received = sessions.map(\.lastReceived).max(), let sent = sessions.map(\.lastSent).max() else { return nil }
            return (now - received, now - sent)
        }
    }

    /// An authenticated keepalive to `fqdn`, at `endpoint` when given (a direct path
    /// tried while the tunnel is relayed), else where it is now.
    func sendKeepalive(to fqdn: String, at endpoint: SocketAddress? = nil) {
        guard let peer = peers.withLock({ peers.peersLocked.first { $0.fqdn == fqdn && $0.current != nil } }) else { return }
        if let endpoint { pipeline?.sendKeepalive(to: peer, at: endpoint) } else { pipeline?.sendKeepalive(to: peer) }
    }

    /// Tells the data plane which relay the tunnel to `fqdn` may go through (its roaming
    /// then holds a fresh move off the relay against the relay's stragglers).
    func setRelay(_ fqdn: String, _ relay: Endpoint?) {
        peers.withLock {
            for p in peers.peersLocked where p.fqdn == fqdn && p.relayEndpoint != relay { peers.setRelayLocked(p, relay) }
        }
    }

    /// Where we send to `fqdn` now.
    func endpoint(of fqdn: String) -> SocketAddress? { peers.withLock { peers.peersLocked.first { $0.fqdn == fqdn }?.endpoint } }

    /// Our receive indices of the sessions with `fqdn` (the relay matches capsules by them).
    func sessionIndices(of fqdn: String) -> [UInt32] {
        peers.withLock {
            guard let p = peers.peersLocked.first(where: { $0.fqdn == fqdn }) else { return [] }
            return [p.current, p.next, p.previous].compactMap { $0?.localIndex }
        }
    }

    /// A configured peer's endpoint: an IP literal, or a DNS name resolved (both
    /// families, the first answer) at most every 30 s. Call outside the peer-table lock.
    func configuredEndpoint(_ text: String) -> Endpoint? {
        if let e = Endpoint(text) { return e }
        let now = monotonicSeconds()
        if let cached = sync.withLock({ resolvedNames[text] }), now - cached.at < 30 { return cached.endpoint }
        let resolved = try? HostPort.resolve(text).first
        if resolved == nil { logger.warning("tunnel: peer endpoint \(text) does not resolve") }
        sync.withLock { resolvedNames[text] = (resolved, now) }
        return resolved
    }

    /// Whether a session with `fqdn` exists (confirmed or not).
    func hasSession(_ fqdn: String) -> Bool { peers.withLock { peers.peersLocked.contains { $0.fqdn == fqdn && $0.current != nil } } }

    /// Whether a handshake with `fqdn` started less than `within` seconds ago is pending.
    func isInitiating(_ fqdn: String, within: Double = 0.4) -> Bool {
        let now = monotonicSeconds()
        return sync.withLock { initiations.values.contains { $0.fqdn == fqdn && now - $0.sentAt < within } }
    }

    /// Ends the tunnel with `fqdn` (both sides: the peer gets a Finalization); false
    /// when there is none.
    public func forget(_ fqdn: String) -> Bool {
        // Handshakes still in flight with it would bring it back: drop them too.
        sync.withLock {
            initiations = initiations.filter { $0.value.fqdn != fqdn }
            confirmations = confirmations.filter { $0.value.fqdn != fqdn }
        }
        // Nor does a packet for its addresses reopen it.
        let found = peers.withLock {
            peers.unparkLocked(fqdn: fqdn)
            return peers.peersLocked.filter { $0.fqdn == fqdn }
        }
        for peer in found {
            if peer.current != nil { pipeline?.sendFinalization(to: peer) }
            peers.withLock { peers.removeLocked(peer) }
        }
        signaling?.forget(fqdn)
        if !found.isEmpty { logger.info("tunnel: \(fqdn) forgotten on request; a new lookup sets it up again") }
        return !found.isEmpty
    }
}
