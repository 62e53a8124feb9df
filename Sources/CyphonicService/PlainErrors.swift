import ArgumentParser
import CyphonicCore
import CyphonicPosix
import Foundation

/// An error whose description is one plain sentence for a person at a terminal: no
/// Swift enum, no NSError dump. Argument-parser prints it as `Error: <sentence>` without
/// the usage text (that is for mistakes in the command line itself).
public struct PlainError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The plain sentence for `error`: Foundation file errors become "no such file" or
/// "permission denied" with the path; the project's errors describe themselves.
public func plainMessage(_ error: any Error) -> String {
    if let e = error as? PlainError { return e.description }
    // A UDP port another program holds: which one, and what to do.
    if let e = error as? SystemError, e.errno == EADDRINUSE, e.function.hasPrefix("bind("),
        let endpoint = Endpoint(String(e.function.dropFirst(5).dropLast()))
    {
        return InUseError(
            what: "UDP \(endpoint)", owner: PortOwner.udp(port: endpoint.port),
            hint: "another daemon is bound to it; stop it, or give another --listen address"
        ).description
    }
    if let e = error as? CocoaError {
        let path = (e.userInfo[NSFilePathErrorKey] as? String) ?? e.userInfo[NSURLErrorKey].map { "\($0)" } ?? "a file"
        switch e.code {
        case .fileReadNoSuchFile, .fileNoSuchFile: return "\(path): no such file"
        case .fileReadNoPermission, .fileWriteNoPermission: return "\(path): permission denied (run as its owner or root)"
        case .fileWriteOutOfSpace: return "\(path): no space left on the device"
        case .fileWriteVolumeReadOnly: return "\(path): the file system is read-only"
        case .fileWriteFileExists: return "\(path): already exists"
        case .fileWriteUnknown: return "\(path): cannot be written (is a part of the path a file, not a directory?)"
        case .fileReadUnknown: return "\(path): cannot be read (is it a directory?)"
        default: return "\(path): \(e.localizedDescription)"
        }
    }
    let ns = error as NSError
    if ns.domain == NSPOSIXErrorDomain, let code = POSIXErrorCode(rawValue: Int32(ns.code)) {
        return String(cString: strerror(code.rawValue))
    }
    return "\(error)"
}

/// A program whose root command checks a config file without starting:
/// `PROGRAM --check-config FILE` (exit 0, or the key and the problem).
public protocol ConfigChecking {
    var checkConfig: String? { get }
}

extension ParsableCommand {
    /// The program's entry point with plain errors: a mistake in the command line is
    /// reported with the usage, as argument-parser does; anything the command itself
    /// throws (a file that is missing, a config key, a port in use) as one plain
    /// sentence, without the usage.
    public static func mainWithPlainErrors() async -> Never {
        var command: any ParsableCommand
        do { command = try parseAsRoot() } catch { exit(withError: error) }
        // The program alone, without a subcommand: the help, and a failure exit code.
        if type(of: command) == Self.self, !Self.configuration.subcommands.isEmpty, (command as? any ConfigChecking)?.checkConfig == nil {
            FileHandle.standardError.write(Data((Self.helpMessage() + "\n").utf8))
            exit(withError: ExitCode(64))
        }
        // argument-parser's own commands (`help`, `--help`) report through their errors.
        let builtIn = String(reflecting: type(of: command)).hasPrefix("ArgumentParser.")
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch  where builtIn {
            exit(withError: error)
        } catch let e as CleanExit {
            exit(withError: e)
        } catch let e as ExitCode {
            exit(withError: e)
        } catch let e as ValidationError {
            exit(withError: PlainError(e.message))
        } catch {
            exit(withError: PlainError(plainMessage(error)))
        }
        exit()
    }
}
