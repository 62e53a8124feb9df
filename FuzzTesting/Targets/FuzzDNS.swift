// libFuzzer target: the resolver's DNS codec (query parser, response builder, FORMERR, TCP framer).
// Properties checked besides "never traps": a query that parses gets responses, at the UDP and
// TCP limits, that fit the limit, echo the id and the question's exact bytes, and parse back as
// a query once QR is cleared (so every answer and the OPT record are well-framed records); the
// question's text encodes back to its lower-cased wire bytes; FORMERR echoes the id.
import CyphonicDNS

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDNS(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let raw = UnsafeRawBufferPointer(start: data, count: size)
    let bytes = Array(raw)
    if let query = try? DNSQuery.parse(raw) {
        // Built per input: a global would be reported as a leak when the process ends.
        let answers: [DNSAnswer] = [.a([198, 18, 0, 1]), .aaaa([0xfd, 0] + [UInt8](repeating: 0x11, count: 14))]
        guard (try? DNSQuery.parse(bytes)) == query else { fatalError("array and pointer parses differ") }
        let lowered = query.questionWire.map { (0x41...0x5a).contains($0) ? $0 | 0x20 : $0 }
        guard (try? DNSName.wire(fromText: query.question.name)) == lowered else { fatalError("name text does not encode back") }
        for limit in [512, 65_535] {
            let response = DNSResponse.make(for: query, rcode: .noError, answers: answers, ttl: 60, limit: limit)
            guard response.count <= limit, DNSMessage.id(of: response) == query.id, DNSMessage.isResponse(response) else {
                fatalError("response header or size wrong")
            }
            var cleared = response
            cleared[2] &= 0x7f
            guard let back = try? DNSQuery.parse(cleared), back.id == query.id, back.question == query.question,
                back.questionWire == query.questionWire, (back.ednsUDPSize == nil) == (query.ednsUDPSize == nil)
            else { fatalError("response does not read back") }
        }
    }
    if let formErr = DNSResponse.formatError(for: raw) {
        guard formErr.count == 12, formErr[0] == bytes[0], formErr[1] == bytes[1] else { fatalError("FORMERR wrong") }
    }
    var framer = DNSTCPFramer(maxMessage: 512)
    if let messages = try? framer.append(bytes) {
        guard messages.allSatisfy({ (1...512).contains($0.count) }), framer.bufferedCount <= 514 else { fatalError("framer bounds") }
    }
    return 0
}
