import Testing

@testable import CyphonicCore

@Suite struct CoreTests {
    @Test func hexRoundTripAndRejects() {
        #expect(Hex.encode([0, 1, 0xab, 0xff]) == "0001abff")
        #expect(Hex.decode("0001ABff") == [0, 1, 0xab, 0xff])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.decode("") == [])
    }

    @Test func fqdnFollowsRFC1123() throws {
        #expect(try FQDN("Init01.Cyphonic.Internal.").value == "init01.cyphonic.internal")
        #expect(throws: FQDN.Invalid.empty) { try FQDN("") }
        #expect(throws: FQDN.Invalid.badLabel("-a")) { try FQDN("-a.b") }
        #expect(throws: FQDN.Invalid.badLabel("a_b")) { try FQDN("a_b.c") }
        #expect(throws: FQDN.Invalid.badLabel("")) { try FQDN("a..b") }
        #expect(throws: FQDN.Invalid.badLabel(String(repeating: "a", count: 64))) { try FQDN(String(repeating: "a", count: 64) + ".b") }
        let long = Array(repeating: String(repeating: "a", count: 60), count: 5).joined(separator: ".")
        #expect(throws: FQDN.Invalid.tooLong(304)) { try FQDN(long) }
        #expect(try FQDN("x.cyphonic.internal").isUnder(try FQDN("cyphonic.internal")))
        #expect(!(try FQDN("xcyphonic.internal").isUnder(try FQDN("cyphonic.internal"))))
    }

    @Test func addressesParseAndPrint() {
        #expect(IPAddress("198.18.0.1")?.description == "198.18.0.1")
        #expect(IPAddress("2001:db8:c0ff:ee::1")?.description == "2001:db8:c0ff:ee::1")
        #expect(IPAddress("198.18.0.256") == nil)
        #expect(IPAddress("hello") == nil)
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        #expect(Endpoint("198.19.0.1:4501")?.port == 4501)
        #expect(Endpoint("[2001:db8::1]:4502")?.description == "[2001:db8::1]:4502")
        #expect(Endpoint("198.19.0.1") == nil)
        #expect(Endpoint("198.19.0.1:70000") == nil)
        #expect(Endpoint("[198.19.0.1]:1") == nil)
        #expect(Endpoint("2001:db8::1:5") == nil)
    }

    @Test func prefixesContain() throws {
        let p = try #require(IPPrefix("198.18.5.7/16"))
        #expect(p.description == "198.18.0.0/16")
        #expect(p.contains(IPAddress("198.18.255.1")!))
        #expect(!p.contains(IPAddress("198.19.0.1")!))
        #expect(!p.contains(IPAddress("2001:db8::1")!))
        let v6 = try #require(IPPrefix("2001:db8:c0ff:ee::/64"))
        #expect(v6.contains(IPAddress("2001:db8:c0ff:ee::abcd")!))
        #expect(!v6.contains(IPAddress("2001:db8:c0ff:ef::1")!))
        #expect(IPPrefix("198.18.0.0/33") == nil)
        #expect(IPPrefix("198.18.0.0") == nil)
        #expect(IPPrefix("0.0.0.0/0")?.contains(IPAddress("1.2.3.4")!) == true)
    }

    @Test func byteReaderNeverReadsPastTheEnd() throws {
        let bytes: [UInt8] = [0, 3, 0x61, 0x62]
        try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            #expect(throws: DecodeError.truncated(offset: 2, needed: 1)) { try r.string(field: "s") }
            var r2 = ByteReader(raw)
            #expect(throws: DecodeError.truncated(offset: 0, needed: 4)) { try r2.u64() }
            var r3 = ByteReader(raw)
            #expect(try r3.u16() == 3)
            #expect(r3.remaining == 2)
            #expect(throws: DecodeError.trailingBytes(2)) { try r3.finish() }
            #expect(r3.rest() == [0x61, 0x62])
            try r3.finish()
        }
        var w = ByteWriter()
        w.u16(0x0102)
        w.u32(0x0304_0506)
        w.u64(0x0708_090a_0b0c_0d0e)
        #expect(w.bytes == Array(1...14))
        #expect(throws: EncodeError.fieldTooLong(70_000)) { try w.lengthPrefixed([UInt8](repeating: 0, count: 70_000)) }
    }
}
