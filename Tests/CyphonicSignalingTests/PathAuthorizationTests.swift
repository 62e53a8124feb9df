import CyphonicCrypto
import CyphonicSignaling
import CyphonicWire
import Testing

/// The NMS's route authorization: signed, bound to a path, two nodes and an expiry.
@Suite struct PathAuthorizationTests {
    let signer: Ed25519PrivateKey
    let a = [UInt8](repeating: 1, count: 32)
    let b = [UInt8](repeating: 2, count: 32)

    init() throws { signer = try Ed25519PrivateKey() }

    func make(expires: UInt64 = 2_000_000_000) throws -> PathAuthorization {
        try PathAuthorization.sign(processCode: .natTraversal, pathID: 42, expires: expires, initiatorKey: a, responderKey: b, with: signer)
    }

    @Test func roundTripsAndVerifiesForBothSides() throws {
        let auth = try make()
        #expect(auth.bytes.count == PathAuthorization.size && PathAuthorization.size <= WireLimits.maxAuthorizationBytes)
        let read = try PathAuthorization(bytes: auth.bytes)
        #expect(read == auth && read.processCode == .natTraversal)
        try read.verify(signer: signer.publicKey, pathID: 42, between: a, and: b, now: 1_000)
        try read.verify(signer: signer.publicKey, pathID: 42, between: b, and: a, now: 1_000)
    }

    @Test func everyFieldIsBound() throws {
        let auth = try make(expires: 5_000)
        #expect(throws: AuthorizationError.expired) { try auth.verify(signer: signer.publicKey, pathID: 42, between: a, and: b, now: 5_001) }
        #expect(throws: AuthorizationError.wrongPath) { try auth.verify(signer: signer.publicKey, pathID: 43, between: a, and: b, now: 1) }
        #expect(throws: AuthorizationError.wrongNodes) { try auth.verify(signer: signer.publicKey, pathID: 42, between: a, and: a, now: 1) }
        let other = try Ed25519PrivateKey()
        #expect(throws: AuthorizationError.badSignature) { try auth.verify(signer: other.publicKey, pathID: 42, between: a, and: b, now: 1) }
        // Flipping any byte breaks the signature (or the layout).
        for i in [1, 5, 12, 20, 60, 100, 145] {
            var bytes = auth.bytes
            bytes[i] ^= 0x01
            let tampered = try? PathAuthorization(bytes: bytes)
            #expect(tampered == nil || (try? tampered!.verify(signer: signer.publicKey, pathID: 42, between: a, and: b, now: 1)) == nil, "byte \(i)")
        }
        #expect(throws: AuthorizationError.malformed) { try PathAuthorization(bytes: Array(auth.bytes.dropLast())) }
    }

    @Test func punchAuthenticatorsDependOnPathAndSender() throws {
        let auth = try make()
        #expect(auth.punchAuthenticator(senderNodeID: 1).count == HolePunch.authenticatorSize)
        #expect(auth.punchAuthenticator(senderNodeID: 1) != auth.punchAuthenticator(senderNodeID: 2))
        #expect(auth.punchAuthenticator(senderNodeID: 1) == (try PathAuthorization(bytes: auth.bytes)).punchAuthenticator(senderNodeID: 1))
    }
}
