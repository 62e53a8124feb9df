import Testing

@testable import CyphonicDataPlane

/// Reference wrapper: `#expect` cannot call mutating methods on a captured value.
final class Box {
    var window = ReplayWindow()
    func accept(_ c: UInt64) -> Bool { window.accept(c) }
    func mightAccept(_ c: UInt64) -> Bool { window.mightAccept(c) }
    func reset() { window.reset() }
    var highest: UInt64 { window.highest }
}

@Suite struct ReplayWindowTests {
    @Test func windowIsAtLeast2048() {
        #expect(ReplayWindow.size >= 2048)
    }

    /// A data session's window covers every packet a priority-lane packet can overtake:
    /// all batches in flight on both ends at the largest pool.
    @Test func aDataSessionsWindowCoversEverythingInFlight() {
        var w = ReplayWindow(words: 512)
        let inFlight = UInt64(2 * Pipeline.maxPoolSize * PacketBatch.capacity)
        #expect(w.size == 32_704 && w.size >= inFlight)
        let top: UInt64 = 100_000
        let newest = w.accept(top)
        let oldestInFlight = w.accept(top - inFlight)
        let again = w.accept(top - inFlight)
        let edge = w.accept(top - w.size)
        let beyond = w.accept(top - w.size - 1)
        #expect(newest && oldestInFlight && !again && edge && !beyond)
    }

    @Test func eachCounterOnce() {
        let w = Box()
        #expect(w.accept(0))
        #expect(!w.accept(0))
        #expect(w.accept(1))
        #expect(w.accept(5))
        #expect(w.accept(3))
        #expect(!w.accept(3))
        #expect(!w.accept(5))
        #expect(w.accept(4))
        #expect(w.highest == 5)
    }

    @Test func edgesOfTheWindow() {
        let w = Box()
        let top: UInt64 = 10_000
        #expect(w.accept(top))
        // Exactly `size` behind the highest is still inside; one more is outside.
        #expect(w.mightAccept(top - ReplayWindow.size))
        #expect(w.accept(top - ReplayWindow.size))
        #expect(!w.accept(top - ReplayWindow.size))
        #expect(!w.mightAccept(top - ReplayWindow.size - 1))
        #expect(!w.accept(top - ReplayWindow.size - 1))
        #expect(w.accept(top - 1))
        // Moving up by one keeps recent history.
        #expect(w.accept(top + 1))
        #expect(!w.accept(top - 1))
        #expect(!w.accept(top))
    }

    @Test func everyCounterInAWindowOutOfOrder() {
        let w = Box()
        let n = Int(ReplayWindow.size)
        // Accept a window's worth in reverse order after its top arrives first.
        #expect(w.accept(UInt64(n)))
        for c in stride(from: n - 1, through: 0, by: -1) { #expect(w.accept(UInt64(c)), "counter \(c)") }
        for c in 0...n { #expect(!w.accept(UInt64(c)), "replay \(c)") }
    }

    @Test func ringWrapsAroundManyTimes() {
        let w = Box()
        var rejectedFresh = 0
        var acceptedReplay = 0
        // Walk 40 windows forward with a small reordering; every fresh counter is
        // accepted once, and each immediate replay refused, across ring wrap-arounds.
        var c: UInt64 = 0
        while c < ReplayWindow.size * 40 {
            for k in [c + 1, c, c + 3, c + 2] {
                if !w.accept(k) { rejectedFresh += 1 }
                if w.accept(k) { acceptedReplay += 1 }
            }
            c += 4
        }
        #expect(rejectedFresh == 0)
        #expect(acceptedReplay == 0)
    }

    @Test func bigJumpClearsTheWholeRing() {
        let w = Box()
        for c: UInt64 in 0..<100 { #expect(w.accept(c)) }
        #expect(w.accept(1_000_000))
        #expect(w.accept(1_000_000 - 64))  // a bit set long ago in the same ring slot must be clear
        #expect(!w.accept(50))
        #expect(w.accept(1_000_000 - ReplayWindow.size))
    }

    @Test func countersPastTheLimitAreRefused() {
        let w = Box()
        #expect(!w.accept(UInt64.max))
        #expect(!w.accept(ReplayWindow.rejectAfter))
        #expect(w.accept(ReplayWindow.rejectAfter - 1))
        #expect(!w.accept(ReplayWindow.rejectAfter - 1))
        #expect(w.accept(ReplayWindow.rejectAfter - 2))
        w.reset()
        #expect(w.accept(0) && w.highest == 0)
    }
}
