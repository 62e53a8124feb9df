import CyphonicCore
import CyphonicPosix
import Foundation

/// The programs' JSON config files, read one way: `//` comments allowed (to the end of a
/// line), then a strict syntax check (line and
/// column of a trailing comma or a missing quote), then decoding, with every error naming
/// the key as written (`peers[0].endpoint`) and what it must be. Unknown keys are refused,
/// so a typo is an error rather than a silently ignored setting.
public enum ConfigFile {
    /// Reads, checks and decodes the file at `path`.
    public static func decode<T: Decodable>(_ type: T.Type, path: String) throws -> T {
        let text: String
        do { text = try readTextFile(path, what: "the config file") } catch { throw ConfigFileError.unreadable("\(error)") }
        let bytes = JSONSyntax.blankingComments(Array(text.utf8))
        do { try JSONSyntax.check(bytes) } catch { throw ConfigFileError.syntax(path, "\(error)") }
        do { return try JSONDecoder().decode(T.self, from: Data(bytes)) } catch let DecodingError.typeMismatch(type, ctx) {
            throw ConfigFileError.invalid(configKeyPath(ctx.codingPath), "must be \(typeName(type))")
        } catch let DecodingError.valueNotFound(type, ctx) {
            throw ConfigFileError.invalid(configKeyPath(ctx.codingPath), "must be \(typeName(type)), not null")
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw ConfigFileError.invalid(configKeyPath(ctx.codingPath + [key]), "is required")
        } catch let DecodingError.dataCorrupted(ctx) where ctx.codingPath.isEmpty {
            // The syntax check passed, so the decoder refused a value it could not convert.
            throw ConfigFileError.syntax(path, "a number does not fit its key (a whole number where the key takes one, or out of range)")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw ConfigFileError.invalid(configKeyPath(ctx.codingPath), ctx.debugDescription)
        } catch let e as ConfigFileError {
            throw e
        } catch {
            throw ConfigFileError.invalid("(file)", "\(error)")
        }
    }

    /// A path written in the file at `file`: absolute as is, else relative to the file's folder.
    public static func path(_ p: String?, in file: String) -> String? {
        guard let p, !p.hasPrefix("/") else { return p }
        return ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent(p)
    }
}

/// Any key, to list what a JSON object holds.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Throws for a key the type does not know, naming it.
public func rejectUnknownKeys<K: CodingKey>(_ decoder: Decoder, _ known: K.Type) throws {
    let all = try decoder.container(keyedBy: AnyKey.self)
    for key in all.allKeys where K(stringValue: key.stringValue) == nil {
        throw ConfigFileError.invalid(configKeyPath(decoder.codingPath + [key]), "unknown key")
    }
}

/// A key path as a person writes it: `peers[0].endpoint`.
public func configKeyPath(_ path: [any CodingKey]) -> String {
    var out = ""
    for key in path {
        if let i = key.intValue {
            out += "[\(i)]"
        } else {
            out += (out.isEmpty ? "" : ".") + key.stringValue
        }
    }
    return out.isEmpty ? "(the whole file)" : out
}

/// What a value must be, in words.
func typeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string (in double quotes)"
    case is Bool.Type: return "true or false"
    case is Int.Type, is UInt16.Type: return "a whole number"
    case is Double.Type: return "a number"
    case is [String].Type: return "a list of strings (in [ ])"
    case is [Any].Type: return "a list (in [ ])"
    case is [String: Any].Type: return "an object (in { })"
    default: return "an object or list of the documented form"
    }
}

/// A config file that cannot be used; names the key.
public enum ConfigFileError: Error, CustomStringConvertible {
    case unreadable(String)
    case syntax(String, String)
    case invalid(String, String)

    public var description: String {
        switch self {
        case .unreadable(let why): return why
        case .syntax(let path, let why): return why.hasPrefix("a number") ? "\(path): \(why)" : "\(path) is not valid JSON: \(why)"
        case .invalid(let key, let why): return "config key \(key): \(why)"
        }
    }
}

/// The services' config files (as-server, nms-server, trs-relay) have one key per flag of
/// `serve`, named as the flag in camelCase (`--max-failures` is `maxFailures`), and every
/// key optional: the file sets what differs from the defaults, a flag overrides the file.
/// The same type holds both layers; ``ServiceConfig/overriding(with:)`` merges them.
public protocol ServiceConfig: Codable, Sendable {
    init()
    /// Makes the paths a file gives relative to the file's folder.
    mutating func resolvePaths(in file: String)
}

extension ServiceConfig {
    /// The keys a config of this type knows (its stored properties, which are its JSON keys).
    public static var knownKeys: Set<String> { Set(Mirror(reflecting: Self()).children.compactMap(\.label)) }

    /// Reads a service config file: unknown keys are refused, naming them and the flags there are.
    public static func load(path: String) throws -> Self {
        let keys = try ConfigFile.decode(KeysOnly.self, path: path).keys
        for key in keys.sorted() where !knownKeys.contains(key) {
            throw ConfigFileError.invalid(key, "unknown key (the keys are serve's flags in camelCase, e.g. --max-sessions is maxSessions)")
        }
        return try ConfigFile.decode(Self.self, path: path)
    }

    /// The file's values (paths relative to it; none without a file) with the flags' over them.
    public static func layered(file: String?, flags: Self) throws -> Self {
        guard let file else { return flags }
        var config = try load(path: file)
        config.resolvePaths(in: file)
        return try config.overriding(with: flags)
    }

    /// This config with every value `other` sets put over ours (flags over the file).
    public func overriding(with other: Self) throws -> Self {
        let encoder = JSONEncoder()
        guard var base = try JSONSerialization.jsonObject(with: encoder.encode(self)) as? [String: Any],
            let top = try JSONSerialization.jsonObject(with: encoder.encode(other)) as? [String: Any]
        else { throw ConfigFileError.invalid("(file)", "not an object") }
        base.merge(top) { _, new in new }
        return try JSONDecoder().decode(Self.self, from: JSONSerialization.data(withJSONObject: base))
    }
}

/// The top-level keys of a JSON object, whatever their values.
private struct KeysOnly: Decodable {
    let keys: [String]
    init(from decoder: Decoder) throws {
        keys = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
    }
}

extension ConfigFileError {
    /// For a service config, whose keys are its flags: the key and its flag, so the
    /// message fits whichever of the two the operator used.
    public var namingFlag: ConfigFileError {
        guard case .invalid(let key, let why) = self, key.allSatisfy({ $0.isLetter || $0.isNumber }), !why.hasPrefix("unknown key") else {
            return self
        }
        return .invalid("\(key) (--\(flagName(key)))", why)
    }
}

extension ConfigFileError {
    /// The sentence for `--check-config FILE`: the file first, unless the error names it.
    public func checking(_ file: String) -> String {
        if case .invalid = self { return "\(file): \(namingFlag)" }
        return "\(namingFlag)"
    }
}

/// `maxFailures` -> `max-failures`.
public func flagName(_ key: String) -> String {
    var out = ""
    for c in key {
        if c.isUppercase {
            out += "-" + c.lowercased()
        } else {
            out.append(c)
        }
    }
    return out
}
