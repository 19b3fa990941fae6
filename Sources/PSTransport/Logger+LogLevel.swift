import Logging
import PSCore

extension Logger {
    /// Writes a line a state machine asked for: its level, message and fields.
    public func log(_ level: LogLevel, _ message: String, _ fields: [String: String]) {
        let metadata = fields.mapValues { Logger.MetadataValue.string($0) }
        switch level {
        case .debug: debug("\(message)", metadata: metadata)
        case .info: info("\(message)", metadata: metadata)
        case .warning: warning("\(message)", metadata: metadata)
        case .error: self.error("\(message)", metadata: metadata)
        }
    }
}
