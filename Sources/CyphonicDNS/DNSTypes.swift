/// Resource record TYPE codes this resolver names (RFC 1035 §3.2.2, RFC 3596, RFC 6891).
/// Plain `UInt16` constants, so a query for any other type still parses and can be answered.
public enum DNSRecordType {
    public static let a: UInt16 = 1
    public static let ns: UInt16 = 2
    public static let cname: UInt16 = 5
    public static let soa: UInt16 = 6
    public static let ptr: UInt16 = 12
    public static let mx: UInt16 = 15
    public static let txt: UInt16 = 16
    public static let aaaa: UInt16 = 28
    public static let srv: UInt16 = 33
    public static let opt: UInt16 = 41
    public static let https: UInt16 = 65
    public static let any: UInt16 = 255
}

/// CLASS codes (RFC 1035 §3.2.4). Every record this module writes is of class IN.
public enum DNSRecordClass {
    public static let internet: UInt16 = 1
    public static let any: UInt16 = 255
}

/// The response codes a response from this module can carry in the header's low 4 bits
/// (RFC 1035 §4.1.1). BADVERS, which needs the OPT record, is written by
/// ``DNSResponse/make(for:rcode:answers:ttl:limit:)`` on its own.
public enum DNSRcode: UInt8, Sendable, CaseIterable {
    case noError = 0
    case formErr = 1
    case servFail = 2
    case nxDomain = 3
    case notImp = 4
    case refused = 5
}
