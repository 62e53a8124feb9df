import Logging
import Synchronization

/// Process-wide logging: swift-log's stream handler on stderr at `level`. Safe to call
/// more than once (later calls are ignored, as swift-log allows one bootstrap).
public enum LogSetup {
    private static let done = Mutex(false)

    public static func bootstrap(level: Logger.Level) {
        let first = done.withLock { d -> Bool in
            defer { d = true }
            return !d
        }
        guard first else { return }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
