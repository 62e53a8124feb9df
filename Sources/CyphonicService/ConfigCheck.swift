import CyphonicCore
import CyphonicPosix
import Logging

/// Checks of the values the services' config files and flags share, each error naming
/// the key (``ConfigFileError/invalid(_:_:)``): ranges, addresses to bind, hosts to reach,
/// log levels, the metrics endpoint.
public enum ConfigCheck {
    /// `value` (or `fallback` when unset) within `range`.
    public static func range<T: Comparable>(_ value: T?, _ key: String, _ range: ClosedRange<T>, default fallback: T) throws -> T {
        let v = value ?? fallback
        guard range.contains(v) else { throw ConfigFileError.invalid(key, "\(v) must be \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    /// Addresses to bind: IP literals only (a socket binds an address), at least one.
    public static func bind(_ list: [String]?, _ key: String, default fallback: [Endpoint]) throws -> [Endpoint] {
        guard let list else { return fallback }
        guard !list.isEmpty else { throw ConfigFileError.invalid(key, "give at least one endpoint") }
        return try list.map {
            guard let e = Endpoint($0) else {
                throw ConfigFileError.invalid(key, "\($0) is not ADDRESS:PORT or [V6]:PORT (an IP address to bind: names are not resolved here)")
            }
            return e
        }
    }

    /// Other hosts: IP literals or DNS names, resolved now (both families).
    public static func resolve(_ list: [String], _ key: String) throws -> [Endpoint] {
        try list.flatMap { text -> [Endpoint] in
            do { return try HostPort.resolve(text) } catch { throw ConfigFileError.invalid(key, "\(error)") }
        }
    }

    /// The HTTP endpoint for Prometheus; "" turns it off (nil).
    public static func metrics(_ value: String?, default fallback: String) throws -> Endpoint? {
        let v = value ?? fallback
        if v.isEmpty { return nil }
        guard let e = Endpoint(v) else {
            throw ConfigFileError.invalid(
                "metrics", "\(v) is not ADDRESS:PORT or [V6]:PORT (an IP address to bind: names are not resolved here), or \"\" for none")
        }
        return e
    }

    /// swift-log's level names.
    public static func logLevel(_ value: String?) throws -> Logger.Level {
        let v = value ?? "info"
        guard let level = Logger.Level(rawValue: v) else {
            throw ConfigFileError.invalid("logLevel", "\(v) is not a level: trace, debug, info, notice, warning, error or critical")
        }
        return level
    }

    /// A path that must be set.
    public static func required(_ value: String?, _ key: String, _ what: String) throws -> String {
        guard let value, !value.isEmpty else { throw ConfigFileError.invalid(key, "is required: \(what)") }
        return value
    }
}
