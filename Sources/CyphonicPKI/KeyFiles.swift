import CCyphonicOpenSSL
import CyphonicCrypto

/// PEM (PKCS#8) encoding of private keys for storage in files of mode 0600.
public enum KeyFiles {
    /// Unencrypted PKCS#8 PEM of an Ed25519 key (the CA key).
    public static func pem(_ key: Ed25519PrivateKey) throws(PKIError) -> String {
        String(
            decoding: try writeBIO(
                { PEM_write_bio_PrivateKey($0, key.pkey, nil, nil, 0, nil, nil) },
                "PEM_write_bio_PrivateKey"), as: UTF8.self)
    }

    /// Unencrypted PKCS#8 PEM of an X25519 key (a node's or service's static key).
    public static func pem(_ key: X25519PrivateKey) throws(PKIError) -> String {
        String(
            decoding: try writeBIO(
                { PEM_write_bio_PrivateKey($0, key.pkey, nil, nil, 0, nil, nil) },
                "PEM_write_bio_PrivateKey"), as: UTF8.self)
    }

    private static func readRaw(_ pem: String, type: Int32, what: String) throws(PKIError) -> SecureBytes {
        let pkey = try withReadBIO(Array(pem.utf8)) { bio in PEM_read_bio_PrivateKey(bio, nil, nil, nil) }
        guard let pkey else {
            ERR_clear_error()
            throw .malformed("no PEM private key")
        }
        defer { EVP_PKEY_free(pkey) }
        guard EVP_PKEY_get_base_id(pkey) == type else { throw .wrongKeyType("expected \(what)") }
        var raw = [UInt8](repeating: 0, count: 32)
        var len = 32
        defer { OPENSSL_cleanse(&raw, 32) }
        try pkiCheck(EVP_PKEY_get_raw_private_key(pkey, &raw, &len), "EVP_PKEY_get_raw_private_key")
        return SecureBytes(raw)
    }

    public static func ed25519(pem: String) throws -> Ed25519PrivateKey {
        try Ed25519PrivateKey(seed: try readRaw(pem, type: EVP_PKEY_ED25519, what: "an Ed25519 key"))
    }

    public static func x25519(pem: String) throws -> X25519PrivateKey {
        try X25519PrivateKey(rawRepresentation: try readRaw(pem, type: EVP_PKEY_X25519, what: "an X25519 key"))
    }
}
