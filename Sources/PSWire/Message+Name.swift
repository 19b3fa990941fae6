extension Message {
    /// The case name, for logs and errors (never the payload, which may be a megabyte of floats).
    public var caseName: String {
        Mirror(reflecting: self).children.first?.label ?? String(describing: self)
    }
}
