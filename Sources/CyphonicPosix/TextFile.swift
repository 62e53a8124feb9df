import Foundation

/// Why a file could not be read, as one plain sentence naming the file and the reason.
public struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
    public let what: String
    public let path: String
    public let reason: String

    public var description: String { "cannot read \(what) \(path): \(reason)" }
}

/// The text of the file at `path` (UTF-8); `what` names it in the error ("the CA
/// certificate"). Errors say whether the file is missing, a directory, unreadable.
public func readTextFile(_ path: String, what: String) throws(FileError) -> String {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        // Missing, or behind a directory we may not enter: say which.
        let denied = access(path, F_OK) != 0 && errno == EACCES
        throw FileError(what: what, path: path, reason: denied ? "permission denied (run as its owner or root)" : "no such file")
    }
    guard !isDirectory.boolValue else { throw FileError(what: what, path: path, reason: "it is a directory, not a file") }
    guard FileManager.default.isReadableFile(atPath: path) else {
        throw FileError(what: what, path: path, reason: "permission denied (run as its owner or root)")
    }
    guard let data = FileManager.default.contents(atPath: path) else { throw FileError(what: what, path: path, reason: "it cannot be read") }
    guard let text = String(data: data, encoding: .utf8) else { throw FileError(what: what, path: path, reason: "it is not text (UTF-8)") }
    return text
}
