/// A strict JSON (RFC 8259) syntax check that says where a document goes wrong, by line
/// and column, in words a person understands: a truncated file, a trailing comma (which
/// Foundation's decoder accepts silently), a missing comma or colon, a bad literal, a key
/// given twice in one object (Foundation silently keeps one: a setting appended at the end
/// of a config would be ignored), nesting deeper than ``maxDepth``. It
/// builds nothing: run it before decoding, so the decoder only sees well-formed JSON.
/// Iterative (no recursion), so any input — however deeply nested — is checked in
/// linear time without trapping.
public enum JSONSyntax {
    /// Where and why a document is not JSON.
    public struct Problem: Error, Equatable, Sendable, CustomStringConvertible {
        public let line: Int
        public let column: Int
        public let message: String
        public var description: String { "line \(line), column \(column): \(message)" }
    }

    /// `bytes` with every `//` comment (to the end of its line, outside strings) turned
    /// into spaces, so config files can explain themselves and every line and column a
    /// later error names stays where it was. Linear, and any input is safe.
    public static func blankingComments(_ bytes: [UInt8]) -> [UInt8] {
        var out = bytes
        var i = 0
        var inString = false
        while i < out.count {
            let c = out[i]
            if inString {
                if c == UInt8(ascii: "\\") {
                    i += 2
                    continue
                }
                if c == UInt8(ascii: "\"") || c == 0x0a { inString = false }
            } else if c == UInt8(ascii: "\"") {
                inString = true
            } else if c == UInt8(ascii: "/"), i + 1 < out.count, out[i + 1] == UInt8(ascii: "/") {
                while i < out.count, out[i] != 0x0a {
                    out[i] = 0x20
                    i += 1
                }
                continue
            }
            i += 1
        }
        return out
    }

    /// Objects and arrays nested deeper than this are refused (no config needs more).
    public static let maxDepth = 512

    private enum Frame { case object, array }
    private enum Expect { case value, valueOrClose, keyOrClose, key, colon, commaOrClose, end }

    /// Throws the first problem of `bytes` as a JSON text, or returns when it is one.
    public static func check(_ bytes: [UInt8]) throws(Problem) {
        var i = 0
        var line = 1
        var lineStart = 0
        var stack: [Frame] = []
        // The keys seen so far in each open object (raw bytes between the quotes).
        var keys: [Set<ArraySlice<UInt8>>] = []
        var expect = Expect.value
        var afterComma = false
        func problem(_ message: String, at index: Int? = nil) -> Problem {
            Problem(line: line, column: (index ?? i) - lineStart + 1, message: message)
        }
        func closeValue() { expect = stack.isEmpty ? .end : .commaOrClose }
        while i < bytes.count {
            let c = bytes[i]
            if c == 0x20 || c == 0x09 || c == 0x0d {
                i += 1
                continue
            }
            if c == 0x0a {
                i += 1
                line += 1
                lineStart = i
                continue
            }
            switch expect {
            case .end:
                throw problem("more text after the end of the document")
            case .colon:
                guard c == UInt8(ascii: ":") else { throw problem("expected ':' after the key") }
                i += 1
                expect = .value
                continue
            case .commaOrClose:
                if c == UInt8(ascii: ",") {
                    i += 1
                    afterComma = true
                    expect = stack.last == .object ? .key : .value
                    continue
                }
                if (c == UInt8(ascii: "}") && stack.last == .object) || (c == UInt8(ascii: "]") && stack.last == .array) {
                    i += 1
                    if stack.removeLast() == .object { keys.removeLast() }
                    closeValue()
                    continue
                }
                throw problem(stack.last == .object ? "expected ',' or '}'" : "expected ',' or ']'")
            case .key, .keyOrClose:
                if c == UInt8(ascii: "}") {
                    guard expect == .keyOrClose else { throw problem("a trailing comma before '}' is not allowed in JSON") }
                    i += 1
                    stack.removeLast()
                    keys.removeLast()
                    closeValue()
                    continue
                }
                guard c == UInt8(ascii: "\"") else { throw problem("expected a key in double quotes") }
                let keyStart = i
                try string(bytes, &i, Position(line: line, lineStart: lineStart))
                let key = bytes[(keyStart + 1)..<(i - 1)]
                guard keys[keys.count - 1].insert(key).inserted else {
                    throw problem(
                        "the key \"\(String(decoding: key.prefix(40), as: UTF8.self))\" appears twice in this object (only one would count)",
                        at: keyStart)
                }
                expect = .colon
                afterComma = false
                continue
            case .value, .valueOrClose:
                if c == UInt8(ascii: "]") {
                    guard expect == .valueOrClose else {
                        throw problem(afterComma ? "a trailing comma before ']' is not allowed in JSON" : "expected a value")
                    }
                    i += 1
                    stack.removeLast()
                    closeValue()
                    continue
                }
                afterComma = false
                switch c {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    guard stack.count < maxDepth else { throw problem("nested deeper than \(maxDepth) levels") }
                    i += 1
                    if c == UInt8(ascii: "{") {
                        stack.append(.object)
                        keys.append([])
                        expect = .keyOrClose
                        continue
                    }
                    stack.append(.array)
                    expect = .valueOrClose
                case UInt8(ascii: "\""):
                    try string(bytes, &i, Position(line: line, lineStart: lineStart))
                    closeValue()
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                    try number(bytes, &i, Position(line: line, lineStart: lineStart))
                    closeValue()
                case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
                    var matched = false
                    for word in ["true", "false", "null"] where bytes[i...].starts(with: word.utf8) {
                        i += word.utf8.count
                        matched = true
                        break
                    }
                    guard matched else { throw problem("unknown word (true, false and null are the only ones)") }
                    closeValue()
                default:
                    throw problem(c == UInt8(ascii: "'") ? "strings need double quotes" : "expected a value")
                }
            }
        }
        guard expect == .end else {
            throw problem(stack.isEmpty ? "the document is empty" : "the file ends early: \(stack.count) unclosed '{' or '['")
        }
    }

    /// The line a token starts on (strings and numbers never span lines).
    private struct Position {
        let line: Int
        let lineStart: Int
        func problem(_ message: String, _ index: Int) -> Problem { Problem(line: line, column: index - lineStart + 1, message: message) }
    }

    private static func string(_ b: [UInt8], _ i: inout Int, _ at: Position) throws(Problem) {
        let start = i
        i += 1
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                return
            }
            if c == UInt8(ascii: "\\") {
                guard i + 1 < b.count else { break }
                let e = b[i + 1]
                if e == UInt8(ascii: "u") {
                    guard i + 5 < b.count, b[(i + 2)...(i + 5)].allSatisfy({ isHex($0) }) else { throw at.problem("bad \\u escape", i) }
                    i += 6
                    continue
                }
                guard "\"\\/bfnrt".utf8.contains(e) else { throw at.problem("bad escape \\\(Character(Unicode.Scalar(e)))", i) }
                i += 2
                continue
            }
            guard c >= 0x20 else { throw at.problem(c == 0x0a ? "a string runs past the end of the line" : "a control character inside a string", i) }
            i += 1
        }
        throw at.problem("a string is not closed", start)
    }

    private static func isHex(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f"))
            || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "F"))
    }

    private static func number(_ b: [UInt8], _ i: inout Int, _ at: Position) throws(Problem) {
        let start = i
        func digits() -> Int {
            let s = i
            while i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") { i += 1 }
            return i - s
        }
        if b[i] == UInt8(ascii: "-") { i += 1 }
        guard i < b.count else { throw at.problem("a number is cut short", start) }
        if b[i] == UInt8(ascii: "0") {
            i += 1
        } else {
            guard digits() > 0 else { throw at.problem("bad number", start) }
        }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { throw at.problem("bad number", start) }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw at.problem("bad number", start) }
        }
    }
}
