import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicWire

/// A node ↔ service session as a service keeps it for every registered node: the two
/// raw keys, the send counter, and a 64-counter replay window, 104 bytes held inline
/// (a ``SignalingSession`` holds two libcrypto cipher contexts, ~1.5 KiB). Cipher contexts
/// are made for each datagram (a microsecond), which signaling rates afford. Same wire
/// format and guarantees as ``SignalingSession``: header as AAD, counter as nonce,
/// replays refused. A value type: the owner serialises access (the registry's lock).
public struct CompactSignalingSession: Sendable {
    public let localIndex: UInt32
    public let remoteIndex: UInt32
    private let sendKey: SIMD32<UInt8>
    private let receiveKey: SIMD32<UInt8>
    private var sendCounter: UInt64
    /// The highest counter accepted, and which of the 64 below it were seen.
    private var highest: UInt64 = 0
    private var seen: UInt64 = 0
    /// Unix time of the last authenticated datagram from the peer.
    public private(set) var lastReceived: Int64

    init(localIndex: UInt32, remoteIndex: UInt32, sendKey: [UInt8], receiveKey: [UInt8], sendCounter: UInt64, lastReceived: Int64) {
        self.localIndex = localIndex
        self.remoteIndex = remoteIndex
        self.sendKey = FixedBytes.simd32(sendKey)
        self.receiveKey = FixedBytes.simd32(receiveKey)
        self.sendCounter = sendCounter
        self.lastReceived = lastReceived
    }

    /// Takes the next send counter (under the owner's lock); seal with it outside.
    public mutating func nextCounter() throws -> UInt64 {
        guard sendCounter < ReplayWindow.rejectAfter else { throw CryptoError.nonceExhausted }
        defer { sendCounter += 1 }
        return sendCounter
    }

    /// The datagram carrying `message` under counter `counter` (from ``nextCounter()``).
    /// Needs no lock: it reads only the immutable key.
    public func seal(_ message: SignalingMessage, counter: UInt64, status: StatusCode = .ok) throws -> [UInt8] {
        let header = Header(type: .signaling, status: status, receiverIndex: remoteIndex, counter: counter)
        let key = try AEADKey(serviceNoiseProtocol.cipher, key: FixedBytes.array(sendKey))
        return header.bytes + (try key.seal(nonce: counter, aad: header.bytes, plaintext: try message.encode()))
    }

    /// Decrypts a `signaling` datagram (header already decoded as `header`) without
    /// touching the replay window; call ``accept(_:now:)`` under the lock afterwards.
    public func decrypt(_ datagram: UnsafeRawBufferPointer, header: Header) throws(SessionError) -> SignalingMessage {
        guard header.type == .signaling else { throw .unexpectedType(header.type) }
        guard header.receiverIndex == localIndex else { throw .wrongSession(header.receiverIndex) }
        guard mightAccept(header.counter) else { throw .replayed(header.counter) }
        let plain: [UInt8]
        do {
            let key = try AEADKey(serviceNoiseProtocol.cipher, key: FixedBytes.array(receiveKey))
            plain = try key.open(
                nonce: header.counter, aad: header.bytes, ciphertext: Array(datagram[Header.size...]))
        } catch {
            throw .authenticationFailed
        }
        do { return try SignalingMessage.decode(plain) } catch { throw .malformed(error) }
    }

    /// Records that `counter` was opened; false for a replay that raced in meanwhile.
    public mutating func accept(_ counter: UInt64, now: Int64) -> Bool {
        guard mightAccept(counter) else { return false }
        if counter > highest || (highest == 0 && seen == 0) {
            let shift = counter - highest
            seen = shift >= 64 ? 0 : seen << shift
            highest = counter
        }
        seen |= 1 << (highest - counter)
        lastReceived = now
        return true
    }

    /// Inside the 64-counter window and not seen yet.
    private func mightAccept(_ counter: UInt64) -> Bool {
        guard counter < ReplayWindow.rejectAfter else { return false }
        if counter > highest || (highest == 0 && seen == 0) { return true }
        let age = highest - counter
        return age < 64 && seen & (1 << age) == 0
    }
}
