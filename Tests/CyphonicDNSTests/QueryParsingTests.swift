import Testing

@testable import CyphonicDNS

@Suite struct QueryParsingTests {
    @Test func digQueryWithCookieParses() throws {
        let q = try DNSQuery.parse(Captured.digA)
        #expect(q.id == 0x8f3a)
        #expect(q.recursionDesired)
        #expect(!q.checkingDisabled)
        #expect(q.question == DNSQuestion(name: "responder.cyphonic.internal", type: DNSRecordType.a, qclass: 1))
        #expect(q.ednsUDPSize == 1232)
        #expect(q.ednsVersion == 0)
        #expect(q.questionWire == wireName("responder.cyphonic.internal"))
        // The UnsafeRawBufferPointer entry point gives the same.
        #expect(Captured.digA.withUnsafeBytes { try? DNSQuery.parse($0) } == q)
    }

    @Test func glibcQueryWithoutOPTParses() throws {
        let q = try DNSQuery.parse(Captured.glibcAAAA)
        #expect(q.id == 0x4d21)
        #expect(q.recursionDesired)
        #expect(q.question.name == "node01.cyphonic.internal")
        #expect(q.question.type == DNSRecordType.aaaa)
        #expect(q.ednsUDPSize == nil)
        #expect(q == DNSQuery(id: 0x4d21, question: DNSQuestion(name: "node01.cyphonic.internal", type: 28)))
    }

    @Test func headerRulesAreEnforced() {
        var response = Captured.glibcAAAA
        response[2] |= 0x80
        #expect(throws: DNSParseError.notAQuery) { try DNSQuery.parse(response) }
        var status = Captured.glibcAAAA
        status[2] = 0x10 | 0x01  // opcode 2 (STATUS), RD
        #expect(throws: DNSParseError.unsupportedOpcode(2)) { try DNSQuery.parse(status) }
        var none = Captured.glibcAAAA
        none[5] = 0
        #expect(throws: DNSParseError.questionCount(0)) { try DNSQuery.parse(none) }
        var two = Captured.glibcAAAA
        two[5] = 2
        let question = Array(Captured.glibcAAAA[12...])
        #expect(throws: DNSParseError.questionCount(2)) { try DNSQuery.parse(two + question) }
        #expect(throws: DNSParseError.tooShort) { try DNSQuery.parse(Array(Captured.glibcAAAA.prefix(11))) }
        #expect(throws: DNSParseError.tooShort) { try DNSQuery.parse([]) }
        #expect(throws: DNSParseError.oversized) { try DNSQuery.parse(Captured.digA + [UInt8](repeating: 0, count: 65_536)) }
        #expect(throws: DNSParseError.truncatedRecord) { try DNSQuery.parse(Array(Captured.glibcAAAA.dropLast())) }
        #expect(throws: DNSParseError.truncatedName) { try DNSQuery.parse(Array(Captured.glibcAAAA.prefix(20))) }
    }

    @Test func checkingDisabledAndRDAreRead() throws {
        var q = Captured.glibcAAAA
        q[2] = 0
        q[3] = 0x10
        let parsed = try DNSQuery.parse(q)
        #expect(!parsed.recursionDesired)
        #expect(parsed.checkingDisabled)
    }

    @Test func otherSectionsAreSteppedOverAndTrailingBytesIgnored() throws {
        // One answer and one authority record (a compressed owner), then the OPT record.
        let record: [UInt8] = [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]
        let opt: [UInt8] = [0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]
        let q = header(id: 7, flags: 0x0100, an: 1, ns: 1, ar: 1) + wireName("a.b") + [0, 1, 0, 1] + record + record + opt
        let parsed = try DNSQuery.parse(q + [0xde, 0xad])
        #expect(parsed.question.name == "a.b")
        #expect(parsed.ednsUDPSize == 4096)
        #expect(throws: DNSParseError.truncatedRecord) { try DNSQuery.parse(Array(q.dropLast(12))) }
        let tooMany = header(id: 7, flags: 0, an: 0xffff) + wireName("a.b") + [0, 1, 0, 1] + record
        #expect(throws: DNSParseError.truncatedName) { try DNSQuery.parse(tooMany) }
    }

    @Test func ednsRulesAreEnforced() throws {
        let base = header(id: 1, flags: 0x0100, ar: 1) + wireName("x.y") + [0, 1, 0, 1]
        // A UDP size under 512 counts as 512.
        #expect(try DNSQuery.parse(base + [0, 0, 41, 0x01, 0x00, 0, 0, 0, 0, 0, 0]).ednsUDPSize == 512)
        // Version 1 is kept for BADVERS; the DO bit is accepted.
        let v1 = try DNSQuery.parse(base + [0, 0, 41, 0x04, 0xd0, 0, 1, 0x80, 0, 0, 0])
        #expect(v1.ednsVersion == 1)
        // Two OPT records, an OPT not owned by the root, options past the data: FORMERR.
        var two = header(id: 1, flags: 0x0100, ar: 2) + wireName("x.y") + [0, 1, 0, 1]
        two += [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0] + [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]
        #expect(throws: DNSParseError.badOPT) { try DNSQuery.parse(two) }
        #expect(throws: DNSParseError.badOPT) { try DNSQuery.parse(base + [1, 0x61, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]) }
        #expect(throws: DNSParseError.badOPT) {
            try DNSQuery.parse(base + [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 5, 0, 10, 0, 8, 1])
        }
        // Another additional record (say a TSIG) is stepped over.
        let other =
            header(id: 1, flags: 0x0100, ar: 2) + wireName("x.y") + [0, 1, 0, 1]
            + [0, 0, 250, 0, 255, 0, 0, 0, 0, 0, 2, 9, 9] + [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]
        #expect(try DNSQuery.parse(other).ednsUDPSize == 1232)
    }

    @Test func rootQuestionIsTheEmptyName() throws {
        let q = try DNSQuery.parse(header(id: 2, flags: 0x0100) + [0, 0, 2, 0, 1])
        #expect(q.question.name == "")
        #expect(q.questionWire == [0])
    }

    @Test func errorLabelsAreSnakeCaseWithoutValues() {
        let errors: [DNSParseError] = [
            .tooShort, .oversized, .notAQuery, .unsupportedOpcode(5), .questionCount(3), .truncatedName, .nameTooLong,
            .labelTooLong, .badLabelType, .pointerLoop, .truncatedRecord, .badOPT, .badNameText, .zeroLengthFrame,
        ]
        for error in errors {
            #expect(error.label.allSatisfy { $0 == "_" || ("a"..."z").contains($0) }, "\(error)")
        }
        #expect(Set(errors.map(\.label)).count == errors.count)
        #expect(DNSParseError.unsupportedOpcode(5).description == "unsupported_opcode(5)")
        #expect(DNSParseError.questionCount(3).label == "question_count")
    }
}
