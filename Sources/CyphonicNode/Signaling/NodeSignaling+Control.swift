import CyphonicCore
import CyphonicDataPlane
import CyphonicPosix
import CyphonicSignaling
import CyphonicWire

// The control thread's side: datagrams from the NMS and punches from peers, timers.
extension NodeSignaling {
    /// Whether a datagram of `type` for `receiverIndex` is ours (an NMS answer) rather
    /// than the tunnel manager's (a peer handshake).
    func owns(type: MessageType, receiverIndex: UInt32) -> Bool {
        switch type {
        case .signaling, .handshakeResponse: return true
        case .holePunching, .holePunchingForOptimization: return true
        case .cookieReply:
            return state.withLock { s in
                s.connecting?.handshake.localIndex == receiverIndex
                    || s.relays.values.contains { $0.connecting?.handshake.localIndex == receiverIndex }
            }
        default: return false
        }
    }

    /// A datagram ``owns(type:receiverIndex:)`` claimed; malformed or foreign ones are
    /// counted and dropped.
    func handle(_ datagram: Datagram, raw: [UInt8], from: SocketAddress) {
        let now = monotonicSeconds()
        switch datagram.body {
        case .holePunching(let p):
            punched(p, probe: false, from: from, now: now)
            return
        case .holePunchingForOptimization(let p):
            punched(p, probe: true, from: from, now: now)
            return
        default:
            break
        }
        // Service datagrams only from the NMS we talk to, or a relay we use.
        guard let source = from.endpoint else { return countBad() }
        if source != nmsEndpoint, isRelay(source) { return relayDatagram(datagram, raw: raw, from: source, now: now) }
        guard source == nmsEndpoint else { return countBad() }
        switch datagram.body {
        case .handshakeResponse:
            handshakeResponse(raw, receiverIndex: datagram.header.receiverIndex, now: now)
        case .cookieReply(let cookie):
            cookieReply(cookie, receiverIndex: datagram.header.receiverIndex, now: now)
        case .signaling:
            signaling(raw, receiverIndex: datagram.header.receiverIndex, now: now)
        default:
            countBad()
        }
    }

    /// A sealed message from the NMS: in the registered session, or the first answer in
    /// the session a registration handshake just made.
    private func signaling(_ raw: [UInt8], receiverIndex: UInt32, now: Double) {
        let opened = state.withLock { s -> (SignalingMessage, SignalingSession, UInt32?)? in
            if let r = s.registration, r.session.localIndex == receiverIndex, let m = try? r.session.open(raw) { return (m, r.session, nil) }
            if let c = s.connecting, let session = c.completed, session.localIndex == receiverIndex, let m = try? session.open(raw) {
                return (m, session, UInt32(truncatingIfNeeded: c.handshake.transactionID))
            }
            return nil
        }
        guard let (message, session, registrationTID) = opened else { return countBad() }
        // In a session still waiting for its ack, only the answer to the registration
        // itself is about the registration (the NMS may send other answers meanwhile).
        let aboutRegistration = registrationTID != nil && message.transactionID == registrationTID
        switch message.body {
        case .registrationAck(let ack) where aboutRegistration:
            registered(ack, session: session, now: now)
        case .error(let code, let text) where aboutRegistration:
            // The NMS refused the registration (certificate revoked or expired, ...): say so, back off.
            state.withLock { s in
                s.connecting = nil
                s.phase = .retrying
                s.reason = "the NMS refused our registration: \(text)"
                s.nextAttempt = now + 10
            }
            logger.error("signaling: the NMS refused our registration (\(code)): \(text)")
        case .keepAliveAck(let observed):
            let moved = state.withLock { s -> Endpoint? in
                guard s.registration != nil else { return nil }
                s.registration!.lastAck = now
                s.registration!.awaitingAck = false
                s.registration!.resent = 0
                defer { s.registration!.observed = observed }
                return s.registration!.observed != observed ? observed : nil
            }
            if let moved { logger.notice("signaling: the NMS now sees us at \(moved) (our NAT mapping changed)") }
        case .natProbeResult(let r):
            let changed = state.withLock { s -> Bool in
                let old = r.primary.address.isIPv4 ? s.mapping4 : s.mapping6
                if r.primary.address.isIPv4 { s.mapping4 = r.mapping } else { s.mapping6 = r.mapping }
                return old != r.mapping
            }
            if changed {
                logger.info("signaling: NAT on IPv\(r.primary.address.isIPv4 ? 4 : 6): \(Self.mappingName(r.mapping)) (mapped \(r.primary))")
            }
        case .routeDirection(let d):
            direction(d, transactionID: message.transactionID, now: now)
        case .authorizationRenewal(let peer, let authorization):
            renewed(peer: peer.value, authorization, now: now)
        case .error(let code, let text):
            if renewalRefused(transactionID: message.transactionID, message: text, now: now) { break }
            refused(transactionID: message.transactionID, code: code, message: text)
        default:
            countBad()
        }
    }

    /// Every ~250 ms: registration retries, keepalives (a missed ack means the NMS lost
    /// us: register again), local address changes, NAT probes, lookups and punches.
    public func tick() {
        guard !nms.isEmpty else { return }
        let now = monotonicSeconds()
        enum Action {
            case none
            case register(String)
            case keepAlive
        }
        // Local addresses are read outside the lock (a system call), when due.
        let checkLocals = state.withLock { $0.registration != nil && now - $0.lastLocalCheck >= 5 }
        let locals =
            checkLocals
            ? Array(localAddresses(excluding: overlay).map { Endpoint(address: $0, port: listenPort) }.prefix(WireLimits.maxEndpoints)) : nil
        let action = state.withLock { s -> Action in
            if let r = s.registration {
                // A registration started while registered (certificate renewed, addresses
                // changed) whose datagrams were lost is started again.
                if let c = s.connecting, now - c.sentAt >= 1, now >= s.nextAttempt {
                    return .register(s.reason)
                }
                // An ack is due within 1.5 s: the keepalive is sent twice more (a lost
                // datagram), then the NMS is taken to have forgotten us (restarted) and we
                // register again: at most ~4.5 s after a keepalive went unanswered.
                if r.awaitingAck, now - r.lastKeepAliveSent >= min(Self.ackWaitSeconds, r.keepAliveSeconds) {
                    s.counters.keepAlivesMissed += 1
                    if r.resent < 2 {
                        s.registration!.resent += 1
                        s.registration!.lastKeepAliveSent = now
                        return .keepAlive
                    }
                    s.registration = nil
                    s.phase = .retrying
                    // It has not answered for 4.5 s: the next NMS replica at once, over the
                    // same IP family (with one NMS, the same endpoint again: a restart).
                    s.nmsIndex = nextNMSIndex(after: s.nmsIndex)
                    s.attempts = 0
                    return .register("missed keepalive acks from the NMS")
                }
                if now - r.lastKeepAliveSent >= r.keepAliveSeconds {
                    s.registration!.lastKeepAliveSent = now
                    s.registration!.awaitingAck = true
                    return .keepAlive
                }
                if let locals, now - s.lastLocalCheck >= 5 {
                    s.lastLocalCheck = now
                    if locals != s.localEndpoints { return .register("local addresses changed") }
                }
                return .none
            }
            if now >= s.nextAttempt {
                let waited = s.connecting.map { now - $0.sentAt } ?? .infinity
                if waited >= 1 {
                    return .register(s.connecting == nil ? s.reason : "no answer from the NMS at \(nms[s.nmsIndex % nms.count])")
                }
            }
            return .none
        }
        switch action {
        case .none: break
        case .register(let why):
            if why.hasPrefix("missed") || why.hasPrefix("local") { logger.notice("signaling: registering again: \(why)") }
            register(because: why, now: now)
        case .keepAlive:
            sendToNMS(.keepAlive, transactionID: 0)
        }
        sendProbes()
        tickLookups(now: now)
        tickPaths(now: now)
        tickRelays(now: now)
        tickRenewals(now: now)
    }

    /// Seconds a keepalive ack may take before the keepalive is sent again.
    static let ackWaitSeconds = 1.5

    /// The next NMS endpoint of the same IP family as `index`'s (cyclically; `index`
    /// itself when it is the only one of its family).
    func nextNMSIndex(after index: Int) -> Int {
        let current = index % nms.count
        for step in 1...nms.count {
            let i = (current + step) % nms.count
            if nms[i].address.isIPv4 == nms[current].address.isIPv4 { return i }
        }
        return current
    }

    static func mappingName(_ m: NATProbeResult.Mapping) -> String {
        switch m {
        case .none: return "none (public address)"
        case .endpointIndependent: return "endpoint-independent mapping"
        case .endpointDependent: return "endpoint-dependent (symmetric) mapping"
        case .unknown: return "unknown"
        }
    }

    /// What status shows about signaling.
    public func status() -> SignalingStatus {
        let now = monotonicSeconds()
        return state.withLock { s in
            SignalingStatus(
                state: s.phase.rawValue, reason: s.reason, nms: nms.isEmpty ? nil : nms[s.nmsIndex % nms.count].description,
                observed: s.registration?.observed.description,
                registeredSecondsAgo: s.registration.map { now - $0.registeredAt },
                natIPv4: s.mapping4.map(Self.mappingName), natIPv6: s.mapping6.map(Self.mappingName),
                lookupsInFlight: s.lookups.count, counters: s.counters)
        }
    }
}

/// Signaling as `cyphonic-node status` shows it.
public struct SignalingStatus: Codable, Sendable {
    /// disabled, connecting, registered or retrying.
    public var state: String
    /// Why (what it waits for, or "registered").
    public var reason: String
    public var nms: String?
    /// Our address as the NMS sees it (the mapped address).
    public var observed: String?
    public var registeredSecondsAgo: Double?
    public var natIPv4: String?
    public var natIPv6: String?
    public var lookupsInFlight: Int
    public var counters: NodeSignaling.Counters
}
