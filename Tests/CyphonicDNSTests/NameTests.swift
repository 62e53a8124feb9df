import Testing

@testable import CyphonicDNS

@Suite struct NameTests {
    /// A query for `name` (wire bytes as given), type A.
    func query(_ name: [UInt8]) -> [UInt8] { header(id: 9, flags: 0x0100) + name + [0, 1, 0, 1] }

    @Test func pointerLoopsAndForwardPointersAreRefused() {
        // A pointer to itself.
        #expect(throws: DNSParseError.pointerLoop) { try DNSQuery.parse(query([0xc0, 0x0c])) }
        // A label, then a pointer back to that label: the pointer does not point before the labels it ends.
        #expect(throws: DNSParseError.pointerLoop) { try DNSQuery.parse(query([1, 0x61, 0xc0, 0x0c])) }
        // A forward pointer.
        #expect(throws: DNSParseError.pointerLoop) { try DNSQuery.parse(query([0xc0, 0x0e, 1, 0x61, 0])) }
        // The question points into the header, where the id 0xc000 is a pointer to itself.
        #expect(throws: DNSParseError.pointerLoop) { try DNSQuery.parse(header(id: 0xc000, flags: 0) + [0xc0, 0x00, 0, 1, 0, 1]) }
        // A pointer cut short.
        #expect(throws: DNSParseError.truncatedName) { try DNSQuery.parse(header(id: 9, flags: 0) + [0xc0]) }
    }

    @Test func backwardPointerIsFollowed() throws {
        // Questions cannot point back to another name, but a chain is read the same way
        // wherever it is: read "www" + pointer to "example.com" written earlier.
        let message: [UInt8] = [7] + Array("example".utf8) + [3] + Array("com".utf8) + [0] + [3] + Array("WwW".utf8) + [0xc0, 0x00]
        try message.withUnsafeBytes { raw in
            let (wire, end) = try DNSName.read(raw, at: 13)
            #expect(wire == [3] + Array("WwW".utf8) + wireName("example.com"))
            #expect(end == message.count)
            #expect(DNSName.text(fromWire: wire) == "www.example.com")
        }
        // A chain of more than 127 pointers, each strictly backward, is still refused.
        var chain: [UInt8] = [0]
        for i in 0..<200 {
            let target = i == 0 ? 0 : 2 * i - 1
            chain += [0xc0 | UInt8(target >> 8), UInt8(truncatingIfNeeded: target)]
        }
        #expect(chain.withUnsafeBytes { raw in (try? DNSName.read(raw, at: 1 + 2 * 100))?.wire } == [0])
        #expect(throws: DNSParseError.pointerLoop) { try chain.withUnsafeBytes { raw in try DNSName.read(raw, at: 1 + 2 * 199) } }
    }

    @Test func reservedLabelTypesAreRefused() {
        // A length byte of 64 has the 0x40 type bits: no label is longer than 63 on the wire.
        #expect(throws: DNSParseError.badLabelType) { try DNSQuery.parse(query([64] + [UInt8](repeating: 0x61, count: 64) + [0])) }
        #expect(throws: DNSParseError.badLabelType) { try DNSQuery.parse(query([0x80, 0])) }
        let longest = [63] + [UInt8](repeating: 0x61, count: 63) + [0]
        #expect((try? DNSQuery.parse(query(longest)))?.question.name == String(repeating: "a", count: 63))
    }

    @Test func namesLongerThan255BytesAreRefused() throws {
        // 4 labels of 63 bytes + "ab" = 4 * 64 + 3 + 1 = 260 bytes; 3 * 64 + 62 + 1 = 255 is the longest.
        let label63 = [63] + [UInt8](repeating: 0x62, count: 63)
        let name255 = label63 + label63 + label63 + [61] + [UInt8](repeating: 0x63, count: 61) + [0]
        #expect(name255.count == 255)
        #expect(try DNSQuery.parse(query(name255)).questionWire == name255)
        let name256 = label63 + label63 + label63 + [62] + [UInt8](repeating: 0x63, count: 62) + [0]
        #expect(name256.count == 256)
        #expect(throws: DNSParseError.nameTooLong) { try DNSQuery.parse(query(name256)) }
    }

    @Test func oddBytesAreEscapedAndCannotCollide() throws {
        // One label "a.b" (with a dot inside) is not the two labels "a" and "b".
        let dotted = try DNSQuery.parse(query([3, 0x61, 0x2e, 0x62, 0]))
        #expect(dotted.question.name == "a\\046b")
        #expect(try DNSQuery.parse(query(wireName("a.b"))).question.name == "a.b")
        let odd = try DNSQuery.parse(query([6, 0x00, 0x20, 0x5c, 0xff, 0x41, 0x7f, 1, 0x2d, 0]))
        #expect(odd.question.name == "\\000\\032\\092\\255a\\127.-")
        #expect(try DNSName.wire(fromText: odd.question.name) == [6, 0x00, 0x20, 0x5c, 0xff, 0x61, 0x7f, 1, 0x2d, 0])
    }

    @Test func textToWire() throws {
        #expect(try DNSName.wire(fromText: "") == [0])
        #expect(try DNSName.wire(fromText: ".") == [0])
        #expect(try DNSName.wire(fromText: "a.b.") == wireName("a.b"))
        #expect(try DNSName.wire(fromText: "a\\.b") == [3, 0x61, 0x2e, 0x62, 0])
        #expect(try DNSName.wire(fromText: "a\\\\.b") == [2, 0x61, 0x5c, 1, 0x62, 0])
        #expect(throws: DNSParseError.badNameText) { try DNSName.wire(fromText: "a..b") }
        #expect(throws: DNSParseError.badNameText) { try DNSName.wire(fromText: ".a") }
        #expect(throws: DNSParseError.badNameText) { try DNSName.wire(fromText: "a b") }
        #expect(throws: DNSParseError.badNameText) { try DNSName.wire(fromText: "a\\25") }
        #expect(throws: DNSParseError.badNameText) { try DNSName.wire(fromText: "a\\256") }
        #expect(throws: DNSParseError.badNameText) { try DNSName.wire(fromText: "a\\") }
        #expect(throws: DNSParseError.labelTooLong) { try DNSName.wire(fromText: String(repeating: "x", count: 64)) }
        let long = Array(repeating: String(repeating: "x", count: 63), count: 4).joined(separator: ".")
        #expect(throws: DNSParseError.nameTooLong) { try DNSName.wire(fromText: long) }
    }

    @Test func mixedCaseIsLoweredInTheNameAndEchoedExactly() throws {
        let wire = wireName("ReSpOnDeR.CyPhOnIc.InTeRnAl")
        let q = try DNSQuery.parse(query(wire))
        #expect(q.question.name == "responder.cyphonic.internal")
        #expect(q.questionWire == wire)
        let response = try ReadResponse(DNSResponse.make(for: q, rcode: .noError, answers: [.a([1, 2, 3, 4])], ttl: 5, limit: 512))
        #expect(response.questionName == wire)
        // Equality counts the original case.
        #expect(q != DNSQuery(id: 9, question: q.question))
    }

    @Test func renamingAQueryReencodesItsName() throws {
        var q = try DNSQuery.parse(query(wireName("A.B")))
        q.question.name = "c\\046d.e"
        #expect(q.questionWire == [3, 0x63, 0x2e, 0x64, 1, 0x65, 0])
        q.question.type = DNSRecordType.aaaa
        #expect(q.questionWire == [3, 0x63, 0x2e, 0x64, 1, 0x65, 0])
        q.question.name = "bad..name"
        #expect(q.questionWire == [0])
    }
}
