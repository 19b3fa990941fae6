import Foundation
import PSCore

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
        let checkpoint = try top.optional("checkpoint").map { f throws(SpecError) in try checkpointSpec(f) } ?? CheckpointSpec()
        return JobSpec(name: name, seed: seed, data: data, model: model, loss: loss, optimizer: optimizer,
                       training: training, earlyStopping: earlyStopping, checkpoint: checkpoint)
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
        // open(2) reads a path up to its first NUL, so the rest would be silently cut off.
        if let nul = text.utf8.firstIndex(of: 0) {
            throw field.error("a path cannot hold a NUL byte (found at byte \(text.utf8.distance(from: text.utf8.startIndex, to: nul)))")
        }
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
}
