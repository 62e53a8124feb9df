import CyphonicService

extension HandshakeGuard.Limits {
    /// The guard's limits from the keys every service's config has (`handshakeLoadThreshold`,
    /// `handshakesPerSource`, `handshakesPerSecond`; unset ones keep the defaults), the
    /// per-source burst four times the per-source rate. Errors name the key.
    public static func configured(loadThreshold: Int?, perSource: Double?, perSecond: Double?) throws -> Self {
        var limits = Self()
        limits.loadThresholdPerSecond = try ConfigCheck.range(
            loadThreshold, "handshakeLoadThreshold", 0...1_000_000, default: limits.loadThresholdPerSecond)
        limits.perSourcePerSecond = try ConfigCheck.range(perSource, "handshakesPerSource", 0.001...1_000_000, default: limits.perSourcePerSecond)
        limits.perSourceBurst = 4 * limits.perSourcePerSecond
        limits.totalPerSecond = try ConfigCheck.range(perSecond, "handshakesPerSecond", 1...1_000_000, default: limits.totalPerSecond)
        return limits
    }
}
