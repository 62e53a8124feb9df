import Testing

@testable import CyphonicDNS

@Suite struct RobustnessTests {
    /// Runs every entry point on `bytes`; a trap fails the whole test run. What parses must
    /// answer with a response of the same id that reads back.
    func exercise(_ bytes: [UInt8]) throws {
        let error = DNSResponse.formatError(for: bytes)
        #expect(error == nil || error?.count == 12)
        var framer = DNSTCPFramer(maxMessage: 300)
        _ = try? framer.append(bytes)
        guard let q = try? DNSQuery.parse(bytes) else { return }
        for limit in [512, 65_535] {
            let response = DNSResponse.make(
                for: q, rcode: .noError, answers: [.a([1, 2, 3, 4]), .aaaa([UInt8](repeating: 9, count: 16))], ttl: 60, limit: limit)
            let r = try ReadResponse(response)
            #expect(r.id == q.id)
            #expect(r.questionName == q.questionWire)
            #expect(DNSName.text(fromWire: r.questionName) == q.question.name)
        }
    }

    @Test func randomBytesNeverTrap() throws {
        var rng = SeededGenerator(state: 0x00c0_ffee)
        var parsed = 0
        for _ in 0..<10_000 {
            let count = Int.random(in: 0...80, using: &rng)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Half of them get a plausible header and random labels so the name and record code is reached.
            if count >= 12, Bool.random(using: &rng) {
                bytes[2] &= 0x07
                bytes.replaceSubrange(4..<12, with: [0, 1, 0, 0, 0, 0, 0, UInt8.random(in: 0...1, using: &rng)])
                var name: [UInt8] = []
                for _ in 0..<Int.random(in: 0...4, using: &rng) {
                    let length = Int.random(in: 1...6, using: &rng)
                    name += [UInt8(length)] + (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                }
                bytes.insert(contentsOf: name + [0, 0, 1, 0, 1], at: 12)
            }
            if (try? DNSQuery.parse(bytes)) != nil { parsed += 1 }
            try exercise(bytes)
        }
        #expect(parsed > 1000)
    }

    @Test func mutatedQueriesNeverTrap() throws {
        var rng = SeededGenerator(state: 0x5eed)
        let seeds = [Captured.digA, Captured.glibcAAAA]
        var parsed = 0
        for round in 0..<10_000 {
            var bytes = seeds[round % seeds.count]
            for _ in 0...Int.random(in: 0...3, using: &rng) {
                switch Int.random(in: 0..<4, using: &rng) {
                case 0:
                    let i = Int.random(in: 0..<bytes.count, using: &rng)
                    bytes[i] = UInt8.random(in: 0...255, using: &rng)
                case 1:
                    let i = Int.random(in: 0..<bytes.count, using: &rng)
                    bytes[i] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
                case 2:
                    bytes = Array(bytes.prefix(Int.random(in: 1...bytes.count, using: &rng)))
                default:
                    bytes.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...bytes.count, using: &rng))
                }
            }
            if (try? DNSQuery.parse(bytes)) != nil { parsed += 1 }
            try exercise(bytes)
        }
        #expect(parsed > 1000)
    }
}
