import CyphonicCore
import CyphonicSignaling
import CyphonicWire

// Directions across NMS replicas (docs/scale.md): a replica directs a tunnel to a node
// registered with another replica through that one, which delivers the direction in
// its session with the node and sends the node's confirmation back.
extension NMSServer {
    /// Sends a responder its direction: in its session here, or through the replica it
    /// is registered with.
    func sendToResponder(_ message: SignalingMessage, _ target: String, via remote: String?, pathID: UInt64) {
        guard let remote, let shared else {
            send(message, to: target)
            return
        }
        do {
            let deliver = ReplicaMessage.deliver(pathID: pathID, target: try FQDN(target), origin: shared.replica, message: try message.encode())
            shared.sendSoon(deliver, to: remote)
            metrics.replicaMessages.increment()
        } catch {
            logger.warning("nms: cannot pass the direction for \(target) to replica \(remote): \(error)")
        }
    }

    /// A confirmation for a direction another replica made: sent back to it (true), or
    /// not ours to forward (false).
    func forwardConfirmation(_ c: RouteDirectionConfirmation, from responder: String) -> Bool {
        // Only the node the direction was delivered to may answer it.
        guard let shared,
            let origin = forwarded.withLock({ f -> String? in
                guard let entry = f[c.pathID], entry.target == responder else { return nil }
                f.removeValue(forKey: c.pathID)
                return entry.origin
            })
        else { return false }
        do {
            let message = try SignalingMessage(transactionID: UInt32(truncatingIfNeeded: c.pathID), body: .routeDirectionConfirmation(c)).encode()
            shared.sendSoon(.confirm(responder: try FQDN(responder), message: message), to: origin)
            metrics.replicaMessages.increment()
        } catch {
            logger.warning("nms: cannot return \(responder)'s confirmation to replica \(origin): \(error)")
        }
        return true
    }

    /// A message from another replica (on the directory's queue).
    func replicaMessage(_ m: ReplicaMessage) {
        let now = unixNowSeconds()
        switch m {
        case .deliver(let pathID, let target, let origin, let bytes):
            guard let message = try? SignalingMessage.decode(bytes) else {
                metrics.drop("bad_request")
                return
            }
            // A renewed authorization for a node here: only passed on (nothing answers it).
            if case .authorizationRenewal = message.body {
                if registry.node(named: target.value) != nil { send(message, to: target.value) }
                return
            }
            guard case .routeDirection = message.body else {
                metrics.drop("bad_request")
                return
            }
            guard registry.node(named: target.value) != nil else {
                // Not (or no longer) here: the origin refuses the direction at once.
                let refusal = RouteDirectionConfirmation(pathID: pathID, status: .unavailable, localEndpoints: [])
                if let encoded = try? SignalingMessage(transactionID: 0, body: .routeDirectionConfirmation(refusal)).encode() {
                    shared?.sendSoon(.confirm(responder: target, message: encoded), to: origin)
                }
                return
            }
            // Bounded: expired entries go first; a table still full refuses the delivery
            // (the origin's direction then times out) rather than forgetting others.
            let kept = forwarded.withLock { f -> Bool in
                if f.count >= settings.maxPendingDirections { f = f.filter { $0.value.until > now } }
                guard f.count < settings.maxPendingDirections else { return false }
                f[pathID] = (origin, target.value, now + 30)
                return true
            }
            guard kept else {
                metrics.drop("table_full")
                return
            }
            send(message, to: target.value)
        case .confirm(let responder, let bytes):
            guard let message = try? SignalingMessage.decode(bytes), case .routeDirectionConfirmation(let c) = message.body else {
                metrics.drop("bad_request")
                return
            }
            confirmation(c, from: responder.value, now: now)
        }
    }
}
