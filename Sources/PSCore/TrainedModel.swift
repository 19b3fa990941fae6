/// A trained model as stored in a model file and sent by the server: the spec that produced it, the
/// feature transform it expects, the flat parameter vector in layout order, and what training reported.
public struct TrainedModel: Equatable, Sendable {
    public var spec: JobSpec
    public var preprocessing: FittedPreprocessing
    /// All parameters, layer by layer: weights `[units × fanIn]` row-major, then biases `[units]`.
    public var parameters: [Float]
    public var summary: TrainingSummary

    public init(spec: JobSpec, preprocessing: FittedPreprocessing, parameters: [Float],
                summary: TrainingSummary) {
        self.spec = spec
        self.preprocessing = preprocessing
        self.parameters = parameters
        self.summary = summary
    }
}

/// What a finished training run reports; `psctl train --local --json` and `psctl wait --json` print it.
public struct TrainingSummary: Equatable, Sendable {
    public var epochsRun: Int
    /// 1-based epoch whose weights were kept (the last one unless early stopping restored the best).
    public var bestEpoch: Int
    public var stoppedEarly: Bool
    public var trainLoss: Double
    public var validationLoss: Double?
    public var validationAccuracy: Double?
    public var testLoss: Double?
    /// Classification only.
    public var testAccuracy: Double?
    /// Regression only (mean over samples and outputs of the squared error).
    public var testMSE: Double?
    public var samplesPerSecond: Double
    /// Every compute signature that computed this result's gradients, sorted. Exactly one: the result
    /// is bitwise-reproducible on hosts with that signature; more than one: it is not.
    public var computeSignatures: [String] = []

    /// Trained in ssp or async mode: the weights depend on the order pushes arrived in.
    public var timingDependent = false

    /// Whether the same job on hosts of this result's one signature gives these bits again.
    public var bitwiseReproducible: Bool { computeSignatures.count == 1 && !timingDependent }

    public init(epochsRun: Int, bestEpoch: Int, stoppedEarly: Bool, trainLoss: Double,
                validationLoss: Double? = nil, validationAccuracy: Double? = nil, testLoss: Double? = nil,
                testAccuracy: Double? = nil, testMSE: Double? = nil, samplesPerSecond: Double) {
        self.epochsRun = epochsRun
        self.bestEpoch = bestEpoch
        self.stoppedEarly = stoppedEarly
        self.trainLoss = trainLoss
        self.validationLoss = validationLoss
        self.validationAccuracy = validationAccuracy
        self.testLoss = testLoss
        self.testAccuracy = testAccuracy
        self.testMSE = testMSE
        self.samplesPerSecond = samplesPerSecond
    }
}
