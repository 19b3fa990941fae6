/// One epoch's figures. Losses are means over samples; accuracies only for classification.
public struct EpochReport: Equatable, Sendable {
    /// 1-based.
    public var epoch: Int
    public var trainLoss: Double
    public var trainAccuracy: Double?
    public var validationLoss: Double?
    public var validationAccuracy: Double?
    public var samplesPerSecond: Double
    public var seconds: Double
    /// Whether this epoch is the best so far by the monitored metric.
    public var improved: Bool
    public var bestEpoch: Int
    public var stopEarly: Bool

    public init(epoch: Int, trainLoss: Double, trainAccuracy: Double?, validationLoss: Double?, validationAccuracy: Double?,
                samplesPerSecond: Double, seconds: Double, improved: Bool, bestEpoch: Int, stopEarly: Bool) {
        self.epoch = epoch
        self.trainLoss = trainLoss
        self.trainAccuracy = trainAccuracy
        self.validationLoss = validationLoss
        self.validationAccuracy = validationAccuracy
        self.samplesPerSecond = samplesPerSecond
        self.seconds = seconds
        self.improved = improved
        self.bestEpoch = bestEpoch
        self.stopEarly = stopEarly
    }
}
