import Testing

@testable import CyphonicCrypto

@Suite struct NoiseHandshakeTests {
    static let xx = NoiseProtocol(pattern: .xx, cipher: .aes256gcm)

    @Test func xxExchangesStaticKeysAndTransportWorksBothWays() throws {
        let is_ = try X25519PrivateKey()
        let rs = try X25519PrivateKey()
        let i = try NoiseHandshake(protocol: Self.xx, role: .initiator, prologue: [1, 2], localStatic: is_)
        let r = try NoiseHandshake(protocol: Self.xx, role: .responder, prologue: [1, 2], localStatic: rs)
        #expect(try r.readMessage(try i.writeMessage()) == [])
        #expect(try i.readMessage(try r.writeMessage(payload: [9])) == [9])
        #expect(try r.readMessage(try i.writeMessage(payload: [7, 7])) == [7, 7])
        #expect(i.isComplete && r.isComplete)
        #expect(i.remoteStatic == rs.publicKey)
        #expect(r.remoteStatic == is_.publicKey)
        #expect(i.handshakeHash == r.handshakeHash)
        let (iSend, iRecv) = try i.split()
        let (rSend, rRecv) = try r.split()
        #expect(try rRecv.decrypt(ad: [], ciphertext: try iSend.encrypt(ad: [], plaintext: [1, 2, 3])) == [1, 2, 3])
        #expect(try iRecv.decrypt(ad: [], ciphertext: try rSend.encrypt(ad: [], plaintext: [4])) == [4])
    }

    /// A forged or corrupted message must not kill a handshake in flight (issue 8,
    /// defect 7): the state rolls back and the genuine message still completes it.
    @Test func aForgedMessageLeavesTheHandshakeUsable() throws {
        let i = try NoiseHandshake(protocol: Self.xx, role: .initiator, localStatic: try X25519PrivateKey())
        let r = try NoiseHandshake(protocol: Self.xx, role: .responder, localStatic: try X25519PrivateKey())
        _ = try r.readMessage(try i.writeMessage())
        let m2 = try r.writeMessage(payload: [5])
        var forged = m2
        forged[forged.count - 1] ^= 1
        #expect(throws: NoiseError.crypto(.authenticationFailed)) { try i.readMessage(forged) }
        #expect(throws: NoiseError.messageTooShort) { try i.readMessage([1, 2, 3]) }
        // An attacker's own valid-looking message 2 (another responder) fails on a copy; the original goes on.
        let other = try NoiseHandshake(protocol: Self.xx, role: .responder, localStatic: try X25519PrivateKey())
        let probe = try NoiseHandshake(protocol: Self.xx, role: .initiator, localStatic: try X25519PrivateKey())
        _ = try other.readMessage(try probe.writeMessage())
        let attempt = try i.copy()
        #expect(throws: NoiseError.self) { try attempt.readMessage(try other.writeMessage()) }
        #expect(try i.readMessage(m2) == [5])
        let m3 = try i.writeMessage(payload: [6])
        var bad3 = m3
        bad3[40] ^= 0x80
        #expect(throws: NoiseError.self) { try r.readMessage(bad3) }
        #expect(try r.readMessage(m3) == [6])
        #expect(i.handshakeHash == r.handshakeHash)
    }

    @Test func prologueMismatchFailsAuthentication() throws {
        let i = try NoiseHandshake(protocol: Self.xx, role: .initiator, prologue: [1], localStatic: try X25519PrivateKey())
        let r = try NoiseHandshake(protocol: Self.xx, role: .responder, prologue: [2], localStatic: try X25519PrivateKey())
        _ = try r.readMessage(try i.writeMessage())
        #expect(throws: NoiseError.crypto(.authenticationFailed)) { try i.readMessage(try r.writeMessage()) }
    }

    @Test func turnsAreEnforced() throws {
        let i = try NoiseHandshake(protocol: Self.xx, role: .initiator, localStatic: try X25519PrivateKey())
        #expect(throws: NoiseError.wrongTurn) { try i.readMessage([UInt8](repeating: 0, count: 32)) }
        let r = try NoiseHandshake(protocol: Self.xx, role: .responder, localStatic: try X25519PrivateKey())
        #expect(throws: NoiseError.wrongTurn) { try r.writeMessage() }
        #expect(throws: NoiseError.wrongTurn) { try r.split() }
    }

    @Test func truncatedAndRandomMessagesThrowNeverTrap() throws {
        for length in [0, 1, 31, 32, 33, 47, 48, 64, 95, 96, 200] {
            let i = try NoiseHandshake(protocol: Self.xx, role: .initiator, localStatic: try X25519PrivateKey())
            let r = try NoiseHandshake(protocol: Self.xx, role: .responder, localStatic: try X25519PrivateKey())
            _ = try r.readMessage(try i.writeMessage())
            let junk = try SecureRandom.bytes(length)
            #expect(throws: NoiseError.self) { try i.readMessage(junk) }
        }
        let r = try NoiseHandshake(protocol: Self.xx, role: .responder, localStatic: try X25519PrivateKey())
        #expect(throws: NoiseError.messageTooShort) { try r.readMessage([1, 2, 3]) }
        #expect(throws: NoiseError.messageTooLong) { try r.readMessage([UInt8](repeating: 0, count: 70000)) }
    }

    @Test func missingStaticKeyIsReported() throws {
        #expect(throws: NoiseError.missingKey("rs")) {
            try NoiseHandshake(
                protocol: NoiseProtocol(pattern: .ik, cipher: .aes256gcm), role: .initiator,
                localStatic: try X25519PrivateKey())
        }
    }

    @Test func protocolNamesParse() {
        #expect(NoiseProtocol(name: "Noise_IK_25519_ChaChaPoly_SHA256")?.cipher == .chacha20poly1305)
        #expect(NoiseProtocol(name: "Noise_XX_448_AESGCM_SHA256") == nil)
        #expect(NoiseProtocol(name: "Noise_XX_25519_AESGCM_BLAKE2s") == nil)
        #expect(NoiseProtocol(name: "Noise_ZZ_25519_AESGCM_SHA256") == nil)
        #expect(NoisePattern.all.count == 38)
    }

    @Test func rekeyChangesTheKeyOnBothSides() throws {
        let a = NoiseCipherState(algorithm: .chacha20poly1305)
        let b = NoiseCipherState(algorithm: .chacha20poly1305)
        let k = try SecureRandom.bytes(32)
        try a.initializeKey(k)
        try b.initializeKey(k)
        try a.rekey()
        #expect(throws: CryptoError.authenticationFailed) {
            try b.decrypt(ad: [], ciphertext: try a.encrypt(ad: [], plaintext: [1]))
        }
        try b.rekey()
        b.nonce = 1
        #expect(try b.decrypt(ad: [], ciphertext: try a.encrypt(ad: [], plaintext: [2])) == [2])
    }
}
