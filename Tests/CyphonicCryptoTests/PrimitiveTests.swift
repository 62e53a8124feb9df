import CyphonicCore
import Testing

@testable import CyphonicCrypto

@Suite struct PrimitiveTests {
    func h(_ s: String) -> [UInt8] { Hex.decode(s)! }

    @Test func sha256KnownAnswer() {
        #expect(Hex.encode(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hex.encode(SHA256.hash([UInt8]())) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func hmacRFC4231Case1() throws {
        let tag = try HMACSHA256.authenticate(key: [UInt8](repeating: 0x0b, count: 20), data: Array("Hi There".utf8))
        #expect(Hex.encode(tag) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    }

    @Test func hkdfRFC5869Cases1And3() throws {
        let ikm = [UInt8](repeating: 0x0b, count: 22)
        let okm1 = try HKDF.sha256(salt: h("000102030405060708090a0b0c"), ikm: ikm, info: h("f0f1f2f3f4f5f6f7f8f9"), outputLength: 42)
        #expect(Hex.encode(okm1) == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        let okm3 = try HKDF.sha256(salt: [], ikm: ikm, info: [], outputLength: 42)
        #expect(Hex.encode(okm3) == "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")
    }

    @Test func hkdfWithEmptyKeyEqualsHMACDefinition() throws {
        // Noise's Split uses a zero-length input key: check it against HKDF built from HMAC.
        let salt = try SecureRandom.bytes(32)
        let prk = try HMACSHA256.authenticate(key: salt, data: [UInt8]())
        let t1 = try HMACSHA256.authenticate(key: prk, data: [1])
        let t2 = try HMACSHA256.authenticate(key: prk, data: t1 + [2])
        #expect(try HKDF.sha256(salt: salt, ikm: [], info: [], outputLength: 64) == t1 + t2)
    }

    @Test func x25519RFC7748() throws {
        let alice = try X25519PrivateKey(rawRepresentation: h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let bob = try X25519PrivateKey(rawRepresentation: h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
        #expect(Hex.encode(alice.publicKey.bytes) == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        #expect(Hex.encode(bob.publicKey.bytes) == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        #expect(Hex.encode(try alice.sharedSecret(with: bob.publicKey).bytes) == shared)
        #expect(Hex.encode(try bob.sharedSecret(with: alice.publicKey).bytes) == shared)
    }

    @Test func x25519RefusesLowOrderPoint() throws {
        let zero = try X25519PublicKey(bytes: [UInt8](repeating: 0, count: 32))
        #expect(throws: CryptoError.weakPublicKey) { try X25519PrivateKey().sharedSecret(with: zero) }
        #expect(throws: CryptoError.invalidLength("X25519 public key 31 bytes")) { try X25519PublicKey(bytes: [UInt8](repeating: 1, count: 31)) }
    }

    @Test func ed25519RFC8032Test1() throws {
        let key = try Ed25519PrivateKey(seed: SecureBytes(h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")))
        #expect(Hex.encode(key.publicKey.bytes) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let sig = try key.signature(for: [])
        #expect(
            Hex.encode(sig)
                == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        #expect(key.publicKey.isValidSignature(sig, for: []))
        var bad = sig
        bad[0] ^= 1
        #expect(!key.publicKey.isValidSignature(bad, for: []))
        #expect(!key.publicKey.isValidSignature(sig, for: [0]))
        #expect(!key.publicKey.isValidSignature([1, 2], for: []))
    }

    @Test(arguments: AEADAlgorithm.allCases)
    func aeadRoundTripAndTamperDetection(_ algorithm: AEADAlgorithm) throws {
        let key = try AEADKey(algorithm, key: try SecureRandom.bytes(32))
        let aad: [UInt8] = [1, 2, 3]
        for size in [0, 1, 15, 16, 17, 1400, 9000] {
            let plain = try SecureRandom.bytes(size)
            let sealed = try key.seal(nonce: 42, aad: aad, plaintext: plain)
            #expect(sealed.count == size + 16)
            #expect(try key.open(nonce: 42, aad: aad, ciphertext: sealed) == plain)
            #expect(throws: CryptoError.authenticationFailed) { try key.open(nonce: 43, aad: aad, ciphertext: sealed) }
            #expect(throws: CryptoError.authenticationFailed) { try key.open(nonce: 42, aad: [1, 2], ciphertext: sealed) }
            for index in [0, sealed.count - 1] {
                var bad = sealed
                bad[index] ^= 0x80
                #expect(throws: CryptoError.authenticationFailed) { try key.open(nonce: 42, aad: aad, ciphertext: bad) }
            }
        }
        #expect(throws: CryptoError.self) { try key.open(nonce: 0, aad: [], ciphertext: [1, 2, 3]) }
        #expect(throws: CryptoError.invalidLength("AEAD key 16 bytes")) { try AEADKey(algorithm, key: [UInt8](repeating: 0, count: 16)) }
    }

    @Test func aeadSealInPlaceChecksCapacity() throws {
        let key = try AEADKey(.aes256gcm, key: try SecureRandom.bytes(32))
        var buf = [UInt8](repeating: 0, count: 20)
        #expect(throws: CryptoError.self) {
            try buf.withUnsafeMutableBytes { b in
                try key.seal(nonce: 0, aad: UnsafeRawBufferPointer(start: nil, count: 0), buffer: b, plaintextCount: 5)
            }
        }
    }

    @Test func separateKeyObjectsOfOneKeyInteroperate() throws {
        let raw = try SecureRandom.bytes(32)
        let a = try AEADKey(.chacha20poly1305, key: raw)
        let b = try AEADKey(.chacha20poly1305, key: raw)
        #expect(try b.open(nonce: 7, aad: [], ciphertext: try a.seal(nonce: 7, aad: [], plaintext: [5, 6])) == [5, 6])
    }

    @Test func constantTimeEquality() {
        #expect(ConstantTime.equal([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equal([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equal([1, 2, 3], [1, 2]))
        #expect(ConstantTime.equal([UInt8](), [UInt8]()))
    }

    @Test func secureBytesWipe() throws {
        let s = try SecureBytes.random(count: 32)
        #expect(!s.isZero)
        s.wipe()
        #expect(s.isZero)
        #expect(try SecureRandom.bytes(16) != (try SecureRandom.bytes(16)))
    }

    @Test func opensslErrorsNameTheFunction() throws {
        do {
            _ = try HKDF.sha256(salt: [1], ikm: [1], info: [], outputLength: 0)
            Issue.record("expected an error")
        } catch {
            #expect(error as? CryptoError == .invalidLength("HKDF output 0"))
        }
        let e = CryptoError.fromQueue("EVP_Test")
        #expect(e.description.hasPrefix("EVP_Test failed"))
    }
}

@Suite struct PasswordHashTests {
    @Test func pbkdf2HMACSHA256KnownAnswer() throws {
        // PBKDF2-HMAC-SHA256, P = "password", S = "salt", c = 1, dkLen = 32.
        let out = try PasswordHash.derive(secret: Array("password".utf8), salt: Array("salt".utf8), iterations: 1)
        #expect(Hex.encode(out) == "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b")
    }

    @Test func verifyIsExact() throws {
        let salt = try SecureRandom.bytes(16)
        let h = try PasswordHash.derive(secret: Array("tok".utf8), salt: salt, iterations: 1000)
        #expect(PasswordHash.verify(secret: Array("tok".utf8), salt: salt, iterations: 1000, expected: h))
        #expect(!PasswordHash.verify(secret: Array("tok2".utf8), salt: salt, iterations: 1000, expected: h))
        #expect(!PasswordHash.verify(secret: Array("tok".utf8), salt: salt, iterations: 1001, expected: h))
        #expect(throws: CryptoError.self) { try PasswordHash.derive(secret: [1], salt: [], iterations: 1) }
    }
}
