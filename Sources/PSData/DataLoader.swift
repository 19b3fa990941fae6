import PSCore
import PSMath

/// One split after preprocessing: `count × width` features, row-major, and one target per sample.
public struct Dataset: Sendable {
    public let count: Int
    /// Features per sample.
    public let width: Int
    /// `count × width`, row-major.
    public var features: [Float]
    public let targets: Targets

    /// A dataset whose features and targets agree on `count` (a broken invariant traps).
    public init(count: Int, width: Int, features: [Float], targets: Targets) {
        precondition(features.count == count * width, "\(features.count) features for \(count) × \(width)")
        precondition(targets.count == count, "\(targets.count) targets for \(count) samples")
        self.count = count
        self.width = width
        self.features = features
        self.targets = targets
    }

    /// The samples at `indices`, in that order.
    public func gathered(_ indices: some Collection<Int>) -> Dataset {
        var out = [Float]()
        out.reserveCapacity(indices.count * width)
        for i in indices { out.append(contentsOf: features[(i * width)..<((i + 1) * width)]) }
        return Dataset(count: indices.count, width: width, features: out, targets: targets.gathered(indices))
    }

    /// `self = gathered(indices)` for ascending `indices`, made in place: each kept row moves down over the
    /// ones dropped before it, and the features shrink without a second copy of the split (for MNIST's
    /// training split 170 MB less to allocate, fault in and copy).
    public mutating func keep(ascending indices: [Int]) {
        var features: [Float] = []
        precondition(indices.last.map { $0 < count } ?? true, "index \(indices.last!) of \(count) samples")
        swap(&features, &self.features)  // the only reference, so the rows move in place
        features.withUnsafeMutableBufferPointer { f in
            for (row, i) in indices.enumerated() where row != i {
                precondition(row < i, "indices must ascend")
                (f.baseAddress! + row * width).update(from: f.baseAddress! + i * width, count: width)
            }
        }
        features.removeLast(features.count - indices.count * width)
        self = Dataset(count: indices.count, width: width, features: features, targets: targets.gathered(indices))
    }
}

/// Every split a job names, preprocessed, with the transform that was fitted on the training split.
public struct LoadedData: Sendable {
    public var train: Dataset
    public var validation: Dataset?
    public var test: Dataset?
    /// What was applied to every split; stored with the model so prediction applies the same.
    public var preprocessing: FittedPreprocessing

    public init(train: Dataset, validation: Dataset?, test: Dataset?, preprocessing: FittedPreprocessing) {
        self.train = train
        self.validation = validation
        self.test = test
        self.preprocessing = preprocessing
    }
}

/// Turns a job spec's data section into datasets; every error names the spec field it came from.
public enum DataLoader {
    /// Reads every split named in the spec, converts labels to Targets for the spec's loss and output
    /// units, takes the validation split, fits and applies preprocessing.
    /// `cancellation` stops it between files and, inside the readers, every piece of work (each MiB read
    /// or inflated, every few thousand CSV lines).
    public static func load(_ spec: JobSpec, cancellation: LoadCancellation = .never) throws -> LoadedData {
        let data = spec.data
        try cancellation.check(file: nil)
        var train = try readSplit(data.train, field: "data.train", spec: spec, cancellation: cancellation)
        var validation: Dataset?
        if let files = data.validation {
            if data.validationSplit != nil {
                throw DataError(field: "data.validation_split", message: "give data.validation files or data.validation_split, not both")
            }
            try cancellation.check(file: nil)
            validation = try readSplit(files, field: "data.validation", spec: spec, cancellation: cancellation)
        } else if let fraction = data.validationSplit {
            let split = try validationSplit(seed: spec.seed, count: train.count, fraction: fraction)
            validation = train.gathered(split.validation)
            train.keep(ascending: split.train)
        }
        try cancellation.check(file: nil)
        var test = try data.test.map { try readSplit($0, field: "data.test", spec: spec, cancellation: cancellation) }

        // Statistics come from the training samples only, after the validation samples are removed,
        // so validation and test measure what an unseen sample would get.
        let fitted = try fit(data.preprocessing, to: train)
        fitted.apply(to: &train.features, width: train.width)
        if validation != nil { fitted.apply(to: &validation!.features, width: train.width) }
        if test != nil { fitted.apply(to: &test!.features, width: train.width) }
        return LoadedData(train: train, validation: validation, test: test, preprocessing: fitted)
    }

    /// Reads one split (IDX pair or CSV file), checks its width against model.inputs, converts labels.
    static func readSplit(_ files: DataFiles, field: String, spec: JobSpec,
                          cancellation: LoadCancellation = .never) throws -> Dataset {
        switch files {
        case let .idx(imagesPath, labelsPath):
            let (images, targets) = try readIDXPair(imagesPath, labelsPath, field: field, spec: spec, cancellation: cancellation) {
                let file = try IDXReader.readImageFile(path: imagesPath, cancellation: cancellation)
                return (file.count, file.width, file.pixels)
            }
            return Dataset(count: images.count, width: images.width, features: images.value, targets: targets)

        case let .csv(path):
            let table = try attributing(to: field) {
                try CSVReader.read(path: path, header: spec.data.header, labelColumn: spec.data.labelColumn,
                                  cancellation: cancellation)
            }
            try checkSamples(table.count, width: table.width, path: path, field: field, spec: spec)
            let targets = try makeTargets(table.labels, spec: spec) { i in
                DataError(field: field, file: path, location: "line \(table.labelLines[i])", message: "")
            }
            return Dataset(count: table.count, width: table.width, features: table.features, targets: targets)
        }
    }

    /// Reads and checks an IDX pair of `field`: the images with `readImages` (count, width and what it
    /// makes of the pixels), then the labels, which must pair with the images one to one.
    static func readIDXPair<Pixels>(_ imagesPath: String, _ labelsPath: String, field: String, spec: JobSpec,
                                    cancellation: LoadCancellation,
                                    readImages: () throws -> (count: Int, width: Int, value: Pixels)) throws
        -> (images: (count: Int, width: Int, value: Pixels), targets: Targets)
    {
        let images = try attributing(to: "\(field).images", readImages)
        let labelFile = try attributing(to: "\(field).labels") {
            try IDXReader.readLabelFile(path: labelsPath, cancellation: cancellation)
        }
        if images.count != labelFile.labels.count {
            throw DataError(field: field, message: "'\(imagesPath)' holds \(images.count) images but '\(labelsPath)' holds \(labelFile.labels.count) labels; they must pair one to one")
        }
        try checkSamples(images.count, width: images.width, path: imagesPath, field: "\(field).images", spec: spec)
        let targets = try makeTargets(labelFile.labels.map(Float.init), spec: spec) { i in
            DataError(field: "\(field).labels", file: labelsPath,
                      location: labelFile.file.location(byte: labelFile.headerBytes + i), message: "")
        }
        return (images, targets)
    }

    private static func checkSamples(_ count: Int, width: Int, path: String, field: String, spec: JobSpec) throws {
        if count == 0 {
            throw DataError(field: field, file: path, message: "no samples")
        }
        if width != spec.model.inputs {
            throw DataError(field: "model.inputs", message: "\(spec.model.inputs) does not match the \(width) features in '\(path)'")
        }
    }

    /// Labels become class indices or real values as the loss and the output layer's units require;
    /// `locate(i)` gives an error already naming the field, file and place of label `i`.
    static func makeTargets(_ labels: [Float], spec: JobSpec, locate: (Int) -> DataError) throws -> Targets {
        let outputs = spec.model.outputs
        func bad(_ i: Int, _ message: String) -> DataError {
            var error = locate(i)
            error.message = message
            return error
        }
        func classes(context: String) throws -> Targets {
            var out = [Int32]()
            out.reserveCapacity(labels.count)
            for (i, label) in labels.enumerated() {
                guard label == label.rounded() else {
                    throw bad(i, "label \(show(label)) is not an integer class index in 0..<\(outputs)\(context)")
                }
                guard label >= 0, label < Float(outputs) else {
                    throw bad(i, "label \(show(label)) out of range 0..<\(outputs)\(context)")
                }
                out.append(Int32(label))
            }
            return .classes(out, classCount: outputs)
        }

        guard outputs >= 1 else {
            throw DataError(field: "model.layers", message: "the model has no output layer, so labels have nothing to match")
        }
        switch spec.loss {
        case .softmaxCrossEntropy:
            return try classes(context: "")
        case .binaryCrossEntropy:
            guard outputs == 1 else {
                throw DataError(field: "loss", message: "binary_cross_entropy needs 1 output unit; the model has \(outputs)")
            }
            for (i, label) in labels.enumerated() where label != 0 && label != 1 {
                throw bad(i, "label \(show(label)) is not 0 or 1, as binary_cross_entropy requires")
            }
            return .values(labels, width: 1)
        case .meanSquaredError where outputs == 1:
            for (i, label) in labels.enumerated() where !label.isFinite {
                throw bad(i, "label \(show(label)) is not finite")
            }
            return .values(labels, width: 1)
        case .meanSquaredError:
            return try classes(context: " (mean_squared_error with \(outputs) output units compares one-hot classes)")
        }
    }

    /// Integral labels print without a fraction ("11", not "11.0").
    private static func show(_ label: Float) -> String {
        if label.isFinite, label == label.rounded(), abs(label) < 1e9 { return String(Int(label)) }
        return "\(label)"
    }

    /// The transform for `preprocessing`, with standardisation's statistics taken from `train`.
    static func fit(_ preprocessing: Preprocessing, to train: Dataset) throws -> FittedPreprocessing {
        try fit(preprocessing) { featureStatistics(train) }
    }

    /// The transform for `preprocessing`; `statistics` is called for standardisation only.
    static func fit(_ preprocessing: Preprocessing,
                    statistics: () -> (mean: [Float], std: [Float])) throws -> FittedPreprocessing {
        switch preprocessing {
        case .none:
            return .none
        case let .scale(divisor):
            guard divisor.isFinite, divisor != 0 else {
                throw DataError(field: "data.preprocessing", message: "scale divisor \(divisor) must be finite and non-zero")
            }
            return .scale(divisor: divisor)
        case .standardize:
            let (mean, std) = statistics()
            return .standardize(mean: mean, std: std)
        }
    }

    /// Per-feature mean and population standard deviation (std 0 stored as 1, so constant features map
    /// to 0 rather than NaN). Two passes in Double: one-pass sums of squares lose digits to cancellation.
    static func featureStatistics(_ data: Dataset) -> (mean: [Float], std: [Float]) {
        let width = data.width
        let count = data.count
        precondition(count > 0, "statistics of an empty split")
        var sum = [Double](repeating: 0, count: width)
        var squares = [Double](repeating: 0, count: width)
        data.features.withUnsafeBufferPointer { x in
            sum.withUnsafeMutableBufferPointer { s in
                for row in 0..<count {
                    let base = row * width
                    for j in 0..<width { s[j] += Double(x[base + j]) }
                }
                for j in 0..<width { s[j] /= Double(count) }
            }
            squares.withUnsafeMutableBufferPointer { q in
                for row in 0..<count {
                    let base = row * width
                    for j in 0..<width {
                        let d = Double(x[base + j]) - sum[j]
                        q[j] += d * d
                    }
                }
            }
        }
        let mean = sum.map { Float($0) }
        let std = squares.map { q -> Float in
            let s = Float((q / Double(count)).squareRoot())
            return s == 0 ? 1 : s
        }
        return (mean, std)
    }
}
