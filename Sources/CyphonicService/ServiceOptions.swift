import ArgumentParser

/// The handshake guard's keys, which every service's config has (AS, NMS, relay).
public protocol HandshakeGuardKeys {
    var handshakeLoadThreshold: Int? { get set }
    var handshakesPerSource: Double? { get set }
    var handshakesPerSecond: Double? { get set }
}

/// The revocation-list keys of the services that fetch the list from the AS (NMS, relay).
public protocol RevocationKeys {
    var `as`: String? { get set }
    var crl: String? { get set }
    var crlRefresh: Double? { get set }
}

/// The handshake guard's flags of every service's `serve`; unset ones leave the file's keys.
public struct HandshakeGuardOptions: ParsableArguments {
    @Option(
        name: .customLong("handshake-load-threshold"),
        help: "Handshake initiations per second above which every source must first repeat a cookie (proving its address; default 40).")
    public var handshakeLoadThreshold: Int?
    @Option(
        name: .customLong("handshakes-per-source"), help: "Handshakes one source (IPv4 address, IPv6 /64) may start per second (burst 4x; default 4)."
    )
    public var handshakesPerSource: Double?
    @Option(name: .customLong("handshakes-per-second"), help: "Handshakes per second in total, at most (default 500).")
    public var handshakesPerSecond: Double?

    public init() {}

    /// Puts the flags given over `config`.
    public func apply<C: HandshakeGuardKeys>(to config: inout C) {
        config.handshakeLoadThreshold = handshakeLoadThreshold
        config.handshakesPerSource = handshakesPerSource
        config.handshakesPerSecond = handshakesPerSecond
    }
}

/// The revocation-list flags of the NMS's and the relay's `serve`.
public struct RevocationOptions: ParsableArguments {
    @Option(name: .customLong("as"), help: "AS endpoint to fetch the revocation list from (HOST:PORT); without it only --crl applies.")
    public var asEndpoint: String?
    @Option(help: "A CA-signed revocation list (PEM) to start with.") public var crl: String?
    @Option(name: .customLong("crl-refresh"), help: "Seconds between revocation-list fetches from the AS (default 60).") public var crlRefresh:
        Double?

    public init() {}

    /// Puts the flags given over `config`.
    public func apply<C: RevocationKeys>(to config: inout C) {
        config.as = asEndpoint
        config.crl = crl
        config.crlRefresh = crlRefresh
    }
}
