/// Makes attacker-supplied text (login names) safe to put in a log line: every byte
/// outside printable ASCII `!`…`~`, and the backslash and double quote, is written as
/// `\xNN`, so a value can neither break a line, inject terminal escapes, nor look like
/// another field; the input is cut to `limit` bytes (the cut is marked with `…+N`).
public enum LogText {
    public static func escaped(_ text: String, limit: Int = 64) -> String {
        let bytes = Array(text.utf8)
        var out = ""
        out.reserveCapacity(min(bytes.count, limit) + 8)
        for b in bytes.prefix(max(0, limit)) {
            if b > 0x20, b < 0x7f, b != UInt8(ascii: "\\"), b != UInt8(ascii: "\"") {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out += "\\x" + String(b, radix: 16, uppercase: false).leftPadded(to: 2)
            }
        }
        if bytes.count > limit { out += "…+\(bytes.count - limit)" }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
