import Testing

@testable import CyphonicDNS

@Suite struct ResponseTests {
    @Test func aResponseReadsBackFieldByField() throws {
        let q = try DNSQuery.parse(Captured.digA)
        let bytes = DNSResponse.make(for: q, rcode: .noError, answers: [.a([198, 18, 0, 7]), .a([198, 18, 0, 8])], ttl: 30, limit: 1232)
        let r = try ReadResponse(bytes)
        #expect(r.id == 0x8f3a)
        #expect(r.qr && r.aa && r.rd && r.ra)
        #expect(!r.tc && !r.cd)
        #expect(r.opcode == 0 && r.rcode == 0)
        #expect(r.flags & 0x0060 == 0)  // Z and AD clear
        #expect(r.counts == [1, 2, 0, 1])
        #expect(r.questionName == wireName("responder.cyphonic.internal"))
        #expect(r.questionType == 1 && r.questionClass == 1)
        #expect(r.answers.map(\.owner) == [[0xc0, 0x0c], [0xc0, 0x0c]])
        #expect(r.answers.map(\.type) == [1, 1])
        #expect(r.answers.map(\.rclass) == [1, 1])
        #expect(r.answers.map(\.ttl) == [30, 30])
        #expect(r.answers.map(\.data) == [[198, 18, 0, 7], [198, 18, 0, 8]])
        let opt = try #require(r.additional.first)
        #expect(opt.owner == [0])
        #expect(opt.type == 41 && opt.rclass == 1232 && opt.ttl == 0 && opt.data.isEmpty)
        #expect(bytes.count == 12 + 29 + 4 + 2 * 16 + 11)
    }

    @Test func aaaaResponseReadsBackFieldByField() throws {
        let q = try DNSQuery.parse(Captured.glibcAAAA)
        let address: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0xc0, 0xff, 0x00, 0xee, 0, 0, 0, 0, 0, 0, 0, 1]
        let r = try ReadResponse(DNSResponse.make(for: q, rcode: .noError, answers: [.aaaa(address)], ttl: 0x8000_0000, limit: 512))
        #expect(r.id == 0x4d21)
        #expect(r.counts == [1, 1, 0, 0])
        #expect(r.additional.isEmpty)  // no OPT in the query, none in the response
        #expect(r.questionName == wireName("node01.cyphonic.internal"))
        #expect(r.questionType == 28)
        let answer = try #require(r.answers.first)
        #expect(answer.owner == [0xc0, 0x0c])
        #expect(answer.type == 28 && answer.rclass == 1)
        #expect(answer.ttl == 0x7fff_ffff)  // RFC 2181 §8 cap
        #expect(answer.data == address)
    }

    @Test func rcodesAndFlags() throws {
        var q = try DNSQuery.parse(Captured.glibcAAAA)
        q.recursionDesired = false
        q.checkingDisabled = true
        let nx = try ReadResponse(DNSResponse.make(for: q, rcode: .nxDomain, answers: [], ttl: 0, limit: 512))
        #expect(nx.rcode == 3 && nx.aa && !nx.rd && nx.cd && nx.ra)
        #expect(nx.counts == [1, 0, 0, 0])
        let refused = try ReadResponse(DNSResponse.make(for: q, rcode: .refused, answers: [], ttl: 0, limit: 512))
        #expect(refused.rcode == 5 && !refused.aa)
        // An answer of the wrong length is left out, never written wrong.
        let odd = try ReadResponse(DNSResponse.make(for: q, rcode: .noError, answers: [.a([1, 2, 3]), .aaaa([1])], ttl: 1, limit: 512))
        #expect(odd.answers.isEmpty && !odd.tc)
    }

    @Test func answersBeyond512AreLeftOutWithTC() throws {
        let q = try DNSQuery.parse(Captured.glibcAAAA)
        let answers = (0..<40).map { i in DNSAnswer.aaaa([0xfd] + [UInt8](repeating: 0, count: 14) + [UInt8(i)]) }
        let udp = DNSResponse.make(for: q, rcode: .noError, answers: answers, ttl: 60, limit: 512)
        #expect(udp.count <= 512)
        let r = try ReadResponse(udp)
        #expect(r.tc)
        // 12 + 30 + 4 = 46 bytes before the answers; (512 - 46) / 28 = 16 answers fit.
        #expect(r.answers.count == 16)
        #expect(r.answers.last?.data.last == 15)
        let tcp = try ReadResponse(DNSResponse.make(for: q, rcode: .noError, answers: answers, ttl: 60, limit: 65_535))
        #expect(!tcp.tc && tcp.answers.count == 40)
        // A limit under 512 counts as 512; the OPT record is kept room for.
        #expect(try ReadResponse(DNSResponse.make(for: q, rcode: .noError, answers: answers, ttl: 60, limit: 0)).answers.count == 16)
        let edns = try DNSQuery.parse(Captured.digA)
        let small = try ReadResponse(DNSResponse.make(for: edns, rcode: .noError, answers: answers, ttl: 60, limit: 512))
        #expect(small.tc && small.additional.count == 1)
        #expect(small.answers.count == (512 - 12 - 33 - 11) / 28)
    }

    @Test func badEDNSVersionGetsBADVERS() throws {
        let base = header(id: 3, flags: 0x0100, ar: 1) + wireName("x.y") + [0, 1, 0, 1]
        let q = try DNSQuery.parse(base + [0, 0, 41, 0x04, 0xd0, 0, 1, 0, 0, 0, 0])
        let r = try ReadResponse(DNSResponse.make(for: q, rcode: .noError, answers: [.a([1, 1, 1, 1])], ttl: 9, limit: 1232))
        #expect(r.rcode == 0 && r.answers.isEmpty && !r.aa)
        let opt = try #require(r.additional.first)
        #expect(opt.ttl >> 24 == 1)  // extended rcode 1 << 4 | 0 = 16 = BADVERS
        #expect(opt.ttl >> 16 & 0xff == 0)  // we speak version 0
    }

    @Test func formatErrorAnswersQueriesOnly() throws {
        // Garbage behind a good header: FORMERR with the id echoed and no sections.
        let garbage = header(id: 0xbeef, flags: 0x0100, qd: 7) + [0xff, 0xfe, 0xfd]
        #expect(throws: DNSParseError.self) { try DNSQuery.parse(garbage) }
        let formErr = try #require(DNSResponse.formatError(for: garbage))
        let r = try #require(formErr.count == 12 ? formErr : nil)
        #expect(Array(r[0..<2]) == [0xbe, 0xef])
        #expect(r[2] == 0x81 && r[3] == 0x81)  // QR, RD copied; RA, FORMERR
        #expect(Array(r[4...]) == [UInt8](repeating: 0, count: 8))
        #expect(garbage.withUnsafeBytes { DNSResponse.formatError(for: $0) } == formErr)
        // Nothing to answer: too short, or a response.
        #expect(DNSResponse.formatError(for: Array(garbage.prefix(11))) == nil)
        #expect(DNSResponse.formatError(for: []) == nil)
        var response = garbage
        response[2] |= 0x80
        #expect(DNSResponse.formatError(for: response) == nil)
        #expect(DNSResponse.errorResponse(for: response, rcode: .notImp) == nil)
    }

    @Test func notImpEchoesTheOpcode() throws {
        var status = Captured.glibcAAAA
        status[2] = 0x10  // opcode 2
        #expect(throws: DNSParseError.unsupportedOpcode(2)) { try DNSQuery.parse(status) }
        let notImp = try #require(DNSResponse.errorResponse(for: status, rcode: .notImp))
        #expect(notImp == [0x4d, 0x21, 0x90, 0x84, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func forwardingHelpers() {
        let q = Captured.glibcAAAA
        #expect(DNSMessage.id(of: q) == 0x4d21)
        #expect(DNSMessage.id(of: Array(q.prefix(11))) == nil)
        let swapped = DNSMessage.replacingID(q, with: 0x0102)
        #expect(DNSMessage.id(of: swapped) == 0x0102)
        #expect(Array(swapped[2...]) == Array(q[2...]))
        #expect(DNSMessage.replacingID(swapped, with: 0x4d21) == q)
        #expect(DNSMessage.replacingID([1, 2, 3], with: 9) == [1, 2, 3])
        #expect(!DNSMessage.isResponse(q))
        #expect(DNSMessage.isResponse(DNSResponse.formatError(for: q) ?? []))
        #expect(!DNSMessage.isResponse([0, 0, 0x80]))
    }

    @Test func constructedQueryAnswersLikeAParsedOne() throws {
        let parsed = try DNSQuery.parse(Captured.glibcAAAA)
        let built = DNSQuery(id: 0x4d21, question: DNSQuestion(name: "node01.cyphonic.internal", type: DNSRecordType.aaaa))
        #expect(built == parsed)
        let answers: [DNSAnswer] = [.aaaa([UInt8](repeating: 0xfd, count: 16))]
        #expect(
            DNSResponse.make(for: built, rcode: .noError, answers: answers, ttl: 1, limit: 512)
                == DNSResponse.make(for: parsed, rcode: .noError, answers: answers, ttl: 1, limit: 512))
    }
}
