import Foundation
import PSCore
import PSWire

/// The records the server writes, typed: models in the model file format, job records as JSON.
extension RecordStore {
    /// Stores a completed job's model (the bytes of a model file, as `TrainedModel.write(to:)` writes).
    public func putModel(_ model: TrainedModel, jobId: String) throws(StoreError) {
        try put(model.serialized(), at: .model(jobId))
    }

    /// A job's stored model, or nil when it has none. A record that is not a valid model file is an
    /// error naming where it is and what is wrong with it.
    public func model(jobId: String) throws(StoreError) -> TrainedModel? {
        let key = RecordKey.model(jobId)
        guard let bytes = try get(key) else { return nil }
        do {
            return try TrainedModel(serialized: bytes)
        } catch {
            throw StoreError(path: location(of: key), "not a valid model file: \(error)")
        }
    }

    /// Stores a finished job's result (the same fields `psctl wait --json` prints, and the message).
    public func putJobRecord(_ result: JobResult) throws(StoreError) {
        let key = RecordKey.jobRecord(result.jobId)
        do {
            try put(try JobRecordFile(result).encoded(), at: key)
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(path: location(of: key), "cannot encode the job record: \(error)")
        }
    }

    /// A job's stored result, or nil when it has none.
    public func jobRecord(jobId: String) throws(StoreError) -> JobResult? {
        let key = RecordKey.jobRecord(jobId)
        guard let bytes = try get(key) else { return nil }
        do {
            return try JobRecordFile.decode(bytes).result(expectedJobId: jobId)
        } catch let error as JobRecordFile.Invalid {
            throw StoreError(path: location(of: key), "not a valid job record: \(error.reason)")
        } catch {
            throw StoreError(path: location(of: key), "not a valid job record: \(error)")
        }
    }

    /// The number after the highest `job-N` the store holds anything for (1 for an empty store), so a
    /// restarted server never writes over an earlier job's files.
    public func nextJobNumber() throws(StoreError) -> Int {
        let numbers = try jobIds().compactMap { $0.hasPrefix("job-") ? Int($0.dropFirst(4)) : nil }
        return (numbers.max() ?? 0) + 1
    }
}

/// `jobs/<id>/result.json`: one JSON object with the `psctl wait --json` names, e.g.
///
///     {"format": "ps-job-record/1", "job_id": "job-3", "state": "completed", "message": "",
///      "weights_sha256": "74a9…", "summary": {"epochs_run": 10, "best_epoch": 10, …}}
///
/// `summary` is absent when the job ended before finishing an epoch; optional figures are absent when
/// the job has none; non-finite numbers are written as the strings "nan", "inf" and "-inf".
struct JobRecordFile: Codable, Equatable {
    static let currentFormat = "ps-job-record/1"

    var format: String
    var jobId: String
    var state: String
    var message: String
    var weightsSHA256: String
    var summary: Summary?

    struct Summary: Codable, Equatable {
        var epochsRun: Int
        var bestEpoch: Int
        var stoppedEarly: Bool
        var trainLoss: Double
        var validationLoss: Double?
        var validationAccuracy: Double?
        var testLoss: Double?
        var testAccuracy: Double?
        var testMSE: Double?
        var samplesPerSecond: Double
        /// Absent in records written before signatures were recorded.
        var computeSignatures: [String]?

        enum CodingKeys: String, CodingKey {
            case epochsRun = "epochs_run", bestEpoch = "best_epoch", stoppedEarly = "stopped_early"
            case trainLoss = "train_loss", validationLoss = "val_loss", validationAccuracy = "val_accuracy"
            case testLoss = "test_loss", testAccuracy = "test_accuracy", testMSE = "test_mse"
            case samplesPerSecond = "samples_per_second", computeSignatures = "compute_signatures"
        }
    }

    enum CodingKeys: String, CodingKey {
        case format, jobId = "job_id", state, message, weightsSHA256 = "weights_sha256", summary
    }

    /// Why bytes are not a job record this build reads.
    struct Invalid: Error {
        var reason: String
    }

    init(_ result: JobResult) {
        format = Self.currentFormat
        jobId = result.jobId
        state = result.state.rawValue
        message = result.message
        weightsSHA256 = result.weightsSHA256
        summary = result.summary.map { s in
            Summary(epochsRun: s.epochsRun, bestEpoch: s.bestEpoch, stoppedEarly: s.stoppedEarly, trainLoss: s.trainLoss,
                    validationLoss: s.validationLoss, validationAccuracy: s.validationAccuracy, testLoss: s.testLoss,
                    testAccuracy: s.testAccuracy, testMSE: s.testMSE, samplesPerSecond: s.samplesPerSecond,
                    computeSignatures: s.computeSignatures)
        }
    }

    private static let nonFinite = (positive: "inf", negative: "-inf", nan: "nan")

    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: Self.nonFinite.positive, negativeInfinity: Self.nonFinite.negative, nan: Self.nonFinite.nan)
        return Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
    }

    static func decode(_ bytes: [UInt8]) throws -> JobRecordFile {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: nonFinite.positive, negativeInfinity: nonFinite.negative, nan: nonFinite.nan)
        return try decoder.decode(JobRecordFile.self, from: Data(bytes))
    }

    /// The `JobResult` this record holds, after checking its format, id and state.
    func result(expectedJobId: String) throws(Invalid) -> JobResult {
        guard format == Self.currentFormat else {
            throw Invalid(reason: "format is '\(format.prefix(64))', not \(Self.currentFormat)")
        }
        guard jobId == expectedJobId else { throw Invalid(reason: "job_id is '\(jobId.prefix(64))', not '\(expectedJobId)'") }
        guard let jobState = JobState(rawValue: state), jobState.isFinal else {
            throw Invalid(reason: "state '\(state.prefix(64))' is not a final job state")
        }
        return JobResult(jobId: jobId, state: jobState, summary: summary.map { s in
            var summary = TrainingSummary(epochsRun: s.epochsRun, bestEpoch: s.bestEpoch, stoppedEarly: s.stoppedEarly,
                                          trainLoss: s.trainLoss, validationLoss: s.validationLoss,
                                          validationAccuracy: s.validationAccuracy, testLoss: s.testLoss,
                                          testAccuracy: s.testAccuracy, testMSE: s.testMSE,
                                          samplesPerSecond: s.samplesPerSecond)
            summary.computeSignatures = s.computeSignatures ?? []
            return summary
        }, weightsSHA256: weightsSHA256, message: message)
    }
}
