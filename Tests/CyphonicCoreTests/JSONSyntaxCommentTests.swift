import CyphonicCore
import Testing

/// Config files may carry `//` comments: blanked to spaces before the strict check, so
/// every line and column stays where it was and strings keep their slashes.
@Suite struct JSONSyntaxCommentTests {
    @Test func commentsBecomeSpacesAndStringsKeepTheirSlashes() throws {
        let text = "// head\n{ \"url\": \"http://x//y\", // why\n  \"a\": 1 }\n"
        let out = JSONSyntax.blankingComments(Array(text.utf8))
        #expect(out.count == text.utf8.count)
        #expect(String(decoding: out, as: UTF8.self) == "       \n{ \"url\": \"http://x//y\",       \n  \"a\": 1 }\n")
        try JSONSyntax.check(out)
    }

    @Test func anErrorAfterACommentKeepsItsLineAndColumn() {
        let out = JSONSyntax.blankingComments(Array("// one\n// two\n{ \"a\": 1,, }".utf8))
        let problem = #expect(throws: JSONSyntax.Problem.self) { try JSONSyntax.check(out) }
        #expect(problem?.line == 3 && problem?.column == 10)
    }

    @Test func anEscapedQuoteDoesNotEndTheString() throws {
        let out = JSONSyntax.blankingComments(Array("{ \"a\": \"x\\\" // not a comment\" }".utf8))
        try JSONSyntax.check(out)
        #expect(String(decoding: out, as: UTF8.self).contains("// not a comment"))
    }
}

/// A key given twice in one object is an error (Foundation keeps one silently, so a
/// setting appended at the end of a config would be ignored); so is absurd nesting.
@Suite struct JSONSyntaxDuplicateTests {
    @Test func aRepeatedKeyIsNamedWithItsPlace() {
        let text = "{ \"logLevel\": \"info\",\n  \"a\": { \"logLevel\": 1 },\n  \"logLevel\": \"debug\" }"
        let problem = #expect(throws: JSONSyntax.Problem.self) { try JSONSyntax.check(Array(text.utf8)) }
        #expect(
            problem?.line == 3 && problem?.column == 3 && problem?.message.contains("\"logLevel\" appears twice") == true,
            "\(String(describing: problem))")
    }

    @Test func theSameKeyInSiblingObjectsIsFine() throws {
        try JSONSyntax.check(Array("[{ \"a\": 1 }, { \"a\": 2 }, { \"b\": { \"a\": 3 }, \"a\": 4 }]".utf8))
    }

    @Test func nestingBeyondTheLimitSaysSo() throws {
        let deep =
            Array(repeating: UInt8(ascii: "["), count: JSONSyntax.maxDepth + 1) + Array(repeating: UInt8(ascii: "]"), count: JSONSyntax.maxDepth + 1)
        let problem = #expect(throws: JSONSyntax.Problem.self) { try JSONSyntax.check(deep) }
        #expect(problem?.message == "nested deeper than \(JSONSyntax.maxDepth) levels")
        let fine = Array(repeating: UInt8(ascii: "["), count: JSONSyntax.maxDepth) + Array(repeating: UInt8(ascii: "]"), count: JSONSyntax.maxDepth)
        try JSONSyntax.check(fine)
    }
}
