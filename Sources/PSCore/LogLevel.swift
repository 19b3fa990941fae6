/// How much a log line matters, as the pure state machines (coordinator, worker) ask for lines;
/// their services hand them to swift-log (`Logger.log(_:_:_:)` in PSTransport).
public enum LogLevel: String, Sendable { case debug, info, warning, error }
