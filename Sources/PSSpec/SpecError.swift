/// A rejected job spec: `field` is the path of the offending field (`model.layers[2].activation`),
/// `message` says what is wrong and what was expected, `location` the file and line where known.
public struct SpecError: Error, Equatable, CustomStringConvertible, Sendable {
    public var field: String
    public var message: String
    public var location: String?

    public init(field: String, message: String, location: String? = nil) {
        self.field = field
        self.message = message
        self.location = location
    }

    public var description: String {
        let head = field.isEmpty ? message : "\(field): \(message)"
        if let location { return "\(location): \(head)" }
        return head
    }
}
