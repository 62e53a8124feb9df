extension String {
    /// The longest prefix of whole characters that fits in `limit` UTF-8 bytes.
    func truncatedToUTF8(_ limit: Int) -> String {
        if utf8.count <= limit { return self }
        var out = ""
        for c in self {
            if out.utf8.count + c.utf8.count > limit { break }
            out.append(c)
        }
        return out
    }
}
