import CyphonicCore
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

// Which way a directed tunnel goes after set-up (DESIGN §4 step 5, §5): a punch that
// missed its deadline goes through the relay; a relayed tunnel keeps trying the direct
// path (HolePunchingForOptimization opens the NATs, an authenticated keepalive follows)
// and moves there when the peer's authenticated packets arrive from it; a direct path
// with a relay behind it that falls silent falls back to the relay.
//
// Only authenticated tunnel packets move a tunnel: a punch proves nothing about who
// sent it (its authenticator is fixed for the path and the relay has seen the key), so
// punches only open NAT bindings. The moves themselves are the data plane's roaming,
// which follows the peer's newest authenticated packets.
extension NodeSignaling {
    /// Seconds between keepalives on a direct path that has the relay as fallback, and
    /// seconds without an authenticated packet after which it falls back.
    static let directProbeSeconds = 1.0
    static let directDeadSeconds = 3.0
    /// Seconds a relayed or punching path may go without a tunnel before it is dropped.
    static let pathSetupSeconds = 30.0

    /// Why a directed tunnel goes the way it goes, for status.
    func routeReason(_ d: RouteDirection, kind: String, _ s: State) -> String {
        let retry = "retrying direct every \(Int(manager.config.directRetrySeconds)) s"
        switch d.processCode {
        case .relay:
            if d.peerEndpoints.isEmpty { return "relayed: no IP family in common with the peer" }
            let ours = s.mapping4 == .endpointDependent || s.mapping6 == .endpointDependent
            return "relayed: \(ours ? "we are" : "peer") behind an endpoint-dependent (symmetric) NAT, \(retry)"
        case .natTraversal:
            return "punched: both sides behind endpoint-independent NATs"
        case .direct:
            if kind == "local" { return "local: same site, over the LAN" }
            return d.role == .responder ? "direct: the NMS directed the peer to us" : "direct: the peer is reachable at its mapped address"
        }
    }

    /// Every tick: punch deadlines, direct-path attempts of relayed tunnels, liveness of
    /// direct paths that have the relay as fallback, paths that never got a tunnel.
    func tickPaths(now: Double) {
        enum Step {
            case relay(String, because: String)
            case tryDirect(String, [Endpoint], PathInfo)
            case keepalive(String)
            case standby(String)
            case drop(String)
        }
        let retry = manager.config.directRetrySeconds
        let timeout = manager.config.punchTimeoutSeconds
        let paths = state.withLock { s in s.paths.filter { $0.value.mode != .direct }.map { ($0.key, $0.value) } }
        var steps: [Step] = []
        for (fqdn, p) in paths {
            let up = manager.hasSession(fqdn)
            if up, let relay = p.relay { manager.setRelay(fqdn, relay) }
            let at = manager.endpoint(of: fqdn)?.endpoint
            if !up, now - p.created > Self.pathSetupSeconds {
                steps.append(.drop(fqdn))
                continue
            }
            switch p.mode {
            case .direct:
                break
            case .punching(let deadline):
                if up {
                    state.withLock { s in
                        s.paths[fqdn]?.mode = .directWithFallback
                        s.paths[fqdn]?.directSince = now
                    }
                    steps.append(.standby(fqdn))
                } else if now >= deadline {
                    steps.append(.relay(fqdn, because: "punch timed out after \(formatSeconds(timeout)), retrying direct every \(Int(retry)) s"))
                }
            case .relayed:
                if up, let relay = p.relay, let at, at != relay {
                    // The peer's authenticated packets came straight from it: roaming moved us.
                    state.withLock { s in
                        s.paths[fqdn]?.mode = .directWithFallback
                        s.paths[fqdn]?.directSince = now
                        s.paths[fqdn]?.kind = "punched"
                        s.paths[fqdn]?.reason = "direct: moved off the relay (authenticated packets arrived from the peer directly)"
                        s.counters.switchesToDirect += 1
                    }
                    logger.info("signaling: tunnel with \(fqdn) moved off the relay, direct to \(at)")
                } else if up, !p.endpoints.isEmpty, now - p.lastDirectProbe >= retry {
                    state.withLock { $0.paths[fqdn]?.lastDirectProbe = now }
                    steps.append(.tryDirect(fqdn, p.endpoints, p))
                }
            case .directWithFallback:
                guard up else { continue }
                if let relay = p.relay, at == relay {
                    // The peer went back to the relay (its direct path fell silent): follow.
                    state.withLock { s in
                        s.paths[fqdn]?.mode = .relayed
                        s.paths[fqdn]?.kind = "relay"
                        s.paths[fqdn]?.lastDirectProbe = now
                        s.paths[fqdn]?.reason = "relayed: the direct path stopped answering, retrying direct every \(Int(retry)) s"
                    }
                } else if now - p.directSince > Self.directDeadSeconds,
                    (manager.secondsSinceReceived(from: fqdn, now: now) ?? .infinity) > Self.directDeadSeconds
                {
                    steps.append(.relay(fqdn, because: "the direct path stopped answering, retrying direct every \(Int(retry)) s"))
                } else if now - p.lastDirectProbe >= Self.directProbeSeconds {
                    state.withLock { $0.paths[fqdn]?.lastDirectProbe = now }
                    steps.append(.keepalive(fqdn))
                }
            }
        }
        for step in steps {
            switch step {
            case .relay(let fqdn, let because):
                let (relay, fallback) = state.withLock { s -> (Endpoint?, Bool) in
                    let fallback = s.paths[fqdn]?.mode == .directWithFallback
                    s.paths[fqdn]?.reason = "relayed: \(because)"
                    s.paths[fqdn]?.kind = "relay"
                    s.paths[fqdn]?.lastDirectProbe = now
                    if fallback { s.counters.fallbacksToRelay += 1 }
                    guard let relay = s.paths[fqdn]?.relay else { return (nil, fallback) }
                    // An initiator still waiting sends its next handshakes through the relay.
                    if s.lookups[fqdn]?.direction != nil { s.lookups[fqdn]!.direction!.peerEndpoints = [relay] }
                    return (relay, fallback)
                }
                logger.notice("signaling: tunnel with \(fqdn) through the relay at \(relay.map(\.description) ?? "?"): \(because)")
                _ = fallback
                useRelay(fqdn, now: now)
            case .tryDirect(let fqdn, let targets, let path):
                // Open our NAT towards the peer's candidates, then an authenticated keepalive
                // there: if it arrives, the peer's roaming moves it, and its packets move us.
                let probe = HolePunch(
                    pathID: path.pathID, senderNodeID: nodeID, authenticator: path.punchKey.punchAuthenticator(senderNodeID: nodeID))
                if let bytes = try? Datagram(.holePunchingForOptimization(probe)).encode() { for t in targets { send(bytes, to: t) } }
                for t in targets { manager.sendKeepalive(to: fqdn, at: SocketAddress(t)) }
            case .keepalive(let fqdn):
                manager.sendKeepalive(to: fqdn)
            case .standby(let fqdn):
                // A punched tunnel keeps its relay binding warm: a fallback is then instant.
                keepRelayWarm(fqdn, now: now)
            case .drop(let fqdn):
                if state.withLock({ $0.paths.removeValue(forKey: fqdn) }) != nil {
                    logger.info("signaling: path to \(fqdn) dropped (no tunnel within \(Int(Self.pathSetupSeconds)) s)")
                }
            }
        }
    }

    /// Route and reason of the tunnel to `fqdn`, for status.
    func route(of fqdn: String) -> (kind: String, reason: String)? { state.withLock { s in s.paths[fqdn].map { ($0.kind, $0.reason) } } }
}

func formatSeconds(_ s: Double) -> String { s == s.rounded() ? "\(Int(s)) s" : "\(s) s" }
