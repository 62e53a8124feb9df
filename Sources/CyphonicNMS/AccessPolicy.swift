/// Which groups may reach which (issue 10, "access policy by group"). By default a node
/// reaches the nodes of its own group (nodes without a group form the group "");
/// `allow` rules widen it: `A:B` lets nodes of group A reach nodes of group B (one way;
/// add `B:A` for the other), `*` on either side stands for any group. Pure value.
public struct AccessPolicy: Equatable, Sendable {
    public struct Rule: Equatable, Sendable, CustomStringConvertible {
        public var from: String
        public var to: String

        /// Parses `FROM:TO`; nil when it is not two names around one colon.
        public init?(_ text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty,
                parts.allSatisfy({ $0.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f } })
            else { return nil }
            from = parts[0]
            to = parts[1]
        }

        public var description: String { "\(from):\(to)" }

        func matches(_ a: String, _ b: String) -> Bool { (from == "*" || from == a) && (to == "*" || to == b) }
    }

    public var rules: [Rule]
    /// Whether nodes of one group reach each other without a rule (the default).
    public var sameGroup: Bool

    public init(rules: [Rule] = [], sameGroup: Bool = true) {
        self.rules = rules
        self.sameGroup = sameGroup
    }

    /// Reads a policy file: one `FROM:TO` rule per line; `#` starts a comment. Throws
    /// naming the line of the first bad rule.
    public static func parse(file text: String) throws(PolicyError) -> [Rule] {
        var rules: [Rule] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let trimmed = line.trimmingSpaces
            if trimmed.isEmpty { continue }
            guard let rule = Rule(trimmed) else { throw PolicyError(line: n + 1, text: trimmed) }
            rules.append(rule)
        }
        return rules
    }

    /// Whether a node of group `from` may have a tunnel set up to a node of group `to`.
    public func allows(from: String?, to: String?) -> Bool {
        let a = from ?? ""
        let b = to ?? ""
        if sameGroup && a == b { return true }
        return rules.contains { $0.matches(a, b) }
    }
}

/// A policy file line that is not a rule.
public struct PolicyError: Error, Equatable, CustomStringConvertible {
    public var line: Int
    public var text: String

    public init(line: Int, text: String) {
        self.line = line
        self.text = text
    }

    public var description: String { "policy line \(line): \"\(text)\" is not GROUP_A:GROUP_B" }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
