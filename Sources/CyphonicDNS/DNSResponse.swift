/// One address record of an answer, owned by the question name, class IN. An `a` holds
/// exactly 4 bytes and an `aaaa` exactly 16; one of any other length is left out of a
/// response (``isWellFormed``) rather than written wrong.
public enum DNSAnswer: Equatable, Sendable {
    case a([UInt8])
    case aaaa([UInt8])

    public var type: UInt16 {
        switch self {
        case .a: return DNSRecordType.a
        case .aaaa: return DNSRecordType.aaaa
        }
    }

    public var address: [UInt8] {
        switch self {
        case .a(let bytes), .aaaa(let bytes): return bytes
        }
    }

    public var isWellFormed: Bool { address.count == (type == DNSRecordType.a ? 4 : 16) }

    /// Pointer to the question name (2), type, class, TTL, length (10), address.
    var recordSize: Int { 12 + address.count }
}

/// Builds responses. Never traps and never writes more than the limit it is given (at most
/// 65535 bytes). Only queries are answered: ``errorResponse(for:rcode:)``
/// returns nil for a response (QR=1) so two servers can never bounce errors off each other.
public enum DNSResponse {
    /// The UDP payload size advertised in the OPT record of every response to an EDNS query
    /// (the DNS flag day 2020 value: no IP fragmentation on common paths).
    public static let ednsUDPSize: UInt16 = 1232
    /// An empty-rdata OPT record: root owner (1), type, class, TTL, length (10).
    static let optRecordSize = 11

    /// A response to `query`: the question echoed (its name exactly as the client wrote it),
    /// `answers` each with `ttl` (capped at 2^31 − 1, RFC 2181 §8) as records of the
    /// question name (a pointer to it), RA set, RD and CD copied, AA set for NOERROR and
    /// NXDOMAIN (the server answers only for its own names), `rcode` in the low 4 bits, and
    /// an OPT record (UDP size 1232) when the query had one. `limit`: the largest message
    /// allowed (512 or the query's EDNS size for UDP, 65535 for TCP), taken into 512...65535;
    /// answers that do not fit (with the OPT record) are left out, from the first that does
    /// not, and TC is set. A query of an EDNS version other than 0 gets BADVERS (RFC 6891
    /// §6.1.3) instead: no answers, rcode 16 split between header and OPT.
    public static func make(for query: DNSQuery, rcode: DNSRcode, answers: [DNSAnswer], ttl: UInt32, limit: Int) -> [UInt8] {
        let limit = min(max(limit, DNSQuery.minUDPPayload), DNSQuery.maxMessageSize)
        let hasOPT = query.ednsUDPSize != nil
        let badVersion = hasOPT && query.ednsVersion != 0
        var flags = DNSHeader.qr | DNSHeader.ra
        if query.recursionDesired { flags |= DNSHeader.rd }
        if query.checkingDisabled { flags |= DNSHeader.cd }
        if !badVersion {
            flags |= UInt16(rcode.rawValue)
            if rcode == .noError || rcode == .nxDomain { flags |= DNSHeader.aa }
        }
        let wanted = badVersion ? [] : answers.filter(\.isWellFormed)
        let reserved = hasOPT ? optRecordSize : 0
        var w = DNSWriter(capacity: min(limit, 512))
        w.raw([UInt8](repeating: 0, count: DNSHeader.size))
        w.raw(query.questionWire)
        w.u16(query.question.type)
        w.u16(query.question.qclass)
        var written: UInt16 = 0
        for answer in wanted {
            guard w.count + answer.recordSize + reserved <= limit else {
                flags |= DNSHeader.tc
                break
            }
            w.u16(0xc000 | UInt16(DNSHeader.size))
            w.u16(answer.type)
            w.u16(DNSRecordClass.internet)
            w.u32(min(ttl, 0x7fff_ffff))
            w.u16(UInt16(answer.address.count))
            w.raw(answer.address)
            written &+= 1
        }
        if hasOPT {
            w.u8(0)
            w.u16(DNSRecordType.opt)
            w.u16(ednsUDPSize)
            w.u32(badVersion ? 1 << 24 : 0)  // extended rcode (high 8 bits of 12), version 0, flags 0
            w.u16(0)
        }
        let header = DNSHeader(id: query.id, flags: flags, counts: (1, written, 0, hasOPT ? 1 : 0))
        for (offset, field) in header.bytes.enumerated() { w.set8(field, at: offset) }
        return w.bytes
    }

    /// FORMERR for a message whose 12-byte header could be read and that is a query (QR=0):
    /// the id echoed, no sections. nil when there is nothing to answer (shorter than a
    /// header, or QR=1: never answer a response, no loops).
    public static func formatError(for bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        errorResponse(for: bytes, rcode: .formErr)
    }

    public static func formatError(for bytes: [UInt8]) -> [UInt8]? {
        bytes.withUnsafeBytes { formatError(for: $0) }
    }

    /// A header-only response with `rcode` (e.g. NOTIMP for an unsupported opcode) to a
    /// message whose header could be read and that is a query: id, opcode and RD echoed,
    /// RA set, no sections. nil for fewer than 12 bytes or a response (QR=1).
    public static func errorResponse(for bytes: UnsafeRawBufferPointer, rcode: DNSRcode) -> [UInt8]? {
        guard let query = DNSHeader(bytes), !query.isResponse else { return nil }
        let opcode = query.flags & 0x7800
        let flags = DNSHeader.qr | opcode | (query.flags & DNSHeader.rd) | DNSHeader.ra | UInt16(rcode.rawValue)
        return DNSHeader(id: query.id, flags: flags).bytes
    }

    public static func errorResponse(for bytes: [UInt8], rcode: DNSRcode) -> [UInt8]? {
        bytes.withUnsafeBytes { errorResponse(for: $0, rcode: rcode) }
    }
}
