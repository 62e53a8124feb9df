import Testing

@testable import CyphonicDNS

@Suite struct FramingTests {
    @Test func framesSplitAndJoinedAcrossChunks() throws {
        let first = Captured.digA
        let second = Captured.glibcAAAA
        let stream = DNSTCPFramer.frame(first) + DNSTCPFramer.frame(second)
        #expect(Array(stream.prefix(2)) == [0, UInt8(first.count)])
        // Every way of cutting the stream in two gives the same two messages.
        for cut in 0...stream.count {
            var framer = DNSTCPFramer()
            let a = try framer.append(stream[..<cut])
            let b = try framer.append(stream[cut...])
            #expect(a + b == [first, second], "cut at \(cut)")
            #expect(framer.bufferedCount == 0)
        }
        // Byte by byte.
        var framer = DNSTCPFramer()
        var got: [[UInt8]] = []
        for byte in stream { got += try framer.append([byte]) }
        #expect(got == [first, second])
        // A partial frame stays buffered.
        let partial = try framer.append(stream.prefix(5))
        #expect(partial.isEmpty)
        #expect(framer.bufferedCount == 5)
    }

    @Test func zeroLengthFramesAreRefusedForGood() throws {
        var framer = DNSTCPFramer()
        let before = try framer.append(DNSTCPFramer.frame([1, 2, 3]))
        #expect(before == [[1, 2, 3]])
        #expect(throws: DNSParseError.zeroLengthFrame) { try framer.append([0, 0]) }
        #expect(throws: DNSParseError.zeroLengthFrame) { try framer.append(DNSTCPFramer.frame([1])) }
    }

    @Test func oversizeFramesAreRefused() throws {
        var framer = DNSTCPFramer(maxMessage: 512)
        #expect(framer.maxMessage == 512)
        let ok = try framer.append(DNSTCPFramer.frame([UInt8](repeating: 7, count: 512)))
        #expect(ok.count == 1)
        // Refused as soon as the length is read, before the body arrives.
        #expect(throws: DNSParseError.oversized) { try framer.append([0x02, 0x01]) }
        #expect(throws: DNSParseError.oversized) { try framer.append([]) }
        #expect(DNSTCPFramer(maxMessage: 1 << 20).maxMessage == 65_535)
        #expect(DNSTCPFramer.frame([UInt8](repeating: 0, count: 65_536)).isEmpty)
        #expect(DNSTCPFramer.frame([UInt8](repeating: 0, count: 65_535)).prefix(2) == [0xff, 0xff])
    }
}
