import CyphonicCore
import CyphonicSignaling
import CyphonicWire

/// A tunnel the NMS directed: how it was made, which way it goes now and why.
struct PathInfo {
    /// Which way the tunnel goes (DESIGN §5): as directed (direct, local), hole punching
    /// before its deadline, through the relay, or direct with the relay as fallback.
    enum Mode: Equatable {
        case direct
        case punching(deadline: Double)
        case relayed
        case directWithFallback
    }
    var pathID: UInt64
    var kind: String
    var role: RouteDirection.Role
    var peerNodeID: UInt64
    var authorization: PathAuthorization
    /// The path's first authorization, which keys its punch authenticators: renewals
    /// (``authorization``) do not change it, so a node whose renewal was lost still
    /// checks its peer's punches.
    let punchKey: PathAuthorization
    var endpoints: [Endpoint]
    var punchesLeft: Int
    var lastPunchAnswer: Double
    /// The TRS the NMS named (relay routes, and punches that may fall back to it).
    var relay: Endpoint? = nil
    var mode = Mode.direct
    /// Why it goes the way it goes, for status.
    var reason = ""
    /// The relay bound our end / the peer's end (from its grants).
    var relayBound = false
    var peerBound = false
    /// Our end stays bound at the relay while the tunnel goes direct (a warm fallback).
    var keepRelay = false
    /// Our end must stay bound at its relay: the tunnel goes through it, or keeps it warm.
    var needsRelay: Bool { relay != nil && (mode == .relayed || keepRelay) }
    /// Direct-path attempts (HolePunchingForOptimization, keepalives) and since when direct.
    var lastDirectProbe = 0.0
    var directSince = 0.0
    /// When the NMS directed it (a path that never gets a tunnel is dropped).
    var created = monotonicSeconds()
    /// When we last asked the NMS for another relay for it (its relay stopped answering).
    var lastReroute = 0.0
    /// When the NMS authorized it last (Unix seconds, as the authorization's `expires`),
    /// and the transaction of the renewal asked for (NodeSignaling+Renewal.swift).
    var authorizedAt = UInt64(max(0, unixNowSeconds()))
    var renewalTransaction: UInt32? = nil
    var nextRenewal = 0.0
}

/// A name being set up for the resolver; later queries for it join.
struct Lookup {
    var transactionID: UInt32
    var waiters: [@Sendable (TunnelLookupResult) -> Void]
    var deadline: Double
    var started: Double
    var direction: RouteDirection?
    var endpointIndex = 0
    var lastTry = 0.0
    /// When the DirectionRequest was last sent (resent every second until answered).
    var lastAsk = 0.0
    /// The handshake was moved to where a peer's punch came from (once).
    var retargeted = false
    /// A reroute: the relay of the path this lookup replaces stopped answering.
    var avoidRelay: Endpoint? = nil
}
