/// Sliding anti-replay window over 64-bit packet counters (RFC 6479): a ring of 64-bit
/// words, so moving the window clears whole words instead of shifting a bitmap.
///
/// Accepts each counter at most once, and any counter within ``size`` of the highest
/// one accepted so far, in any order. Call ``accept(_:)`` only after the packet has
/// authenticated, so forged counters never move the window. Not thread-safe: the
/// per-peer sequencer that releases packets in order owns it.
public struct ReplayWindow: Sendable {
    /// Words in the ring; a power of two.
    static let words = 64
    /// Counters below `highest - size` are refused: (words - 1) × 64 = 4032 packets
    /// with the default 64 words.
    public static let size: UInt64 = UInt64((words - 1) * 64)
    /// This window's words (a power of two) and reach.
    let words: Int
    public let size: UInt64
    /// Counters from here on are refused: the sender must have rekeyed (as WireGuard's
    /// REJECT_AFTER_MESSAGES, 2^64 - 2^13 - 1).
    public static let rejectAfter: UInt64 = UInt64.max - (1 << 13)

    private var bitmap: [UInt64]
    /// The highest counter accepted so far (0 before any).
    public private(set) var highest: UInt64 = 0

    /// `words` (a power of two ≥ 2) sets the reach: (words − 1) × 64 counters.
    public init(words: Int = 64) {
        precondition(words >= 2 && words & (words - 1) == 0, "replay window words must be a power of two")
        self.words = words
        size = UInt64((words - 1) * 64)
        bitmap = [UInt64](repeating: 0, count: words)
    }

    /// Whether `counter` would be accepted now; changes nothing. Lets a receiver skip
    /// decrypting an obvious replay.
    public func mightAccept(_ counter: UInt64) -> Bool {
        guard counter < Self.rejectAfter else { return false }
        if counter > highest { return true }
        if highest - counter > size { return false }
        let block = Int(truncatingIfNeeded: (counter >> 6) & UInt64(words - 1))
        return bitmap[block] & (1 << (counter & 63)) == 0
    }

    /// Records `counter` and returns true the first time it is seen inside the window;
    /// false for a repeat, a counter too old for the window, or one past ``rejectAfter``.
    public mutating func accept(_ counter: UInt64) -> Bool {
        guard counter < Self.rejectAfter else { return false }
        let block = counter >> 6
        if counter > highest {
            let current = highest >> 6
            let advance = min(block - current, UInt64(words))
            var i: UInt64 = 1
            while i <= advance {
                bitmap[Int(truncatingIfNeeded: (current + i) & UInt64(words - 1))] = 0
                i += 1
            }
            highest = counter
        } else if highest - counter > size {
            return false
        }
        let index = Int(truncatingIfNeeded: block & UInt64(words - 1))
        let bit: UInt64 = 1 << (counter & 63)
        if bitmap[index] & bit != 0 { return false }
        bitmap[index] |= bit
        return true
    }

    /// ``accept(_:)``, also saying whether `counter` is the newest so far (it moved the
    /// window). Roaming follows only the newest packets: a late one that took a slower
    /// path (the relay, after a switch to direct) never moves the peer back.
    public mutating func acceptNewest(_ counter: UInt64) -> (accepted: Bool, newest: Bool) {
        let newest = counter > highest || (highest == 0 && counter == 0)
        let accepted = accept(counter)
        return (accepted, accepted && newest)
    }

    /// Forgets everything (a new key starts a new counter space).
    public mutating func reset() {
        for i in bitmap.indices { bitmap[i] = 0 }
        highest = 0
    }
}
