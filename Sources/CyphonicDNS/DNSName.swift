/// Domain names between their wire form (RFC 1035 §3.1, compression §4.1.4) and the text
/// the resolver keys on. Reading checks every length before using it and follows a
/// compression pointer only to a point before the labels it ends, at most 127 times, so it
/// always terminates. The text form is canonical: ASCII letters lower-cased, labels joined
/// by ".", no trailing dot, "" for the root, and every byte that is not printable ASCII, or
/// is "." or "\", written `\DDD` (three decimal digits), so two different names never have
/// the same text.
package enum DNSName {
    package static let maxWireLength = 255
    package static let maxLabelLength = 63
    static let maxPointers = 127

    /// The name at `start` in `message`, uncompressed, in its original case, with the
    /// offset just past where it was written (past its first pointer, if any).
    package static func read(_ message: UnsafeRawBufferPointer, at start: Int) throws(DNSParseError) -> (wire: [UInt8], end: Int) {
        var wire: [UInt8] = []
        var position = start
        var segmentStart = start
        var end: Int? = nil
        var pointers = 0
        while true {
            guard position >= 0, position < message.count else { throw .truncatedName }
            let length = Int(message[position])
            switch length & 0xc0 {
            case 0x00:
                if length == 0 {
                    wire.append(0)
                    return (wire, end ?? position + 1)
                }
                guard length < message.count - position else { throw .truncatedName }
                guard wire.count + 1 + length + 1 <= maxWireLength else { throw .nameTooLong }
                wire.append(contentsOf: message[position...(position + length)])
                position += 1 + length
            case 0xc0:
                guard position + 1 < message.count else { throw .truncatedName }
                let target = (length & 0x3f) << 8 | Int(message[position + 1])
                if end == nil { end = position + 2 }
                pointers += 1
                guard target < segmentStart, pointers <= maxPointers else { throw .pointerLoop }
                position = target
                segmentStart = target
            default:
                throw .badLabelType
            }
        }
    }

    /// The offset just past the name written at `start`, without following its pointer:
    /// enough to step over the owner of a record that is not looked at.
    static func skip(_ message: UnsafeRawBufferPointer, at start: Int) throws(DNSParseError) -> Int {
        var position = start
        var wireLength = 1
        while true {
            guard position >= 0, position < message.count else { throw .truncatedName }
            let length = Int(message[position])
            switch length & 0xc0 {
            case 0x00:
                if length == 0 { return position + 1 }
                wireLength += 1 + length
                guard wireLength <= maxWireLength else { throw .nameTooLong }
                position += 1 + length
            case 0xc0:
                guard position + 1 < message.count else { throw .truncatedName }
                return position + 2
            default:
                throw .badLabelType
            }
        }
    }

    /// The canonical text of a well-formed uncompressed wire name (as ``read(_:at:)``
    /// returns). A malformed one ends where its next label would run past the end.
    package static func text(fromWire wire: [UInt8]) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(wire.count)
        var position = 0
        while position < wire.count {
            let length = Int(wire[position])
            guard length > 0, length < wire.count - position else { break }
            if !text.isEmpty { text.append(UInt8(ascii: ".")) }
            for byte in wire[(position + 1)...(position + length)] { appendText(of: byte, to: &text) }
            position += 1 + length
        }
        return String(decoding: text, as: UTF8.self)
    }

    private static func appendText(of byte: UInt8, to text: inout [UInt8]) {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"):
            text.append(byte | 0x20)
        case UInt8(ascii: "."), UInt8(ascii: "\\"):
            appendEscape(byte, to: &text)
        case 0x21...0x7e:
            text.append(byte)
        default:
            appendEscape(byte, to: &text)
        }
    }

    private static func appendEscape(_ byte: UInt8, to text: inout [UInt8]) {
        text.append(UInt8(ascii: "\\"))
        text.append(UInt8(ascii: "0") + byte / 100)
        text.append(UInt8(ascii: "0") + byte / 10 % 10)
        text.append(UInt8(ascii: "0") + byte % 10)
    }

    /// The wire form of a name given as text: the inverse of ``text(fromWire:)`` on its
    /// results, with case kept as given. A trailing dot is allowed; "" and "." are the root.
    /// `\DDD` (at most 255) and `\X` (X not a digit) stand for one byte; any other byte
    /// must be printable ASCII.
    package static func wire(fromText text: String) throws(DNSParseError) -> [UInt8] {
        let chars = Array(text.utf8)
        if chars.isEmpty || chars == [UInt8(ascii: ".")] { return [0] }
        var wire: [UInt8] = []
        var label: [UInt8] = []
        var index = 0
        var endsWithDot = false
        func endLabel() throws(DNSParseError) {
            guard !label.isEmpty else { throw .badNameText }
            guard label.count <= maxLabelLength else { throw .labelTooLong }
            guard wire.count + 1 + label.count + 1 <= maxWireLength else { throw .nameTooLong }
            wire.append(UInt8(label.count))
            wire.append(contentsOf: label)
            label.removeAll(keepingCapacity: true)
        }
        while index < chars.count {
            let char = chars[index]
            index += 1
            endsWithDot = char == UInt8(ascii: ".")
            switch char {
            case UInt8(ascii: "."):
                try endLabel()
            case UInt8(ascii: "\\"):
                label.append(try unescape(chars, at: &index))
            case 0x21...0x7e:
                label.append(char)
            default:
                throw .badNameText
            }
            guard label.count <= maxLabelLength else { throw .labelTooLong }
        }
        if !endsWithDot { try endLabel() }
        wire.append(0)
        return wire
    }

    /// The byte an escape stands for; `index` is just past the backslash and moves past the escape.
    private static func unescape(_ chars: [UInt8], at index: inout Int) throws(DNSParseError) -> UInt8 {
        guard index < chars.count else { throw .badNameText }
        let digit0 = UInt8(ascii: "0")
        let digit9 = UInt8(ascii: "9")
        guard (digit0...digit9).contains(chars[index]) else {
            defer { index += 1 }
            return chars[index]
        }
        guard index + 3 <= chars.count else { throw .badNameText }
        var value = 0
        for char in chars[index..<(index + 3)] {
            guard (digit0...digit9).contains(char) else { throw .badNameText }
            value = value * 10 + Int(char - digit0)
        }
        guard value <= 255 else { throw .badNameText }
        index += 3
        return UInt8(value)
    }
}
