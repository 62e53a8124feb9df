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

/// Why a new file could not be written, naming it and the reason.
public struct FileWriteError: Error, Equatable, Sendable, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "cannot write \(path): \(reason)" }
}

/// Creates `path` — which must not exist, not even as a symlink — with exactly `mode`
/// from the first byte (no window in which a key is readable by others), writes
/// `bytes` and syncs them to disk. For keys, certificates and backups.
public func writeNewFile(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(FileWriteError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
    guard fd >= 0 else {
        let e = errno
        throw FileWriteError(
            path: path, reason: e == EEXIST ? "it exists already (refusing to overwrite or follow it)" : String(cString: strerror(e)))
    }
    defer { close(fd) }
    func fail() -> FileWriteError {
        let e = errno
        unlink(path)
        return FileWriteError(path: path, reason: String(cString: strerror(e)))
    }
    // The umask may have narrowed `mode`; a public certificate must still be readable.
    guard fchmod(fd, mode) == 0 else { throw fail() }
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
        if n < 0, errno == EINTR { continue }
        guard n > 0 else { throw fail() }
        written += n
    }
    guard fsync(fd) == 0 else { throw fail() }
}

/// ``writeNewFile(_:_:mode:)`` for text (UTF-8).
public func writeNewFile(_ path: String, _ text: String, mode: mode_t) throws(FileWriteError) {
    try writeNewFile(path, Array(text.utf8), mode: mode)
}

/// Checks that `path` is a real directory (not a symlink) owned by this process's user
/// that no one else may write to, so files put there cannot be swapped or pre-placed by
/// another user. Throws a sentence naming the problem.
public func checkPrivateDirectory(_ path: String) throws(FileWriteError) {
    var st = stat()
    guard lstat(path, &st) == 0 else { throw FileWriteError(path: path, reason: String(cString: strerror(errno))) }
    guard st.st_mode & S_IFMT == S_IFDIR else { throw FileWriteError(path: path, reason: "it is not a directory (or is a symlink)") }
    guard st.st_uid == geteuid() else { throw FileWriteError(path: path, reason: "it belongs to uid \(st.st_uid), not to us (uid \(geteuid()))") }
    guard st.st_mode & 0o022 == 0 else {
        throw FileWriteError(
            path: path, reason: "others may write to it (mode \(String(st.st_mode & 0o777, radix: 8))): files put there could be swapped")
    }
}
