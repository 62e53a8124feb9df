/// CoDel (RFC 8289) for one peer's queue in one direction: from the time batches spent
/// between staging and release (their sojourn), decides when to drop one packet so that
/// the peer's TCP senders slow down before the queue grows into delay. The drops are
/// few and spaced (interval / √count while the delay stays above target), so a
/// standing queue drains without the bursts of tail drops a full pool would cause.
///
/// Not thread-safe: owned by whoever holds the peer's release claim in that direction.
public struct CoDel: Sendable {
    /// Acceptable standing delay, and how long it may be exceeded before the first drop.
    public let target: Double
    public let interval: Double

    private var firstAboveTime = 0.0
    private var dropNext = 0.0
    private var count = 0
    private var lastCount = 0
    public private(set) var dropping = false

    /// Defaults fit a LAN overlay: 1 ms of queue, judged over 20 ms.
    public init(target: Double = 0.001, interval: Double = 0.020) {
        self.target = target
        self.interval = interval
    }

    /// Called once per released batch with its sojourn time and the current time
    /// (seconds); true when one of its packets should be dropped.
    public mutating func shouldDrop(sojourn: Double, now: Double) -> Bool {
        var okToDrop = false
        if sojourn < target {
            firstAboveTime = 0
        } else if firstAboveTime == 0 {
            firstAboveTime = now + interval
        } else if now >= firstAboveTime {
            okToDrop = true
        }
        if dropping {
            guard okToDrop else {
                dropping = false
                return false
            }
            guard now >= dropNext else { return false }
            count += 1
            dropNext = controlLaw(dropNext)
            return true
        }
        guard okToDrop else { return false }
        dropping = true
        // Resume near the last drop rate if the previous dropping state ended recently.
        let delta = count - lastCount
        count = delta > 1 && now - dropNext < 16 * interval ? delta : 1
        dropNext = controlLaw(now)
        lastCount = count
        return true
    }

    private func controlLaw(_ t: Double) -> Double { t + interval / Double(count).squareRoot() }
}
