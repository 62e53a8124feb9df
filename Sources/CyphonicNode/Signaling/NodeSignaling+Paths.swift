import CyphonicCore
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

// Which way a directed tunnel goes after set-up (DESIGN §4 step 5, §5): a punch that
// missed its deadline goes through the relay; a relayed tunnel keeps probing the direct
// path (HolePunchingForOptimization) and moves there when a probe is answered; a direct
// path with a relay behind it that stops answering falls back to the relay.
extension NodeSignaling {
    /// Seconds between probes of a direct path that has the relay as fallback, and
    /// seconds without an answer after which it falls back.
    static let directProbeSeconds = 1.0
    static let directDeadSeconds = 3.0

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

    /// Every tick: punch deadlines, direct-path probes of relayed tunnels, liveness of
    /// direct paths that have the relay as fallback.
    func tickPaths(now: Double) {
        enum Step {
            case relay(String)
            case probe(String, [Endpoint])
            case fallBack(String)
        }
        let retry = manager.config.directRetrySeconds
        let timeout = manager.config.punchTimeoutSeconds
        let candidates = state.withLock { s in s.paths.filter { $0.value.mode != .direct }.map { ($0.key, $0.value) } }
        var steps: [Step] = []
        for (fqdn, p) in candidates {
            let up = manager.hasSession(fqdn)
            switch p.mode {
            case .direct:
                break
            case .punching(let deadline):
                if up {
                    state.withLock { s in
                        s.paths[fqdn]?.mode = .directWithFallback
                        s.paths[fqdn]?.directSince = now
                        s.paths[fqdn]?.lastDirectAnswer = now
                    }
                } else if now >= deadline {
                    steps.append(.relay(fqdn))
                }
            case .relayed:
                // The peer moved the tunnel off the relay (its probe was answered): follow.
                if up, let relay = p.relay, let at = manager.endpoint(of: fqdn)?.endpoint, at != relay {
                    state.withLock { s in
                        s.paths[fqdn]?.mode = .directWithFallback
                        s.paths[fqdn]?.directSince = now
                        s.paths[fqdn]?.lastDirectAnswer = now
                        s.paths[fqdn]?.kind = "punched"
                        s.paths[fqdn]?.reason = "direct: moved off the relay (the peer's direct probe was answered)"
                        s.counters.switchesToDirect += 1
                    }
                    logger.info("signaling: tunnel with \(fqdn) moved off the relay by the peer, direct to \(at)")
                } else if up, !p.endpoints.isEmpty, now - p.lastDirectProbe >= retry {
                    state.withLock { $0.paths[fqdn]?.lastDirectProbe = now }
                    steps.append(.probe(fqdn, p.endpoints))
                }
            case .directWithFallback:
                guard up else { continue }
                if now - max(p.lastDirectAnswer, p.directSince) > Self.directDeadSeconds {
                    steps.append(.fallBack(fqdn))
                } else if now - p.lastDirectProbe >= Self.directProbeSeconds, let at = manager.endpoint(of: fqdn)?.endpoint {
                    state.withLock { $0.paths[fqdn]?.lastDirectProbe = now }
                    steps.append(.probe(fqdn, [at]))
                }
            }
        }
        for step in steps {
            switch step {
            case .relay(let fqdn):
                let relay = state.withLock { s -> Endpoint? in
                    s.paths[fqdn]?.reason = "relayed: punch timed out after \(formatSeconds(timeout)), retrying direct every \(Int(retry)) s"
                    s.paths[fqdn]?.kind = "relay"
                    s.paths[fqdn]?.lastDirectProbe = now
                    guard let relay = s.paths[fqdn]?.relay else { return nil }
                    // An initiator still waiting sends its next handshakes through the relay.
                    if s.lookups[fqdn]?.direction != nil { s.lookups[fqdn]!.direction!.peerEndpoints = [relay] }
                    return relay
                }
                logger.notice(
                    "signaling: punch to \(fqdn) timed out after \(formatSeconds(timeout)); through the relay at \(relay.map(\.description) ?? "?")")
                useRelay(fqdn, now: now)
            case .probe(let fqdn, let targets):
                guard let path = state.withLock({ $0.paths[fqdn] }) else { continue }
                let probe = HolePunch(
                    pathID: path.pathID, senderNodeID: nodeID, authenticator: path.authorization.punchAuthenticator(senderNodeID: nodeID))
                guard let bytes = try? Datagram(.holePunchingForOptimization(probe)).encode() else { continue }
                for t in targets { send(bytes, to: t) }
            case .fallBack(let fqdn):
                state.withLock { s in
                    s.paths[fqdn]?.reason = "relayed: the direct path stopped answering, retrying direct every \(Int(retry)) s"
                    s.paths[fqdn]?.kind = "relay"
                    s.paths[fqdn]?.lastDirectProbe = now
                    s.counters.fallbacksToRelay += 1
                }
                logger.notice("signaling: the direct path to \(fqdn) stopped answering; back through the relay")
                useRelay(fqdn, now: now)
            }
        }
    }

    /// A valid punch from a direct (not relay) source. An answer to our direct-path probe
    /// proves the path both ways: a relayed tunnel moves there (the peer follows our
    /// newest packets); a direct one with a fallback is alive.
    func directAnswer(_ fqdn: String, probe: Bool, from: SocketAddress, now: Double) {
        guard !probe else { return }
        let up = manager.hasSession(fqdn)
        let move = state.withLock { s -> Bool in
            guard let p = s.paths[fqdn] else { return false }
            s.paths[fqdn]!.lastDirectAnswer = now
            guard p.mode == .relayed, up else { return false }
            s.paths[fqdn]!.mode = .directWithFallback
            s.paths[fqdn]!.directSince = now
            s.paths[fqdn]!.kind = "punched"
            s.paths[fqdn]!.reason = "direct: moved off the relay (a direct probe was answered)"
            s.counters.switchesToDirect += 1
            return true
        }
        guard move else { return }
        manager.move(fqdn, to: from)
        logger.info("signaling: tunnel with \(fqdn) moved off the relay, direct to \(from.endpoint.map(\.description) ?? "?")")
    }

    /// Route and reason of the tunnel to `fqdn`, for status.
    func route(of fqdn: String) -> (kind: String, reason: String)? { state.withLock { s in s.paths[fqdn].map { ($0.kind, $0.reason) } } }
}

func formatSeconds(_ s: Double) -> String { s == s.rounded() ? "\(Int(s)) s" : "\(s) s" }
