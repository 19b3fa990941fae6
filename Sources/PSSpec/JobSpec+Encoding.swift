import PSCore
import Yams

extension JobSpec {
    /// The spec as YAML in the schema it was read from, with every default written out, so that
    /// `parse(yamlText(), format: .yaml) == self`. `psctl model info` prints this.
    public func yamlText() -> String {
        var out = ""
        SpecWriter.yaml(documentTree(), indent: 0, into: &out)
        return out
    }

    /// The same document as JSON with a fixed key order, so equal specs give equal bytes (the wire
    /// and model files carry this text and may hash it).
    public func jsonText() -> String {
        var out = ""
        SpecWriter.json(documentTree(), indent: 0, into: &out)
        out += "\n"
        return out
    }

    /// The spec as a document tree in schema order. Hyper-parameters the optimizer does not use are
    /// left out, since the parser rejects them.
    func documentTree() -> SpecNode {
        typealias W = SpecWriter
        var dataEntries: [(String, SpecNode)] = [("format", W.string(data.format.rawValue)),
                                                 ("train", W.files(data.train))]
        if let validation = data.validation { dataEntries.append(("validation", W.files(validation))) }
        if let split = data.validationSplit { dataEntries.append(("validation_split", W.number(split))) }
        if let test = data.test { dataEntries.append(("test", W.files(test))) }
        switch data.preprocessing {
        case .none: dataEntries.append(("standardize", W.bool(false)))
        case let .scale(divisor): dataEntries.append(("scale", W.number(divisor)))
        case .standardize: dataEntries.append(("standardize", W.bool(true)))
        }
        if data.format == .csv {
            dataEntries.append(("header", W.bool(data.header)))
            switch data.labelColumn {
            case let .index(i): dataEntries.append(("label_column", W.integer(i)))
            case let .name(n): dataEntries.append(("label_column", W.string(n)))
            }
        }

        let layers = model.layers.map { layer in
            W.mapping([("units", W.integer(layer.units)), ("activation", W.string(layer.activation.rawValue)),
                       ("dropout", W.number(layer.dropout))])
        }

        var optimizerEntries: [(String, SpecNode)] = [("name", W.string(optimizer.kind.rawValue))]
        for key in SpecSchema.optimizerFields(optimizer.kind) {
            let value: Float? = switch key {
            case "learning_rate": optimizer.learningRate
            case "momentum": optimizer.momentum
            case "beta1": optimizer.beta1
            case "beta2": optimizer.beta2
            case "epsilon": optimizer.epsilon
            case "rho": optimizer.rho
            case "alpha": optimizer.alpha
            case "weight_decay": optimizer.weightDecay
            case "clip_norm": optimizer.clipNorm
            default: preconditionFailure("optimizer field \(key) has no OptimizerSpec property")
            }
            if let value { optimizerEntries.append((key, W.number(value))) }
        }

        var trainingEntries: [(String, SpecNode)] = [("batch_size", W.integer(training.batchSize)),
                                                     ("chunks", W.integer(training.chunks)),
                                                     ("epochs", W.integer(training.epochs)),
                                                     ("consistency", W.consistency(training.consistency))]
        if let signature = training.computeSignature { trainingEntries.append(("compute_signature", W.string(signature))) }
        if training.allowMixedSignatures { trainingEntries.append(("allow_mixed_signatures", W.bool(true))) }
        trainingEntries.append(("on_non_finite", W.string(training.onNonFinite.rawValue)))
        // Written only when turned off in sync: on is sync's default (so a default spec's text is what it
        // was), and the other modes read it as off.
        if training.consistency.mode == .sync && !training.backupChunks {
            trainingEntries.append(("backup_chunks", W.bool(false)))
        }
        var entries: [(String, SpecNode)] = [
            ("name", W.string(name)),
            ("seed", SpecNode(.integer(negative: false, magnitude: seed), text: String(seed))),
            ("data", W.mapping(dataEntries)),
            ("model", W.mapping([("inputs", W.integer(model.inputs)), ("layers", SpecNode(.sequence(layers)))])),
            ("loss", W.string(loss.rawValue)),
            ("optimizer", W.mapping(optimizerEntries)),
            ("training", W.mapping(trainingEntries)),
        ]
        if let earlyStopping {
            entries.append(("early_stopping", W.mapping([
                ("monitor", W.string(earlyStopping.monitor.rawValue)),
                ("patience", W.integer(earlyStopping.patience)),
                ("min_delta", W.number(earlyStopping.minDelta)),
                ("restore_best", W.bool(earlyStopping.restoreBest)),
            ])))
        }
        // Written only when not the defaults, so a spec without the section reads back the same.
        if checkpoint != CheckpointSpec() {
            entries.append(("checkpoint", W.mapping([
                ("every_steps", W.integer(checkpoint.everySteps)),
                ("every_seconds", W.number(checkpoint.everySeconds)),
                ("at_epoch_end", W.bool(checkpoint.atEpochEnd)),
                ("keep", W.integer(checkpoint.keep)),
            ])))
        }
        return W.mapping(entries)
    }
}

/// Builds and prints document trees. Numbers are printed with Swift's shortest round-trip form,
/// which both YAML 1.1 and JSON read back to the same value.
enum SpecWriter {
    static func string(_ s: String) -> SpecNode { SpecNode(.string(s), text: s) }
    static func bool(_ b: Bool) -> SpecNode { SpecNode(.bool(b), text: b ? "true" : "false") }
    static func integer(_ i: Int) -> SpecNode {
        SpecNode(.integer(negative: i < 0, magnitude: UInt64(i.magnitude)), text: String(i))
    }
    static func number(_ f: Float) -> SpecNode { SpecNode(.number(Double(f)), text: f.description) }
    static func number(_ d: Double) -> SpecNode { SpecNode(.number(d), text: d.description) }
    static func mapping(_ entries: [(String, SpecNode)]) -> SpecNode {
        SpecNode(.mapping(entries.map { SpecNode.Entry(key: $0.0, keyLocation: nil, value: $0.1) }))
    }
    /// `sync` and `async` as the plain mode; `delayed` and `ssp` as `{mode, staleness}`.
    static func consistency(_ c: Consistency) -> SpecNode {
        switch c.mode {
        case .sync, .async: return string(c.mode.rawValue)
        case .delayed, .ssp: return mapping([("mode", string(c.mode.rawValue)), ("staleness", integer(c.staleness))])
        }
    }
    static func files(_ files: DataFiles) -> SpecNode {
        switch files {
        case let .idx(images, labels): return mapping([("images", string(images)), ("labels", string(labels))])
        case let .csv(path): return mapping([("path", string(path))])
        }
    }

    /// Block style for sections; flow style (`{units: 10, ...}`) for mappings of scalars, which are
    /// the leaves of this schema (file splits, layers, small sections read better on one line).
    static func yaml(_ node: SpecNode, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        switch node.value {
        case let .mapping(entries):
            for entry in entries {
                out += "\(pad)\(entry.key):"
                switch entry.value.value {
                case let .mapping(inner) where inner.allSatisfy({ isScalar($0.value) }):
                    out += " \(flow(entry.value))\n"
                case .mapping:
                    out += "\n"
                    yaml(entry.value, indent: indent + 2, into: &out)
                case let .sequence(items):
                    out += "\n"
                    for item in items { out += "\(pad)  - \(flow(item))\n" }
                default:
                    out += " \(scalarYAML(entry.value))\n"
                }
            }
        default:
            out += "\(pad)\(flow(node))\n"
        }
    }

    private static func isScalar(_ node: SpecNode) -> Bool {
        switch node.value {
        case .mapping, .sequence: return false
        default: return true
        }
    }

    private static func flow(_ node: SpecNode) -> String {
        switch node.value {
        case let .mapping(entries):
            return "{" + entries.map { "\($0.key): \(flow($0.value))" }.joined(separator: ", ") + "}"
        case let .sequence(items):
            return "[" + items.map(flow).joined(separator: ", ") + "]"
        default:
            return scalarYAML(node)
        }
    }

    /// Strings are written plain when YAML would read them back as the same string, quoted otherwise
    /// (`"yes"`, `"1e5"`, paths with spaces or `:`).
    private static func scalarYAML(_ node: SpecNode) -> String {
        guard case let .string(s) = node.value else { return node.text }
        let safe = s.unicodeScalars.allSatisfy { c in
            c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || "._/-".unicodeScalars.contains(c))
        }
        let first = s.unicodeScalars.first
        let safeStart = first.map { $0 != "-" } ?? false
        if safe && safeStart && Resolver.default.resolveTag(of: Node(s)) == .str { return s }
        return quoted(s)
    }

    /// A double-quoted string with JSON escapes, which YAML's double-quoted style also reads.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where c.value < 0x20 || c.value == 0x7F:
                out += "\\u" + String(repeating: "0", count: 4 - String(c.value, radix: 16).count)
                    + String(c.value, radix: 16)
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    static func json(_ node: SpecNode, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent + 2)
        switch node.value {
        case let .mapping(entries):
            guard !entries.isEmpty else { out += "{}"; return }
            out += "{\n"
            for (i, entry) in entries.enumerated() {
                out += "\(pad)\(quoted(entry.key)): "
                json(entry.value, indent: indent + 2, into: &out)
                out += i == entries.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "}"
        case let .sequence(items):
            guard !items.isEmpty else { out += "[]"; return }
            out += "[\n"
            for (i, item) in items.enumerated() {
                out += pad
                json(item, indent: indent + 2, into: &out)
                out += i == items.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "]"
        case .string(let s):
            out += quoted(s)
        case .null:
            out += "null"
        default:
            out += node.text
        }
    }
}
