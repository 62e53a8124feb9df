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
        #expect(auth.bytes.count == 180 && PathAuthorization.maxSize <= WireLimits.maxAuthorizationBytes)
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

    @Test func theRelayItNamesIsSignedAndOnlyThatRelayIsAllowed() throws {
        let named = try PathAuthorization.sign(
            processCode: .relay, pathID: 7, expires: 2_000_000_000, initiatorKey: a, responderKey: b,
            relayID: PathAuthorization.relayID(name: "trs1.cyphonic.internal"), with: signer)
        let read = try PathAuthorization(bytes: named.bytes)
        try read.verify(signer: signer.publicKey, pathID: 7, between: a, and: b, now: 1)
        #expect(read.allowsRelay(named: "trs1.cyphonic.internal") && read.allowsRelay(named: "TRS1.cyphonic.internal"))
        #expect(!read.allowsRelay(named: "trs2.cyphonic.internal"))
        // Naming another relay afterwards breaks the signature.
        var moved = read
        moved.relayID = PathAuthorization.relayID(name: "trs2.cyphonic.internal")
        #expect(throws: AuthorizationError.badSignature) { try moved.verify(signer: signer.publicKey, pathID: 7, between: a, and: b, now: 1) }
        // Without a name, any relay of the CA may carry it.
        #expect(try make().allowsRelay(named: "trs9.example"))
    }

    @Test func oneSignatureCoversABatchAndEachLeafOnlyItself() throws {
        let keys = (0..<5).map { [UInt8](repeating: UInt8($0 + 10), count: 32) }
        let batch = try PathAuthorization.signBatch(
            keys.enumerated().map { i, k in
                PathAuthorization(processCode: .direct, pathID: UInt64(100 + i), expires: 2_000_000_000, initiatorKey: a, responderKey: k)
            }, with: signer)
        #expect(Set(batch.map(\.signature)).count == 1 && batch.allSatisfy { $0.siblings.count == 3 })
        for (i, auth) in batch.enumerated() {
            let read = try PathAuthorization(bytes: auth.bytes)
            try read.verify(signer: signer.publicKey, pathID: UInt64(100 + i), between: a, and: keys[i], now: 1)
            // Another leaf's position or a changed sibling leads to another root.
            var moved = read
            moved.leafIndex = UInt8((i + 1) % 5)
            #expect(throws: AuthorizationError.badSignature) {
                try moved.verify(signer: signer.publicKey, pathID: UInt64(100 + i), between: a, and: keys[i], now: 1)
            }
            var bent = read
            bent.siblings[0][0] ^= 1
            #expect(throws: AuthorizationError.badSignature) {
                try bent.verify(signer: signer.publicKey, pathID: UInt64(100 + i), between: a, and: keys[i], now: 1)
            }
        }
        #expect(throws: AuthorizationError.malformed) { try PathAuthorization.signBatch([], with: signer) }
    }

    @Test func punchAuthenticatorsDependOnPathAndSender() throws {
        let auth = try make()
        #expect(auth.punchAuthenticator(senderNodeID: 1).count == HolePunch.authenticatorSize)
        #expect(auth.punchAuthenticator(senderNodeID: 1) != auth.punchAuthenticator(senderNodeID: 2))
        #expect(auth.punchAuthenticator(senderNodeID: 1) == (try PathAuthorization(bytes: auth.bytes)).punchAuthenticator(senderNodeID: 1))
    }
}
