/// The one question of a query (RFC 1035 §4.1.2). `name` is the canonical text of
/// ``DNSName``: lower-cased ASCII, no trailing dot, "" for the root, odd bytes as `\DDD`.
public struct DNSQuestion: Equatable, Sendable {
    public var name: String
    public var type: UInt16
    public var qclass: UInt16

    public init(name: String, type: UInt16, qclass: UInt16 = DNSRecordClass.internet) {
        self.name = name
        self.type = type
        self.qclass = qclass
    }
}

/// A standard query (QR=0, opcode QUERY) with exactly one question, as the resolver needs
/// it. ``parse(_:)`` checks every length and never traps; it also keeps the
/// question name's wire bytes as the client sent them (case included, for 0x20 randomisation)
/// so a response echoes them exactly. Two queries are equal only if those bytes are too.
public struct DNSQuery: Equatable, Sendable {
    /// The largest DNS message (TCP's 2-byte length).
    public static let maxMessageSize = 65_535
    /// The smallest UDP payload every requester accepts, and the floor of ``ednsUDPSize``.
    public static let minUDPPayload = 512

    public var id: UInt16
    public var recursionDesired: Bool
    public var checkingDisabled: Bool
    /// Changing `question.name` re-derives the echoed wire name from the new text.
    public var question: DNSQuestion {
        didSet {
            if question.name != oldValue.name { questionWire = Self.wire(for: question.name) }
        }
    }
    /// The EDNS OPT record of the query, if any: the requester's UDP payload size (at least 512).
    public var ednsUDPSize: UInt16?
    /// The question name in uncompressed wire form, in the case the client wrote it.
    package internal(set) var questionWire: [UInt8]
    /// The EDNS version of the OPT record (meaningful only when ``ednsUDPSize`` is set).
    package internal(set) var ednsVersion: UInt8

    /// A query whose question name is encoded from `question.name` (see
    /// ``DNSName/wire(fromText:)``); a name that cannot be encoded is echoed as the root.
    public init(id: UInt16, recursionDesired: Bool = true, checkingDisabled: Bool = false, question: DNSQuestion, ednsUDPSize: UInt16? = nil) {
        self.init(
            id: id, recursionDesired: recursionDesired, checkingDisabled: checkingDisabled, question: question,
            questionWire: Self.wire(for: question.name), ednsUDPSize: ednsUDPSize, ednsVersion: 0)
    }

    private init(
        id: UInt16, recursionDesired: Bool, checkingDisabled: Bool, question: DNSQuestion, questionWire: [UInt8],
        ednsUDPSize: UInt16?, ednsVersion: UInt8
    ) {
        self.id = id
        self.recursionDesired = recursionDesired
        self.checkingDisabled = checkingDisabled
        self.question = question
        self.questionWire = questionWire
        self.ednsUDPSize = ednsUDPSize
        self.ednsVersion = ednsVersion
    }

    private static func wire(for name: String) -> [UInt8] { (try? DNSName.wire(fromText: name)) ?? [0] }

    public static func parse(_ bytes: [UInt8]) throws(DNSParseError) -> DNSQuery {
        try bytes.withUnsafeBytes { raw in Result { () throws(DNSParseError) in try parse(raw) } }.get()
    }

    /// Parses a query: a header with QR=0, opcode 0 and QDCOUNT 1; the question; answer and
    /// authority records stepped over unread; additional records walked for the one OPT
    /// record. Bytes after the last record are ignored.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(DNSParseError) -> DNSQuery {
        guard bytes.count <= maxMessageSize else { throw .oversized }
        guard let header = DNSHeader(bytes) else { throw .tooShort }
        guard !header.isResponse else { throw .notAQuery }
        guard header.opcode == 0 else { throw .unsupportedOpcode(header.opcode) }
        guard header.questionCount == 1 else { throw .questionCount(Int(header.questionCount)) }
        let (wire, end) = try DNSName.read(bytes, at: DNSHeader.size)
        var cursor = DNSCursor(bytes, offset: end)
        let question = DNSQuestion(
            name: DNSName.text(fromWire: wire), type: try cursor.u16(or: .truncatedRecord),
            qclass: try cursor.u16(or: .truncatedRecord))
        // Every record takes at least 11 bytes, so these loops end with the message.
        for _ in 0..<(Int(header.answerCount) + Int(header.authorityCount)) {
            _ = try Record.read(&cursor)
        }
        var edns: (size: UInt16, version: UInt8)? = nil
        for _ in 0..<Int(header.additionalCount) {
            let record = try Record.read(&cursor)
            guard record.type == DNSRecordType.opt else { continue }
            guard edns == nil, record.ownerIsRoot else { throw .badOPT }
            try checkOptions(bytes, record.data)
            edns = (max(record.rclass, UInt16(minUDPPayload)), UInt8(truncatingIfNeeded: record.ttl >> 16))
        }
        return DNSQuery(
            id: header.id, recursionDesired: header.has(DNSHeader.rd), checkingDisabled: header.has(DNSHeader.cd),
            question: question, questionWire: wire, ednsUDPSize: edns?.size, ednsVersion: edns?.version ?? 0)
    }

    /// EDNS options (RFC 6891 §6.1.2) are code, length, data; they must fill the data exactly.
    private static func checkOptions(_ bytes: UnsafeRawBufferPointer, _ data: Range<Int>) throws(DNSParseError) {
        var cursor = DNSCursor(UnsafeRawBufferPointer(rebasing: bytes[data]), offset: 0)
        while cursor.remaining > 0 {
            _ = try cursor.u16(or: .badOPT)
            let length = try cursor.u16(or: .badOPT)
            try cursor.skip(Int(length), or: .badOPT)
        }
    }

    /// The fixed fields of one resource record and where its data lies, its owner stepped over.
    private struct Record {
        var ownerIsRoot: Bool
        var type: UInt16
        var rclass: UInt16
        var ttl: UInt32
        var data: Range<Int>

        static func read(_ cursor: inout DNSCursor) throws(DNSParseError) -> Record {
            let start = cursor.offset
            let end = try DNSName.skip(cursor.bytes, at: start)
            try cursor.skip(end - start, or: .truncatedName)
            let type = try cursor.u16(or: .truncatedRecord)
            let rclass = try cursor.u16(or: .truncatedRecord)
            let ttl = try cursor.u32(or: .truncatedRecord)
            let length = Int(try cursor.u16(or: .truncatedRecord))
            let dataStart = cursor.offset
            try cursor.skip(length, or: .truncatedRecord)
            return Record(
                ownerIsRoot: end == start + 1, type: type, rclass: rclass, ttl: ttl, data: dataStart..<(dataStart + length))
        }
    }
}
