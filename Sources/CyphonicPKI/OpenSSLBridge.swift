import CCyphonicOpenSSL
import CyphonicCrypto

#if canImport(Glibc)
import Glibc
#endif

/// Captures OpenSSL's error queue as a ``PKIError``.
func opensslError(_ function: String) -> PKIError {
    if case .openssl(let f, let r) = CryptoError.fromQueue(function) { return .openssl(function: f, reason: r) }
    return .openssl(function: function, reason: "unknown")
}

@inline(__always)
func pkiCheck(_ result: Int32, _ function: String) throws(PKIError) {
    if result != 1 { throw opensslError(function) }
}

/// Reads everything written to a memory BIO.
func bioContents(_ bio: OpaquePointer) -> [UInt8] {
    var data: UnsafeMutablePointer<CChar>?
    let n = ccy_bio_mem_data(bio, &data)
    guard n > 0, let data else { return [] }
    return Array(UnsafeRawBufferPointer(start: data, count: n))
}

/// Runs `body` with a read-only memory BIO over `bytes`.
func withReadBIO<R>(_ bytes: [UInt8], _ body: (OpaquePointer) throws(PKIError) -> R) throws(PKIError) -> R {
    let bio: OpaquePointer? = bytes.withUnsafeBytes { BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }
    guard let bio else { throw opensslError("BIO_new_mem_buf") }
    defer { BIO_free(bio) }
    return try body(bio)
}

/// Runs `body` with a writable memory BIO and returns what it wrote.
func writeBIO(_ body: (OpaquePointer) -> Int32, _ function: String) throws(PKIError) -> [UInt8] {
    guard let bio = BIO_new(BIO_s_mem()) else { throw opensslError("BIO_new") }
    defer { BIO_free(bio) }
    guard body(bio) == 1 else { throw opensslError(function) }
    return bioContents(bio)
}

/// A fresh ASN1_TIME for unix time `t` (caller frees).
func asn1Time(_ t: Int64) throws(PKIError) -> UnsafeMutablePointer<ASN1_TIME> {
    guard let tm = ASN1_TIME_set(nil, time_t(t)) else { throw opensslError("ASN1_TIME_set") }
    return tm
}

/// Unix seconds of an ASN1_TIME, nil if unreadable.
func unixTime(_ t: UnsafePointer<ASN1_TIME>?) -> Int64? {
    guard let t else { return nil }
    var parts = tm()
    guard ASN1_TIME_to_tm(t, &parts) == 1 else { return nil }
    return Int64(timegm(&parts))
}

/// A fresh ASN1_INTEGER holding `v` (caller frees).
func asn1Integer(_ v: UInt64) throws(PKIError) -> UnsafeMutablePointer<ASN1_INTEGER> {
    guard let i = ASN1_INTEGER_new() else { throw opensslError("ASN1_INTEGER_new") }
    guard ASN1_INTEGER_set_uint64(i, v) == 1 else {
        ASN1_INTEGER_free(i)
        throw opensslError("ASN1_INTEGER_set_uint64")
    }
    return i
}

/// The current unix time in seconds.
public func unixNow() -> Int64 { Int64(time(nil)) }
