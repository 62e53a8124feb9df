/// A fully qualified domain name checked against RFC 1123: 1–63 character labels of
/// letters, digits and hyphens, not starting or ending with a hyphen, at most 253
/// characters in all, stored in lower case without a trailing dot.
public struct FQDN: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let value: String

    /// Why a name was refused; its description is a plain sentence.
    public enum Invalid: Error, Equatable, Sendable, CustomStringConvertible {
        case empty
        case tooLong(Int)
        case badLabel(String)

        public var description: String {
            switch self {
            case .empty: return "the name is empty"
            case .tooLong(let n): return "the name is \(n) characters long; at most 253 are allowed"
            case .badLabel(let l) where l.isEmpty: return "the name has an empty label (two dots in a row, or a leading dot)"
            case .badLabel(let l):
                return "the label \"\(l)\" is not allowed: labels are 1-63 letters, digits or '-', not starting or ending with '-'"
            }
        }
    }

    public init(_ text: String) throws(Invalid) {
        var name = text.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        guard !name.isEmpty else { throw .empty }
        guard name.utf8.count <= 253 else { throw .tooLong(name.utf8.count) }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard FQDN.isValidLabel(label) else { throw .badLabel(String(label)) }
        }
        value = name
    }

    /// Whether one label is valid under RFC 1123.
    public static func isValidLabel<S: StringProtocol>(_ label: S) -> Bool {
        let bytes = Array(label.utf8)
        guard (1...63).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-")
        else { return false }
        return bytes.allSatisfy { b in
            (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
                || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-")
        }
    }

    /// Whether this name lies under `domain` (or is it).
    public func isUnder(_ domain: FQDN) -> Bool { value == domain.value || value.hasSuffix("." + domain.value) }

    public var description: String { value }
    public static func < (a: FQDN, b: FQDN) -> Bool { a.value < b.value }
}
