import CyphonicCore
import CyphonicCrypto
import CyphonicWire
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The keys of one peer-to-peer session after its Noise handshake. Each crypto worker
/// has its own `AEADKey` instance per direction (a libcrypto context is single-threaded),
/// plus one extra for the control thread (keepalives) and the single-threaded pipeline.
/// The replay window is behind its own lock: the thread holding the peer's inbound
/// release claim and the staging thread's priority lane both check it. Keys are wiped
/// when the session is released. `@unchecked Sendable`: keys are indexed by thread role
/// so no two threads share one; counters are atomic; `replay` is a mutex.
public final class DataSession: @unchecked Sendable {
    public let localIndex: UInt32
    public let remoteIndex: UInt32
    public let isInitiator: Bool
    public let created: Double
    let sendKeys: [AEADKey]
    let receiveKeys: [AEADKey]
    /// On a cache line of its own: the staging thread takes a counter per packet while the
    /// crypto workers read this object's keys per packet; sharing a line, every packet
    /// moved that line between the cores (`cyphonic-bench pipeline`).
    private let sendCounter = IsolatedCounter()
    let lastReceivedBits = Atomic<UInt64>(0)
    let lastSentBits = Atomic<UInt64>(0)
    /// Taken once per released batch (and per priority-lane packet); uncontended in the
    /// single-threaded loop. 512 words reach 32 704 counters: a priority-lane packet can
    /// be accepted ahead of every batch in flight on both ends — at most 2 × 128 × 64 =
    /// 16 384 packets (``Pipeline/maxPoolSize``) — and those still fit behind it.
    let replay = Mutex(ReplayWindow(words: 512))

    /// Spec constants (as WireGuard): rekey after this many seconds or messages.
    public static let rekeyAfterSeconds = 120.0
    public static let rejectAfterSeconds = 180.0
    public static let rekeyAfterMessages: UInt64 = 1 << 60
    /// No message is sealed or opened with a counter at or past this (both sides).
    public static var rejectAfterMessages: UInt64 { UInt64.max &- 8192 }

    private let confirmedFlag = Atomic<Bool>(true)

    /// Whether the peer is known to hold this session's keys: an authenticated packet
    /// arrived on it, or we are the responder (message 3 proved it).
    public var isConfirmed: Bool { confirmedFlag.load(ordering: .relaxed) }

    /// Marks the session confirmed; true only for the call that changed it (so the
    /// promotion to current happens once, off the per-packet path).
    @inline(__always)
    public func confirm() -> Bool {
        guard !confirmedFlag.load(ordering: .relaxed) else { return false }
        return confirmedFlag.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
    }

    /// `threads` = crypto workers + 1 (the control key is the last).
    /// `confirmed`: false for an initiator's session whose handshake message 3 the
    /// responder may not have received yet (see ``confirm()``).
    public init(
        localIndex: UInt32, remoteIndex: UInt32, isInitiator: Bool, send: SecureBytes, receive: SecureBytes,
        algorithm: AEADAlgorithm, threads: Int, confirmed: Bool = true
    ) throws {
        self.localIndex = localIndex
        self.remoteIndex = remoteIndex
        self.isInitiator = isInitiator
        created = monotonicSeconds()
        // Each context copies the key straight from the secure buffer (no array copy left behind).
        sendKeys = try (0..<threads).map { _ in try send.withUnsafeBytes { try AEADKey(algorithm, key: $0) } }
        receiveKeys = try (0..<threads).map { _ in try receive.withUnsafeBytes { try AEADKey(algorithm, key: $0) } }
        lastReceivedBits.store(created.bitPattern, ordering: .relaxed)
        confirmedFlag.store(confirmed, ordering: .relaxed)
    }

    /// The index of the key reserved for the control thread / single-threaded loop.
    public var controlKeyIndex: Int { sendKeys.count - 1 }

    /// The next send counter (nonce); never reused.
    @inline(__always)
    public func nextCounter() -> UInt64 { sendCounter.value.wrappingAdd(1, ordering: .relaxed).oldValue }

    /// `n` consecutive send counters at once; returns the first.
    @inline(__always)
    public func nextCounters(_ n: Int) -> UInt64 { sendCounter.value.wrappingAdd(UInt64(n), ordering: .relaxed).oldValue }

    public var messagesSent: UInt64 { sendCounter.value.load(ordering: .relaxed) }

    public var lastReceived: Double {
        get { Double(bitPattern: lastReceivedBits.load(ordering: .relaxed)) }
        set { lastReceivedBits.store(newValue.bitPattern, ordering: .relaxed) }
    }

    public var lastSent: Double {
        get { Double(bitPattern: lastSentBits.load(ordering: .relaxed)) }
        set { lastSentBits.store(newValue.bitPattern, ordering: .relaxed) }
    }

    /// Seals `slot[16..<16+length]` in place into a capsule; returns the datagram length.
    @inline(__always)
    func seal(
        slot: UnsafeMutableRawBufferPointer, length: Int, counter: UInt64, keyIndex: Int,
        flags: HeaderFlags = []
    ) -> Int? {
        guard counter < Self.rejectAfterMessages else { return nil }
        Header(type: .capsule, flags: flags, receiverIndex: remoteIndex, counter: counter).write(to: slot)
        let aad = UnsafeRawBufferPointer(rebasing: slot[0..<Header.size])
        let body = UnsafeMutableRawBufferPointer(rebasing: slot[Header.size...])
        guard let n = try? sendKeys[keyIndex].seal(nonce: counter, aad: aad, buffer: body, plaintextCount: length) else { return nil }
        return Header.size + n
    }

    /// Opens the capsule in `slot[0..<length]` in place; returns the inner length or nil.
    @inline(__always)
    func open(slot: UnsafeMutableRawBufferPointer, length: Int, counter: UInt64, keyIndex: Int) -> Int? {
        guard length >= Header.size + 16, counter < Self.rejectAfterMessages else { return nil }
        let aad = UnsafeRawBufferPointer(rebasing: slot[0..<Header.size])
        let body = UnsafeMutableRawBufferPointer(rebasing: slot[Header.size..<length])
        return try? receiveKeys[keyIndex].open(nonce: counter, aad: aad, buffer: body, ciphertextCount: length - Header.size)
    }
}

/// An atomic counter with a cache line of padding on either side, so that writing it
/// never invalidates a line other threads read (a 64-byte line; 56 bytes each side).
final class IsolatedCounter: Sendable {
    private let before: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0)
    let value = Atomic<UInt64>(0)
    private let after: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0)
}
