/// How many samples each split of a job holds, and the transform its features get: what the server
/// needs to plan a job (it never computes on the samples; the workers and `train --local` do).
/// `DataLoader.shape` (PSData) reads it from the files; the coordinator plans with it (`PreparedData`).
public struct DataShape: Equatable, Sendable {
    public var trainCount: Int
    public var validationCount: Int
    public var testCount: Int
    public var preprocessing: FittedPreprocessing

    public init(trainCount: Int, validationCount: Int, testCount: Int, preprocessing: FittedPreprocessing) {
        self.trainCount = trainCount
        self.validationCount = validationCount
        self.testCount = testCount
        self.preprocessing = preprocessing
    }
}
