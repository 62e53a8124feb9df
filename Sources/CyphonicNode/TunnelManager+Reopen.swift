import CyphonicCore
import CyphonicDataPlane

// Tunnels reopened by traffic. A tunnel the node closed (the peer fell silent or said
// goodbye) leaves the peer's virtual IPs parked in the peer table under its name; a
// packet from this host for one of them is dropped (`no_route`) but marks the name as
// wanted, and the control thread asks the NMS for the tunnel again, as a lookup of the
// name would. So a connection by address (SSH, iperf3 to the virtual IP) survives a
// path that was down for longer than the silence limit.
extension TunnelManager {
    /// Seconds between two asks for one name.
    static let reopenIntervalSeconds = 5.0
    /// Seconds an ask may take (the NMS's direction, then the handshake).
    static let reopenDeadlineSeconds = 10.0

    /// Whether closed tunnels are parked for reopening (an NMS, and not turned off).
    var reopening: Bool { signaling != nil && config.reopenSeconds > 0 }

    /// Ends `peer`'s tunnel; parks its addresses when it may be reopened. Peer lock held.
    func close(_ peer: Peer, reopenable: Bool, now: Double) {
        if reopenable, reopening { peers.parkLocked(peer, now: now) } else { peers.removeLocked(peer) }
    }

    /// Asks again for the tunnels packets were sent to (control thread, each tick).
    func reopenWanted(now: Double) {
        peers.withLock { peers.expireParkedLocked(before: now - config.reopenSeconds) }
        let wanted = peers.takeWanted()
        guard let signaling, reopening, !wanted.isEmpty else { return }
        let due = sync.withLock { () -> [String] in
            reopenAsked = reopenAsked.filter { now - $0.value < Self.reopenIntervalSeconds }
            let due = wanted.filter { reopenAsked[$0] == nil }
            for fqdn in due { reopenAsked[fqdn] = now }
            return due
        }
        // Logged at most 5 lines a second (a flood of packets to many closed tunnels).
        let second = Int64(now)
        let log = reopenLog
        let summary: @Sendable (Int) -> Void = { [logger] n in logger.info("tunnel: \(n) lines about reopened tunnels not logged (rate limit)") }
        for fqdn in due where liveAddresses(of: fqdn) == nil {
            stats.reopens.add()
            if log.admit(now: second, summary: summary) {
                logger.info("tunnel: packets for \(fqdn)'s address; asking the NMS for the tunnel again")
            }
            signaling.requestTunnel(to: fqdn, deadline: now + Self.reopenDeadlineSeconds) { [stats, logger] result in
                switch result {
                case .up:
                    if log.admit(now: Int64(monotonicSeconds()), summary: summary) { logger.info("tunnel: \(fqdn) reopened") }
                case .notFound(let why), .failed(let why, _):
                    stats.reopensFailed.add()
                    if log.admit(now: Int64(monotonicSeconds()), summary: summary) {
                        logger.notice("tunnel: \(fqdn) not reopened: \(why) (asked again on its next packet, at most every 5 s)")
                    }
                }
            }
        }
    }

    /// Virtual IPs parked for reopening.
    public var parkedAddresses: Int { peers.withLock { peers.parkedCountLocked } }
}
