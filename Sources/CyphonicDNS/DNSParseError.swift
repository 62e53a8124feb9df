/// Why bytes were refused as a DNS query, a name or a TCP frame. Every decoder of this
/// module throws this instead of trapping, whatever the input. ``label`` is a short,
/// fixed snake_case reason (no values in it) fit for a metrics label; ``description``
/// adds the value where there is one.
public enum DNSParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Shorter than the 12-byte header.
    case tooShort
    /// Longer than 65535 bytes (a message), or a TCP frame longer than the framer allows.
    case oversized
    /// QR is 1: the message is a response.
    case notAQuery
    /// The opcode is not QUERY (0); a server answers NOTIMP.
    case unsupportedOpcode(UInt8)
    /// QDCOUNT is not exactly 1.
    case questionCount(Int)
    /// A name runs past the end of the message (or a pointer's second byte is missing).
    case truncatedName
    /// A name is longer than 255 bytes in wire form.
    case nameTooLong
    /// A label of a name given as text is longer than 63 bytes.
    case labelTooLong
    /// A label length byte has the reserved 0x40 or 0x80 type bits (RFC 6891 §5).
    case badLabelType
    /// A compression pointer that does not point before the labels it ends (a loop or a
    /// forward reference), or a name made of more than 127 pointers.
    case pointerLoop
    /// The question's type and class, or a record's fixed fields or data, run past the end.
    case truncatedRecord
    /// An OPT record that is not owned by the root, is not the only one, or whose options
    /// run past its data (RFC 6891 §6.1.1: FORMERR).
    case badOPT
    /// A name given as text has an empty label, a bad `\` escape or a byte that must be escaped.
    case badNameText
    /// A TCP frame announces a 0-byte message.
    case zeroLengthFrame

    /// The reason as a metrics label: fixed snake_case words, never an input value.
    public var label: String {
        switch self {
        case .tooShort: return "too_short"
        case .oversized: return "oversized"
        case .notAQuery: return "not_a_query"
        case .unsupportedOpcode: return "unsupported_opcode"
        case .questionCount: return "question_count"
        case .truncatedName: return "truncated_name"
        case .nameTooLong: return "name_too_long"
        case .labelTooLong: return "label_too_long"
        case .badLabelType: return "bad_label_type"
        case .pointerLoop: return "pointer_loop"
        case .truncatedRecord: return "truncated_record"
        case .badOPT: return "bad_opt"
        case .badNameText: return "bad_name_text"
        case .zeroLengthFrame: return "zero_length_frame"
        }
    }

    public var description: String {
        switch self {
        case .unsupportedOpcode(let opcode): return "\(label)(\(opcode))"
        case .questionCount(let count): return "\(label)(\(count))"
        default: return label
        }
    }
}
