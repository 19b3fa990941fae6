import Foundation
import PSCore

extension JobSpec {
    /// Parses a spec written in YAML or JSON, applies `overrides` (`PATH=VALUE`, VALUE read as YAML)
    /// and validates every field. Relative data paths are joined to `baseDirectory` (kept relative
    /// when it is nil); files are not opened here. `source` names the text in error locations.
    public static func parse(_ text: String, format: SpecFormat, source: String = "spec",
                             baseDirectory: String? = nil, overrides: [String] = []) throws(SpecError) -> JobSpec {
        let bytes = text.utf8.count
        guard bytes <= Limits.specBytesMax else {
            throw SpecError(field: "", message: "spec is \(bytes) bytes; at most \(Limits.specBytesMax) are read",
                            location: source)
        }
        var root: SpecNode
        switch format {
        case .yaml:
            guard let node = try SpecNode.parseYAML(text, source: source) else {
                throw SpecError(field: "", message: "the spec is empty", location: source)
            }
            root = node
        case .json:
            root = try SpecNode.parseJSON(text, source: source)
        }
        for override in overrides {
            try SpecOverride.apply(override, to: &root)
        }
        return try SpecValidator(baseDirectory: baseDirectory).jobSpec(root)
    }

    /// Reads and parses a spec file. The format comes from the extension (`.yaml`, `.yml`, `.json`);
    /// relative data paths are resolved against the file's folder, made absolute so that the spec
    /// means the same on every host that sees the same filesystem.
    public static func load(path: String, overrides: [String] = []) throws(SpecError) -> JobSpec {
        let format: SpecFormat
        switch (path as NSString).pathExtension.lowercased() {
        case "yaml", "yml": format = .yaml
        case "json": format = .json
        default:
            throw SpecError(field: "", message: "unknown spec file extension (expected .yaml, .yml or .json)",
                            location: path)
        }
        let data: Data
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            // One byte past the limit is enough to know the file is too large.
            data = try handle.read(upToCount: Limits.specBytesMax + 1) ?? Data()
        } catch {
            throw SpecError(field: "", message: "cannot read the spec: \(error.localizedDescription)", location: path)
        }
        guard data.count <= Limits.specBytesMax else {
            throw SpecError(field: "", message: "spec file is larger than \(Limits.specBytesMax) bytes", location: path)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SpecError(field: "", message: "the spec is not UTF-8 text", location: path)
        }
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let folder = SpecPath.normalize(absolute + "/..")
        return try parse(text, format: format, source: path, baseDirectory: folder, overrides: overrides)
    }
}

/// Lexical path handling: no filesystem access, so parsing stays pure and gives the same answer on
/// every host.
enum SpecPath {
    /// Removes `.` and empty components and folds `name/..`; leading `..` of a relative path stay.
    static func normalize(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".":
                continue
            case "..":
                if let last = parts.last, last != ".." {
                    parts.removeLast()
                } else if !absolute {
                    parts.append(part)
                }
            default:
                parts.append(part)
            }
        }
        let joined = parts.joined(separator: "/")
        if absolute { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }

    /// Joins a relative path to `base`; absolute paths are only normalised.
    static func resolve(_ path: String, base: String?) -> String {
        if path.hasPrefix("/") { return normalize(path) }
        guard let base else { return normalize(path) }
        return normalize(base + "/" + path)
    }
}

// MARK: - Overrides

/// `PATH=VALUE` edits applied to the document tree before validation, so an override is checked
/// exactly like the field it replaces.
enum SpecOverride {
    enum Segment: Equatable {
        case key(String)
        case index(Int)
    }

    static func apply(_ override: String, to root: inout SpecNode) throws(SpecError) {
        let location = "override '\(override)'"
        guard let equals = override.firstIndex(of: "=") else {
            throw SpecError(field: "", message: "expected PATH=VALUE, e.g. training.epochs=3", location: location)
        }
        let path = String(override[..<equals])
        let valueText = String(override[override.index(after: equals)...])
        guard let segments = parsePath(path) else {
            throw SpecError(field: path, message: "not a field path (expected keys joined by '.', list entries as [N])",
                            location: location)
        }
        try checkAgainstSchema(segments, path: path, location: location)

        let value: SpecNode
        do {
            value = try SpecNode.parseYAML(valueText, source: location, locationOverride: location)
                ?? SpecNode(.null, text: valueText, location: location)
        } catch {
            throw SpecError(field: path, message: "the value is \(error.message)", location: location)
        }
        try set(value, at: segments[...], in: &root, walked: "", location: location)
    }

    /// `a.b[0].c` → [.key(a), .key(b), .index(0), .key(c)]; nil when malformed.
    static func parsePath(_ path: String) -> [Segment]? {
        var segments: [Segment] = []
        var rest = Substring(path)
        var expectKey = true
        while !rest.isEmpty {
            if rest.first == "[" {
                guard let close = rest.firstIndex(of: "]"), let n = Int(rest[rest.index(after: rest.startIndex)..<close]),
                      n >= 0, !segments.isEmpty else { return nil }
                segments.append(.index(n))
                rest = rest[rest.index(after: close)...]
                expectKey = false
                continue
            }
            if !expectKey {
                guard rest.first == "." else { return nil }
                rest = rest.dropFirst()
            }
            let key = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            guard !key.isEmpty else { return nil }
            segments.append(.key(String(key)))
            rest = rest[key.endIndex...]
            expectKey = false
        }
        return segments.isEmpty ? nil : segments
    }

    /// Rejects a path the schema does not have, naming the keys that exist at that level.
    private static func checkAgainstSchema(_ segments: [Segment], path: String, location: String) throws(SpecError) {
        var template = ""
        for segment in segments {
            switch segment {
            case let .key(key):
                guard let keys = SpecSchema.keys(atTemplate: template), keys.contains(key) else {
                    let expected = SpecSchema.keys(atTemplate: template).map { " (expected \($0.joined(separator: ", ")))" }
                    let at = template.isEmpty ? "" : " under \(template.replacingOccurrences(of: "[]", with: "[N]"))"
                    throw SpecError(field: path, message: "unknown field '\(key)'\(at)\(expected ?? "")",
                                    location: location)
                }
                template = template.isEmpty ? key : "\(template).\(key)"
            case .index:
                guard SpecSchema.lists.contains(template) else {
                    throw SpecError(field: path, message: "\(template) is not a list", location: location)
                }
                template += "[]"
            }
        }
    }

    private static func set(_ value: SpecNode, at segments: ArraySlice<Segment>, in node: inout SpecNode,
                            walked: String, location: String) throws(SpecError) {
        guard let segment = segments.first else {
            node = value
            return
        }
        let rest = segments.dropFirst()
        switch segment {
        case let .key(key):
            if node.isNull { node = SpecNode(.mapping([]), location: location) }
            guard case var .mapping(entries) = node.value else {
                throw SpecError(field: walked, message: "cannot set '\(key)': \(walked) is \(node.described), not a mapping",
                                location: location)
            }
            let here = walked.isEmpty ? key : "\(walked).\(key)"
            // The last duplicate is the one a reader would notice; validation rejects duplicates anyway.
            let i: Int
            if let found = entries.lastIndex(where: { $0.key == key }) {
                i = found
            } else {
                entries.append(SpecNode.Entry(key: key, keyLocation: location,
                                              value: SpecNode(.null, location: location)))
                i = entries.count - 1
            }
            node.value = .null  // drop the second reference so the edit below does not copy
            try set(value, at: rest, in: &entries[i].value, walked: here, location: location)
            node.value = .mapping(entries)
        case let .index(n):
            guard case var .sequence(items) = node.value else {
                throw SpecError(field: walked, message: "\(walked) is \(node.described), not a list", location: location)
            }
            guard n < items.count else {
                throw SpecError(field: "\(walked)[\(n)]",
                                message: "index \(n) is out of range (\(walked) has \(items.count) entries)",
                                location: location)
            }
            node.value = .null
            try set(value, at: rest, in: &items[n], walked: "\(walked)[\(n)]", location: location)
            node.value = .sequence(items)
        }
    }
}

// MARK: - Reading typed fields

/// One field of the document: its node and its full path, with typed readers whose errors name both.
struct SpecField {
    let node: SpecNode
    let path: String

    func error(_ message: String) -> SpecError {
        SpecError(field: path, message: message, location: node.location)
    }

    func int() throws(SpecError) -> Int {
        switch node.value {
        case let .integer(negative, magnitude):
            guard magnitude <= UInt64(Int.max) else { throw error("integer \(node.text) is out of range") }
            return negative ? -Int(magnitude) : Int(magnitude)
        case .hugeInteger:
            throw error("integer \(node.text) is out of range")
        default:
            throw error("expected an integer, got \(node.described)")
        }
    }

    /// An integer in `range`; the message shows the accepted range and, where given, why it ends there.
    func int(in range: ClosedRange<Int>, limit: String? = nil) throws(SpecError) -> Int {
        let value = try int()
        guard range.contains(value) else {
            let why = limit.map { " (\($0))" } ?? ""
            if range.upperBound == Int.max { throw error("must be at least \(range.lowerBound), got \(value)") }
            throw error("must be between \(range.lowerBound) and \(range.upperBound)\(why), got \(value)")
        }
        return value
    }

    func uint64() throws(SpecError) -> UInt64 {
        switch node.value {
        case let .integer(negative, magnitude):
            guard !negative else { throw error("must be between 0 and 2^64-1, got \(node.text)") }
            return magnitude
        case .hugeInteger:
            throw error("must be between 0 and 2^64-1, got \(node.text)")
        default:
            throw error("expected an integer, got \(node.described)")
        }
    }

    /// A finite number; integers are accepted, booleans and strings are not.
    func double() throws(SpecError) -> Double {
        let value: Double
        switch node.value {
        case let .integer(negative, magnitude):
            value = negative ? -Double(magnitude) : Double(magnitude)
        case let .number(d):
            value = d
        case .hugeInteger:
            throw error("number \(node.text) is out of range")
        default:
            throw error("expected a number, got \(node.described)")
        }
        guard value.isFinite else { throw error("expected a finite number, got \(node.described)") }
        return value
    }

    /// A finite float32. Read from the text itself (not via Double) so that the shortest decimal a
    /// Float prints parses back to exactly that Float.
    func float() throws(SpecError) -> Float {
        let wide = try double()
        var text = node.text.replacingOccurrences(of: "_", with: "")
        if text.hasPrefix("+") { text.removeFirst() }
        let value = Float(text) ?? Float(wide)
        guard value.isFinite else { throw error("\(node.text) is out of range for a 32-bit float") }
        return value
    }

    func bool() throws(SpecError) -> Bool {
        guard case let .bool(b) = node.value else { throw error("expected true or false, got \(node.described)") }
        return b
    }

    /// Any scalar's text: `name: 123` is the name "123".
    func string() throws(SpecError) -> String {
        switch node.value {
        case .mapping, .sequence, .null:
            throw error("expected a string, got \(node.described)")
        case let .string(s):
            return s
        default:
            return node.text
        }
    }

    /// One of an enum's raw values; the message lists them all.
    func choice<E: RawRepresentable & CaseIterable>(_ what: String, _ type: E.Type = E.self) throws(SpecError) -> E
        where E.RawValue == String {
        let text = try string()
        guard let value = E(rawValue: text) else {
            let expected = E.allCases.map(\.rawValue).joined(separator: ", ")
            throw error("unknown \(what) '\(text)' (expected \(expected))")
        }
        return value
    }
}

/// A mapping of the document whose keys have been checked against the schema.
struct SpecFields {
    let node: SpecNode
    let path: String
    private var values: [String: SpecNode] = [:]

    /// Rejects a non-mapping, unknown keys (listing `allowed`, with `context` saying why where the
    /// list depends on another field) and duplicate keys.
    init(_ field: SpecField, allowed: [String], context: String? = nil) throws(SpecError) {
        node = field.node
        path = field.path
        guard case let .mapping(entries) = node.value else {
            throw field.error("expected a mapping, got \(node.described)")
        }
        for entry in entries {
            let child = Self.join(path, entry.key)
            guard allowed.contains(entry.key) else {
                let why = context.map { " for \($0)" } ?? ""
                throw SpecError(field: child,
                                message: "unknown key '\(entry.key)' (expected \(allowed.joined(separator: ", "))\(why))",
                                location: entry.keyLocation)
            }
            guard values[entry.key] == nil else {
                throw SpecError(field: child, message: "duplicate key '\(entry.key)'", location: entry.keyLocation)
            }
            values[entry.key] = entry.value
        }
    }

    static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// The field, or nil when it is absent or null (null means "use the default").
    func optional(_ key: String) -> SpecField? {
        guard let value = values[key], !value.isNull else { return nil }
        return SpecField(node: value, path: Self.join(path, key))
    }

    func required(_ key: String) throws(SpecError) -> SpecField {
        guard let field = optional(key) else {
            throw SpecError(field: Self.join(path, key), message: "required field missing", location: node.location)
        }
        return field
    }

    /// Every present key, in schema order, for rules that apply per key.
    func presentKeys(in order: [String]) -> [String] {
        order.filter { optional($0) != nil }
    }
}

// MARK: - Validation

/// Turns a document tree into a `JobSpec`, applying defaults and every rule of the schema.
struct SpecValidator {
    let baseDirectory: String?

    func jobSpec(_ root: SpecNode) throws(SpecError) -> JobSpec {
        let top = try SpecFields(SpecField(node: root, path: ""), allowed: SpecSchema.root)

        let nameField = try top.required("name")
        let name = try nameField.string()
        let nameCharacters = name.unicodeScalars.allSatisfy {
            $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0))
        }
        guard (1...64).contains(name.count), nameCharacters else {
            throw nameField.error("must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-', got '\(name)'")
        }
        let seed = try top.optional("seed")?.uint64() ?? 0
        let data = try dataSpec(top.required("data"))
        let model = try modelSpec(top.required("model"))
        let lossField = try top.required("loss")
        let loss = try lossField.choice("loss", LossKind.self)
        let optimizer = try optimizerSpec(top.required("optimizer"))
        let training = try trainingSpec(top.required("training"))
        try checkLoss(loss, model: model, field: lossField)
        var earlyStopping: EarlyStoppingSpec?
        if let field = top.optional("early_stopping") {
            earlyStopping = try earlyStoppingSpec(field, loss: loss)
            guard data.validation != nil || data.validationSplit != nil else {
                throw field.error("requires validation data (set data.validation or data.validation_split)")
            }
        }
        return JobSpec(name: name, seed: seed, data: data, model: model, loss: loss, optimizer: optimizer,
                       training: training, earlyStopping: earlyStopping)
    }

    // MARK: data

    private func dataSpec(_ field: SpecField) throws(SpecError) -> DataSpec {
        let fields = try SpecFields(field, allowed: SpecSchema.data)
        let format = try fields.required("format").choice("data format", DataFormat.self)

        func files(_ key: String) throws(SpecError) -> DataFiles? {
            guard let split = fields.optional(key) else { return nil }
            switch format {
            case .idx:
                let m = try SpecFields(split, allowed: SpecSchema.idxFiles, context: "format idx")
                return .idx(images: try path(m.required("images")), labels: try path(m.required("labels")))
            case .csv:
                let m = try SpecFields(split, allowed: SpecSchema.csvFiles, context: "format csv")
                return .csv(path: try path(m.required("path")))
            }
        }
        guard let train = try files("train") else {
            throw SpecError(field: "data.train", message: "required field missing", location: field.node.location)
        }
        let validation = try files("validation")
        var validationSplit: Double?
        if let splitField = fields.optional("validation_split") {
            guard validation == nil else {
                throw splitField.error("cannot be combined with data.validation (give one or the other)")
            }
            let split = try splitField.double()
            guard split > 0 && split < 1 else { throw splitField.error("must be between 0 and 1 (exclusive), got \(split)") }
            validationSplit = split
        }
        let test = try files("test")

        var preprocessing = Preprocessing.none
        if let scaleField = fields.optional("scale") {
            let divisor = try scaleField.float()
            guard divisor > 0 else { throw scaleField.error("must be greater than 0, got \(scaleField.node.text)") }
            preprocessing = .scale(divisor)
        }
        if let standardizeField = fields.optional("standardize"), try standardizeField.bool() {
            guard preprocessing == .none else {
                throw standardizeField.error("cannot be combined with data.scale (give one or the other)")
            }
            preprocessing = .standardize
        }

        var header = false
        var labelColumn = ColumnRef.index(0)
        for key in ["header", "label_column"] {
            if format != .csv, let csvOnly = fields.optional(key) {
                throw csvOnly.error("only allowed with data.format csv (format is \(format.rawValue))")
            }
        }
        if let headerField = fields.optional("header") { header = try headerField.bool() }
        if let columnField = fields.optional("label_column") {
            switch columnField.node.value {
            case .integer, .hugeInteger:
                labelColumn = .index(try columnField.int(in: 0...Int.max))
            default:
                let name = try columnField.string()
                guard header else {
                    throw columnField.error("a column name ('\(name)') requires data.header: true")
                }
                guard !name.isEmpty else { throw columnField.error("expected a column name or index, got ''") }
                labelColumn = .name(name)
            }
        }
        return DataSpec(format: format, train: train, validation: validation, validationSplit: validationSplit,
                        test: test, preprocessing: preprocessing, header: header, labelColumn: labelColumn)
    }

    private func path(_ field: SpecField) throws(SpecError) -> String {
        let text = try field.string()
        guard !text.isEmpty else { throw field.error("expected a file path, got ''") }
        return SpecPath.resolve(text, base: baseDirectory)
    }

    // MARK: model

    private func modelSpec(_ field: SpecField) throws(SpecError) -> ModelSpec {
        let fields = try SpecFields(field, allowed: SpecSchema.model)
        let inputs = try fields.required("inputs").int(in: 1...Limits.inputsMax, limit: "Limits.inputsMax")
        let layersField = try fields.required("layers")
        guard case let .sequence(items) = layersField.node.value else {
            throw layersField.error("expected a list of layers, got \(layersField.node.described)")
        }
        guard (1...Limits.layersMax).contains(items.count) else {
            throw layersField.error("must have between 1 and \(Limits.layersMax) layers (Limits.layersMax), got \(items.count)")
        }
        var layers: [LayerSpec] = []
        var parameters = 0
        var fanIn = inputs
        for (i, item) in items.enumerated() {
            let isLast = i == items.count - 1
            let layer = try SpecFields(SpecField(node: item, path: "model.layers[\(i)]"), allowed: SpecSchema.layer)
            let units = try layer.required("units").int(in: 1...Limits.unitsMax, limit: "Limits.unitsMax")
            let activationField = try layer.required("activation")
            let activation = try activationField.choice("activation", Activation.self)
            if activation == .softmax && !isLast {
                throw activationField.error("softmax is allowed only on the last layer")
            }
            var dropout: Float = 0
            if let dropoutField = layer.optional("dropout") {
                dropout = try dropoutField.float()
                guard dropout >= 0 && dropout < 1 else {
                    throw dropoutField.error("must be in [0, 1), got \(dropoutField.node.text)")
                }
                if isLast && dropout != 0 {
                    throw dropoutField.error("dropout is not allowed on the last layer (it would drop outputs)")
                }
            }
            // Each term is at most 2^16 × (2^20 + 1), so the running sum cannot overflow Int.
            parameters += units * (fanIn + 1)
            fanIn = units
            layers.append(LayerSpec(units: units, activation: activation, dropout: dropout))
        }
        guard parameters <= Limits.parametersMax else {
            throw field.error("the model has \(parameters) parameters; at most \(Limits.parametersMax) "
                + "(Limits.parametersMax, what one 64 MiB frame holds) are allowed")
        }
        return ModelSpec(inputs: inputs, layers: layers)
    }

    /// The loss must match the output layer: each loss reads a specific activation and unit count.
    private func checkLoss(_ loss: LossKind, model: ModelSpec, field: SpecField) throws(SpecError) {
        let last = model.layers.count - 1
        let output = model.layers[last]
        let unitsPath = "model.layers[\(last)].units"
        switch loss {
        case .softmaxCrossEntropy:
            guard output.activation == .softmax else {
                throw field.error("softmax_cross_entropy requires a softmax last layer, "
                    + "but model.layers[\(last)].activation is \(output.activation.rawValue)")
            }
            guard output.units >= 2 else {
                throw SpecError(field: unitsPath, message: "softmax_cross_entropy requires at least 2 output units "
                    + "(use binary_cross_entropy with a sigmoid unit for two classes), got \(output.units)",
                    location: field.node.location)
            }
        case .binaryCrossEntropy:
            guard output.activation == .sigmoid else {
                throw field.error("binary_cross_entropy requires a sigmoid last layer, "
                    + "but model.layers[\(last)].activation is \(output.activation.rawValue)")
            }
            guard output.units == 1 else {
                throw SpecError(field: unitsPath, message: "binary_cross_entropy requires exactly 1 output unit, "
                    + "got \(output.units)", location: field.node.location)
            }
        case .meanSquaredError:
            guard output.activation != .softmax else {
                throw SpecError(field: "model.layers[\(last)].activation",
                                message: "a softmax last layer requires loss softmax_cross_entropy; "
                                    + "mean_squared_error cannot be used with softmax",
                                location: field.node.location)
            }
        }
    }

    // MARK: optimizer

    private func optimizerSpec(_ field: SpecField) throws(SpecError) -> OptimizerSpec {
        let fields = try SpecFields(field, allowed: SpecSchema.optimizer)
        let kind = try fields.required("name").choice("optimizer", OptimizerKind.self)
        let used = SpecSchema.optimizerFields(kind)
        for key in fields.presentKeys(in: SpecSchema.optimizer) where key != "name" && !used.contains(key) {
            throw fields.optional(key)!.error("not used by \(kind.rawValue) (its fields: \(used.joined(separator: ", ")))")
        }

        /// Reads an optional float with a default and a range rule phrased for the message.
        func value(_ key: String, default fallback: Float, rule: String, _ ok: (Float) -> Bool) throws(SpecError) -> Float {
            guard let f = fields.optional(key) else { return fallback }
            let v = try f.float()
            guard ok(v) else { throw f.error("must be \(rule), got \(f.node.text)") }
            return v
        }
        let unit = "in [0, 1)"
        let learningRateDefault: Float = switch kind {
        case .adam, .adamw: 0.001
        case .adadelta: 1.0
        default: 0.01
        }
        // Unused hyper-parameters keep `OptimizerSpec`'s init defaults, so each spec has one canonical value.
        var spec = OptimizerSpec(kind: kind, learningRate: 0)
        spec.learningRate = try value("learning_rate", default: learningRateDefault, rule: "greater than 0") { $0 > 0 }
        spec.weightDecay = try value("weight_decay", default: kind == .adamw ? 0.01 : 0, rule: "at least 0") { $0 >= 0 }
        if let clip = fields.optional("clip_norm") {
            let v = try clip.float()
            guard v > 0 else { throw clip.error("must be greater than 0, got \(clip.node.text)") }
            spec.clipNorm = v
        }
        switch kind {
        case .sgd:
            break
        case .momentum, .nesterov:
            spec.momentum = try value("momentum", default: 0.9, rule: unit) { $0 >= 0 && $0 < 1 }
            if kind == .nesterov && spec.momentum == 0 {
                throw (fields.optional("momentum") ?? field).error("nesterov needs momentum greater than 0")
            }
        case .adagrad:
            spec.epsilon = try value("epsilon", default: 1e-10, rule: "greater than 0") { $0 > 0 }
        case .adadelta:
            spec.rho = try value("rho", default: 0.9, rule: "in (0, 1)") { $0 > 0 && $0 < 1 }
            spec.epsilon = try value("epsilon", default: 1e-6, rule: "greater than 0") { $0 > 0 }
        case .rmsprop:
            spec.alpha = try value("alpha", default: 0.99, rule: "in (0, 1)") { $0 > 0 && $0 < 1 }
            spec.epsilon = try value("epsilon", default: 1e-8, rule: "greater than 0") { $0 > 0 }
            spec.momentum = try value("momentum", default: 0, rule: unit) { $0 >= 0 && $0 < 1 }
        case .adam, .adamw:
            spec.beta1 = try value("beta1", default: 0.9, rule: unit) { $0 >= 0 && $0 < 1 }
            spec.beta2 = try value("beta2", default: 0.999, rule: unit) { $0 >= 0 && $0 < 1 }
            spec.epsilon = try value("epsilon", default: 1e-8, rule: "greater than 0") { $0 > 0 }
        }
        return spec
    }

    // MARK: training and early stopping

    private func trainingSpec(_ field: SpecField) throws(SpecError) -> TrainingSpec {
        let fields = try SpecFields(field, allowed: SpecSchema.training)
        let batchSize = try fields.required("batch_size").int(in: 1...Limits.batchSizeMax, limit: "Limits.batchSizeMax")
        var chunks = 1
        if let chunksField = fields.optional("chunks") {
            chunks = try chunksField.int()
            let most = min(batchSize, Limits.chunksMax)
            guard (1...most).contains(chunks) else {
                let why = most == batchSize ? "batch_size, as every chunk needs a sample" : "Limits.chunksMax"
                throw chunksField.error("must be between 1 and \(most) (\(why)), got \(chunks)")
            }
        }
        let epochs = try fields.required("epochs").int(in: 1...Limits.epochsMax, limit: "Limits.epochsMax")
        let consistency = try fields.optional("consistency")?.choice("consistency mode", ConsistencyMode.self) ?? .sync
        return TrainingSpec(batchSize: batchSize, chunks: chunks, epochs: epochs, consistency: consistency)
    }

    private func earlyStoppingSpec(_ field: SpecField, loss: LossKind) throws(SpecError) -> EarlyStoppingSpec {
        let fields = try SpecFields(field, allowed: SpecSchema.earlyStopping)
        var monitor = MonitorMetric.valLoss
        if let monitorField = fields.optional("monitor") {
            monitor = try monitorField.choice("metric", MonitorMetric.self)
            if monitor == .valAccuracy && !loss.isClassification {
                throw monitorField.error("val_accuracy requires a classification loss "
                    + "(softmax_cross_entropy or binary_cross_entropy), but loss is \(loss.rawValue)")
            }
        }
        let patience = try fields.required("patience").int(in: 0...Limits.epochsMax, limit: "Limits.epochsMax")
        var minDelta = 0.0
        if let deltaField = fields.optional("min_delta") {
            minDelta = try deltaField.double()
            guard minDelta >= 0 else { throw deltaField.error("must be at least 0, got \(deltaField.node.text)") }
        }
        let restoreBest = try fields.optional("restore_best")?.bool() ?? true
        return EarlyStoppingSpec(monitor: monitor, patience: patience, minDelta: minDelta, restoreBest: restoreBest)
    }
}
