import CyphonicCore
import CyphonicCrypto
import CyphonicDataPlane
import CyphonicWire

/// A node ↔ service session as a service keeps it for every registered node: the two
/// raw keys, the send counter, and a 64-counter replay window, about 200 bytes (a
/// ``SignalingSession`` holds two libcrypto cipher contexts, ~1.5 KiB). Cipher contexts
/// are made for each datagram (a microsecond), which signaling rates afford. Same wire
/// format and guarantees as ``SignalingSession``: header as AAD, counter as nonce,
/// replays refused. A value type: the owner serialises access (the registry's lock).
public struct CompactSignalingSession: Sendable {
    public let localIndex: UInt32
    public let remoteIndex: UInt32
    private let sendKey: [UInt8]
    private let receiveKey: [UInt8]
    private var sendCounter: UInt64
    private var replay = ReplayWindow(words: 2)
    /// Unix time of the last authenticated datagram from the peer.
    public private(set) var lastReceived: Int64

    init(localIndex: UInt32, remoteIndex: UInt32, sendKey: [UInt8], receiveKey: [UInt8], sendCounter: UInt64, lastReceived: Int64) {
        self.localIndex = localIndex
        self.remoteIndex = remoteIndex
        self.sendKey = sendKey
        self.receiveKey = receiveKey
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
        let key = try AEADKey(serviceNoiseProtocol.cipher, key: sendKey)
        return header.bytes + (try key.seal(nonce: counter, aad: header.bytes, plaintext: try message.encode()))
    }

    /// Decrypts a `signaling` datagram (header already decoded as `header`) without
    /// touching the replay window; call ``accept(_:now:)`` under the lock afterwards.
    public func decrypt(_ datagram: UnsafeRawBufferPointer, header: Header) throws(SessionError) -> SignalingMessage {
        guard header.type == .signaling else { throw .unexpectedType(header.type) }
        guard header.receiverIndex == localIndex else { throw .wrongSession(header.receiverIndex) }
        guard replay.mightAccept(header.counter) else { throw .replayed(header.counter) }
        let plain: [UInt8]
        do {
            let key = try AEADKey(serviceNoiseProtocol.cipher, key: receiveKey)
            plain = try key.open(
                nonce: header.counter, aad: header.bytes, ciphertext: Array(datagram[Header.size...]))
        } catch {
            throw .authenticationFailed
        }
        do { return try SignalingMessage.decode(plain) } catch { throw .malformed(error) }
    }

    /// Records that `counter` was opened; false for a replay that raced in meanwhile.
    public mutating func accept(_ counter: UInt64, now: Int64) -> Bool {
        guard replay.accept(counter) else { return false }
        lastReceived = now
        return true
    }
}
