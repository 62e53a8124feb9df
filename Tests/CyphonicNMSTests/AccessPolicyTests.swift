import CyphonicNMS
import Testing

@Suite struct AccessPolicyTests {
    @Test func sameGroupOnlyByDefault() {
        let p = AccessPolicy()
        #expect(p.allows(from: "lab", to: "lab") && p.allows(from: nil, to: nil))
        #expect(!p.allows(from: "lab", to: "office") && !p.allows(from: nil, to: "lab"))
    }

    @Test func rulesWidenOneWayAndWildcardsMatchAnyGroup() {
        let p = AccessPolicy(rules: [AccessPolicy.Rule("lab:office")!, AccessPolicy.Rule("*:printers")!])
        #expect(p.allows(from: "lab", to: "office") && !p.allows(from: "office", to: "lab"))
        #expect(p.allows(from: "anyone", to: "printers") && p.allows(from: nil, to: "printers"))
    }

    @Test func aPolicyFileNamesItsBadLine() throws {
        let rules = try AccessPolicy.parse(file: "# comment\nlab:office\n\n  a:b  # trailing\n")
        #expect(rules.map(\.description) == ["lab:office", "a:b"])
        #expect(throws: PolicyError(line: 2, text: "nocolon")) { try AccessPolicy.parse(file: "a:b\nnocolon\n") }
        #expect(AccessPolicy.Rule("a:b:c") == nil && AccessPolicy.Rule(":b") == nil && AccessPolicy.Rule("a b:c") == nil)
    }
}
