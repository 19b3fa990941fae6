import XCTest
import PSWireC
@testable import PSWire

/// Assignments, evaluation results, StartJob, status, job lists and job results: round trips of their
/// variants, and rejection of every malformed value by field name.
final class StatusAndWorkWireTests: XCTestCase {
    // MARK: Round trips

    func testAssignmentsOfEveryKindRoundTrip() throws {
        // Proves every work kind, one subtree or many, and extreme counts survive a frame.
        for kind in WorkKind.allCases {
            try assertRoundTrip(.assignment(Fixtures.assignment(kind: kind)))
            try assertRoundTrip(.assignment(Fixtures.assignment(kind: kind, subtrees: [ChunkRange(firstChunk: 0, chunkCount: 1)])))
        }
        try assertRoundTrip(.assignment(Assignment(
            jobId: "j", kind: .test, step: Int.max, epoch: Int.max, version: Int.max, batchStart: Int.max - 1, batchSize: 1,
            subtrees: (0..<1000).map { ChunkRange(firstChunk: $0 * 2, chunkCount: 2) })))
    }

    func testEvalResultsRoundTrip() throws {
        // Proves both evaluation kinds, a zero squared error and a NaN-free extreme result survive a frame.
        try assertRoundTrip(.evalResult(EvalResult(jobId: "j", kind: .test, epoch: 0, subtree: ChunkRange(firstChunk: 0, chunkCount: 8),
                                                   lossSum: 0, correct: 0, samples: 1)))
        try assertRoundTrip(.evalResult(EvalResult(jobId: "j", kind: .validate, epoch: 9, subtree: ChunkRange(firstChunk: 7, chunkCount: 1),
                                                   lossSum: .infinity, correct: Int.max, samples: Int.max,
                                                   squaredErrorSum: .greatestFiniteMagnitude)))
    }

    func testStartJobCarriesEverySpecVariant() throws {
        // Proves StartJob carries each spec variant unchanged.
        for variant in 0..<3 {
            try assertRoundTrip(.startJob(StartJob(jobId: "job-\(variant)", spec: Fixtures.spec(variant: variant))))
        }
    }

    func testStatusRepliesOfEverySizeRoundTrip() throws {
        // Proves empty, small and large clusters and job lists (every state, optionals present and absent) survive a frame.
        for (workers, jobs) in [(0, 0), (1, 0), (0, 1), (5, 3), (1000, 200)] {
            try assertRoundTrip(.statusReply(Fixtures.statusReply(workers: workers, jobs: jobs)))
        }
        for state in JobState.allCases {
            try assertRoundTrip(.statusReply(StatusReply(
                cluster: ClusterStatus(serverAddress: "", uptimeSeconds: 0, workers: []),
                jobs: [Fixtures.job(0, state: state), Fixtures.job(1, state: state)])))
        }
    }

    func testConsistencyAndStalenessCountsRoundTripAndAreBounded() throws {
        // Proves a job's consistency text and staleness histogram survive a frame (absent, every mode, the
        // most counts any mode allows), and that more counts than stalenesses 0...asyncStalenessMax, or a
        // count beyond Int, are refused naming the field.
        var job = Fixtures.job(2)
        XCTAssertEqual(job.consistency, "ssp (s=3)")
        XCTAssertEqual(job.stalenessCounts, [2, 0, 15])
        try assertRoundTrip(.jobList([job, Fixtures.job(0), Fixtures.job(1), Fixtures.job(3)]))
        job.stalenessCounts = Array(1...(ConsistencyLimits.asyncStalenessMax + 1))
        try assertRoundTrip(.jobList([job]))
        job.stalenessCounts.append(1)
        let tooMany = try payload(.jobList([job]))
        let error = assertWireError(try Envelope(payload: tooMany), names: "JobList.jobs[0].staleness_counts")
        XCTAssertTrue(error?.message.contains("34 counts, more than 33") ?? false, "\(String(describing: error))")
        let huge = edited(try payload(.jobList([Fixtures.job(2)])), unpack: ps__v1__envelope__unpack,
                          free: ps__v1__envelope__free_unpacked) { $0.pointee.job_list.pointee.jobs[0]!.pointee.staleness_counts[1] = .max }
        assertWireError(try Envelope(payload: huge), names: "JobList.jobs[0].staleness_counts[1]")
    }

    func testJobListsRoundTrip() throws {
        // Proves an empty job list and a long one survive a frame.
        try assertRoundTrip(.jobList([]))
        try assertRoundTrip(.jobList((0..<500).map { Fixtures.job($0) }))
    }

    func testEachOptionalJobMetricIsIndependent() throws {
        // Proves each optional metric is carried on its own: present alone, and a present 0 is not absent.
        var job = Fixtures.job(1)
        for keyPath in [\JobStatus.trainLoss, \.validationLoss, \.validationAccuracy, \.etaSeconds] {
            var one = job
            one[keyPath: keyPath] = 0
            try assertRoundTrip(.jobList([one]))
        }
        job.trainLoss = .nan
        guard case let .jobList(decoded) = try decode(.jobList([job])) else { return XCTFail("not a job list") }
        XCTAssertTrue(decoded[0].trainLoss?.isNaN ?? false, "a diverged job's NaN loss is reported, not rejected")
    }

    func testJobResultsRoundTrip() throws {
        // Proves results with and without a summary, every final state and an upper-case digest (decoded lower-case) survive.
        for state in JobState.allCases where state.isFinal {
            try assertRoundTrip(.jobResult(JobResult(jobId: "j", state: state)))
            try assertRoundTrip(.jobResult(JobResult(jobId: "j", state: state, summary: Fixtures.summaryNone,
                                                     weightsSHA256: Fixtures.digest, message: "m")))
        }
        try assertRoundTrip(.jobResult(JobResult(jobId: "j", state: .completed, summary: Fixtures.summaryAll)))
        let upper = JobResult(jobId: "j", state: .completed, summary: Fixtures.summaryAll, weightsSHA256: Fixtures.digest.uppercased())
        var lower = upper
        lower.weightsSHA256 = Fixtures.digest
        XCTAssertEqual(try decode(.jobResult(upper)), .jobResult(lower))
        XCTAssertEqual(Fixtures.digest.count, 64)
    }

    func testRequestsWithOnlyAJobIdRoundTrip() throws {
        // Proves status (for all jobs and for one), list and wait requests survive a frame.
        for message: Message in [.statusRequest(jobId: ""), .statusRequest(jobId: "job-9"), .listJobs, .waitJob(jobId: "job-9")] {
            try assertRoundTrip(message)
        }
    }

    func testJobStatesAndWireNames() {
        // Proves the raw values psctl prints and which states are final.
        XCTAssertEqual(JobState.allCases.map(\.rawValue), ["submitted", "waiting_for_workers", "running", "completed",
                                                           "stopped_early", "failed", "cancelled", "interrupted"])
        XCTAssertEqual(JobState.allCases.filter(\.isFinal), [.completed, .stoppedEarly, .failed, .cancelled, .interrupted])
        XCTAssertEqual(WorkerState.allCases.map(\.rawValue), ["idle", "working", "suspect", "lost"])
        XCTAssertEqual(WorkKind.allCases.map(\.rawValue), ["train", "validate", "test"])
    }

    func testRawBufferDecodeMatchesArrayAndNonContiguousDecode() throws {
        // Proves the zero-copy raw-buffer entry point, the array path and the copying path decode alike,
        // and the raw one checks the size limit and rejects garbage by name.
        let bytes = try payload(.statusReply(Fixtures.statusReply(workers: 3, jobs: 2)), requestId: 77)
        let expected = Envelope(requestId: 77, message: .statusReply(Fixtures.statusReply(workers: 3, jobs: 2)))
        XCTAssertEqual(try bytes.withUnsafeBytes { try Envelope(payload: $0) }, expected)
        XCTAssertEqual(try Envelope(payload: bytes), expected)
        XCTAssertEqual(try Envelope(payload: bytes.lazy.map { $0 }), expected)
        assertWireError(try Envelope(payload: UnsafeRawBufferPointer(start: nil, count: 0)), names: "Envelope: unknown body")
        assertWireError(try [UInt8](repeating: 0xFF, count: 9).withUnsafeBytes { try Envelope(payload: $0) },
                        names: "Envelope: not a valid protobuf message")
        let huge = UnsafeMutableRawBufferPointer.allocate(byteCount: WireLimits.frameBytesMax + 1, alignment: 1)
        defer { huge.deallocate() }
        let error = assertWireError(try Envelope(payload: UnsafeRawBufferPointer(huge)), names: "frameBytesMax")
        XCTAssertEqual(error?.kind, .tooLarge)
    }

    // MARK: Malformed values

    func testMalformedAssignmentsAreRejectedByField() throws {
        // Proves each invalid assignment field is rejected with its path.
        let good = try payload(.assignment(Fixtures.assignment()))
        func broken(_ edit: (UnsafeMutablePointer<Ps__V1__Assignment>) -> Void) -> [UInt8] {
            edited(good, unpack: ps__v1__envelope__unpack, free: ps__v1__envelope__free_unpacked) { edit($0.pointee.assignment) }
        }
        assertWireError(try Envelope(payload: broken { $0.pointee.kind = Ps__V1__WorkKind(rawValue: 0) }),
                        names: "Assignment.kind: missing")
        assertWireError(try Envelope(payload: broken { $0.pointee.kind = Ps__V1__WorkKind(rawValue: 4) }),
                        names: "Assignment.kind: 4 is not a known value")
        assertWireError(try Envelope(payload: broken { $0.pointee.job_id = strdup("") }), names: "Assignment.job_id: missing")
        assertWireError(try Envelope(payload: broken { $0.pointee.step = UInt64(Int.max) + 1 }), names: "Assignment.step")
        assertWireError(try Envelope(payload: broken { $0.pointee.epoch = .max }), names: "Assignment.epoch")
        assertWireError(try Envelope(payload: broken { $0.pointee.version = .max }), names: "Assignment.version")
        assertWireError(try Envelope(payload: broken { $0.pointee.batch_size = 0 }), names: "Assignment.batch_size")
        assertWireError(try Envelope(payload: broken { $0.pointee.batch_start = UInt64(Int.max) }),
                        names: "Assignment.batch_size: batch_start")
        assertWireError(try Envelope(payload: broken { $0.pointee.subtrees[2]!.pointee.chunk_count = 0 }),
                        names: "Assignment.subtrees[2].chunk_count")
        assertWireError(try Envelope(payload: broken { $0.pointee.subtrees[1]!.pointee.first_chunk = .max }),
                        names: "Assignment.subtrees[1].first_chunk")
        assertWireError(try Envelope(payload: broken { $0.pointee.subtrees[0]!.pointee.first_chunk = UInt64(Int.max) }),
                        names: "Assignment.subtrees[0].chunk_count")
        assertWireError(try Envelope(payload: broken { $0.pointee.n_subtrees = 0 }), names: "Assignment.subtrees: missing")
    }

    func testMalformedEvalResultsAreRejectedByField() throws {
        // Proves each invalid evaluation-result field is rejected with its path.
        let good = try payload(FrameTests.messages.first { if case .evalResult = $0 { true } else { false } }!)
        func broken(_ edit: (UnsafeMutablePointer<Ps__V1__EvalResult>) -> Void) -> [UInt8] {
            edited(good, unpack: ps__v1__envelope__unpack, free: ps__v1__envelope__free_unpacked) { edit($0.pointee.eval_result) }
        }
        assertWireError(try Envelope(payload: broken { $0.pointee.kind = Ps__V1__WorkKind(rawValue: 0) }), names: "EvalResult.kind: missing")
        assertWireError(try Envelope(payload: broken { $0.pointee.kind = Ps__V1__WorkKind(rawValue: 12) }), names: "EvalResult.kind: 12")
        assertWireError(try Envelope(payload: broken { $0.pointee.job_id = strdup("") }), names: "EvalResult.job_id: missing")
        assertWireError(try Envelope(payload: broken { $0.pointee.chunk_count = 0 }), names: "EvalResult.chunk_count")
        assertWireError(try Envelope(payload: broken { $0.pointee.epoch = .max }), names: "EvalResult.epoch")
        assertWireError(try Envelope(payload: broken { $0.pointee.samples = 0 }), names: "EvalResult.samples")
        assertWireError(try Envelope(payload: broken { $0.pointee.correct = 65 }), names: "EvalResult.correct: 65 is more than the 64 samples")
        assertWireError(try Envelope(payload: broken { $0.pointee.squared_error_sum = -1 }), names: "EvalResult.squared_error_sum")
        assertWireError(try Envelope(payload: broken { $0.pointee.squared_error_sum = .nan }), names: "EvalResult.squared_error_sum")
    }

    func testMalformedStartJobsAreRejectedByField() throws {
        // Proves a StartJob without a job id or spec, or with a broken spec, is rejected naming the path.
        let good = try payload(.startJob(StartJob(jobId: "job-1", spec: Fixtures.spec())))
        func broken(_ edit: (UnsafeMutablePointer<Ps__V1__StartJob>) -> Void) -> [UInt8] {
            edited(good, unpack: ps__v1__envelope__unpack, free: ps__v1__envelope__free_unpacked) { edit($0.pointee.start_job) }
        }
        assertWireError(try Envelope(payload: broken { $0.pointee.job_id = strdup("") }), names: "StartJob.job_id: missing")
        assertWireError(try Envelope(payload: broken { $0.pointee.spec = nil }), names: "StartJob.spec: missing")
        assertWireError(try Envelope(payload: broken { $0.pointee.spec.pointee.model.pointee.layers[1]!.pointee.units = 0 }),
                        names: "StartJob.spec.model.layers[1].units")
    }

    func testMalformedStatusRepliesAreRejectedByField() throws {
        // Proves bad states, counts, rates and missing parts anywhere in a status reply are rejected with their paths.
        let good = try payload(.statusReply(Fixtures.statusReply(workers: 5, jobs: 3)))
        func broken(_ edit: (UnsafeMutablePointer<Ps__V1__StatusReply>) -> Void) -> [UInt8] {
            edited(good, unpack: ps__v1__envelope__unpack, free: ps__v1__envelope__free_unpacked) { edit($0.pointee.status_reply) }
        }
        func job(_ i: Int, _ edit: @escaping (UnsafeMutablePointer<Ps__V1__JobStatus>) -> Void) -> [UInt8] {
            broken { edit($0.pointee.jobs[i]!) }
        }
        func worker(_ i: Int, _ edit: @escaping (UnsafeMutablePointer<Ps__V1__WorkerStatus>) -> Void) -> [UInt8] {
            broken { edit($0.pointee.cluster.pointee.workers[i]!) }
        }
        assertWireError(try Envelope(payload: job(2) { $0.pointee.state = Ps__V1__JobState(rawValue: 0) }),
                        names: "StatusReply.jobs[2].state: missing")
        assertWireError(try Envelope(payload: job(1) { $0.pointee.state = Ps__V1__JobState(rawValue: 9) }),
                        names: "StatusReply.jobs[1].state: 9 is not a known value")
        assertWireError(try Envelope(payload: job(0) { $0.pointee.job_id = strdup("") }), names: "StatusReply.jobs[0].job_id: missing")
        assertWireError(try Envelope(payload: job(0) { $0.pointee.epoch = .max }), names: "StatusReply.jobs[0].epoch")
        assertWireError(try Envelope(payload: job(1) { $0.pointee.epochs = .max }), names: "StatusReply.jobs[1].epochs")
        assertWireError(try Envelope(payload: job(2) { $0.pointee.step = .max }), names: "StatusReply.jobs[2].step")
        assertWireError(try Envelope(payload: job(2) { $0.pointee.steps_per_epoch = .max }), names: "StatusReply.jobs[2].steps_per_epoch")
        assertWireError(try Envelope(payload: job(2) { $0.pointee.best_epoch = .max }), names: "StatusReply.jobs[2].best_epoch")
        assertWireError(try Envelope(payload: job(0) { $0.pointee.validation_accuracy = 1.5 }),
                        names: "StatusReply.jobs[0].validation_accuracy: 1.5 is out of range")
        assertWireError(try Envelope(payload: job(0) { $0.pointee.eta_seconds = -3 }), names: "StatusReply.jobs[0].eta_seconds")
        assertWireError(try Envelope(payload: job(1) { $0.pointee.samples_per_second = .nan }),
                        names: "StatusReply.jobs[1].samples_per_second")
        assertWireError(try Envelope(payload: broken { $0.pointee.cluster = nil }), names: "StatusReply.cluster: missing")
        assertWireError(try Envelope(payload: broken { $0.pointee.cluster.pointee.uptime_seconds = -1 }),
                        names: "StatusReply.cluster.uptime_seconds")
        assertWireError(try Envelope(payload: worker(3) { $0.pointee.state = Ps__V1__WorkerState(rawValue: 42) }),
                        names: "StatusReply.cluster.workers[3].state: 42")
        assertWireError(try Envelope(payload: worker(4) { $0.pointee.state = Ps__V1__WorkerState(rawValue: 0) }),
                        names: "StatusReply.cluster.workers[4].state: missing")
        assertWireError(try Envelope(payload: worker(0) { $0.pointee.steps_done = .max }),
                        names: "StatusReply.cluster.workers[0].steps_done")
        assertWireError(try Envelope(payload: worker(1) { $0.pointee.last_heartbeat_age_seconds = -0.5 }),
                        names: "StatusReply.cluster.workers[1].last_heartbeat_age_seconds")
        assertWireError(try Envelope(payload: worker(2) { $0.pointee.samples_per_second = -.infinity }),
                        names: "StatusReply.cluster.workers[2].samples_per_second")
    }

    func testMalformedJobListsAndWaitsAreRejectedByField() throws {
        // Proves a job list element and a wait request name their bad fields.
        let list = edited(try payload(.jobList([Fixtures.job(0), Fixtures.job(1)])), unpack: ps__v1__envelope__unpack,
                          free: ps__v1__envelope__free_unpacked) { $0.pointee.job_list.pointee.jobs[1]!.pointee.epoch = .max }
        assertWireError(try Envelope(payload: list), names: "JobList.jobs[1].epoch")
        let wait = edited(try payload(.waitJob(jobId: "j")), unpack: ps__v1__envelope__unpack,
                          free: ps__v1__envelope__free_unpacked) { $0.pointee.wait_job.pointee.job_id = strdup("") }
        assertWireError(try Envelope(payload: wait), names: "WaitJob.job_id: missing")
    }

    func testMalformedJobResultsAreRejectedByField() throws {
        // Proves a bad digest length, a digest without summary, a non-final or unknown state and a bad summary are rejected.
        let good = try payload(.jobResult(JobResult(jobId: "j", state: .completed, summary: Fixtures.summaryAll,
                                                    weightsSHA256: Fixtures.digest)))
        func broken(_ edit: (UnsafeMutablePointer<Ps__V1__JobResult>) -> Void) -> [UInt8] {
            edited(good, unpack: ps__v1__envelope__unpack, free: ps__v1__envelope__free_unpacked) { edit($0.pointee.job_result) }
        }
        let short = assertWireError(try Envelope(payload: broken { $0.pointee.weights_sha256.len = 31 }),
                                    names: "JobResult.weights_sha256")
        XCTAssertEqual(short?.description, "JobResult.weights_sha256: 31 bytes (expected 0 or 32)")
        assertWireError(try Envelope(payload: broken { $0.pointee.summary = nil }),
                        names: "JobResult.weights_sha256: present without a summary")
        assertWireError(try Envelope(payload: broken { $0.pointee.state = PS__V1__JOB_STATE__JOB_STATE_RUNNING }),
                        names: "JobResult.state: running is not a final state")
        assertWireError(try Envelope(payload: broken { $0.pointee.state = Ps__V1__JobState(rawValue: 0) }),
                        names: "JobResult.state: missing")
        assertWireError(try Envelope(payload: broken { $0.pointee.state = Ps__V1__JobState(rawValue: 100) }),
                        names: "JobResult.state: 100")
        assertWireError(try Envelope(payload: broken { $0.pointee.job_id = strdup("") }), names: "JobResult.job_id: missing")
        assertWireError(try Envelope(payload: broken { $0.pointee.summary.pointee.epochs_run = .max }),
                        names: "JobResult.summary.epochs_run")
    }

    // MARK: Helpers

    private func decode(_ message: Message, file: StaticString = #filePath, line: UInt = #line) throws -> Message {
        var decoder = FrameReader()
        decoder.append(try encodeFrame(requestId: 5, message: message))
        let envelope = try XCTUnwrap(try decoder.next(), file: file, line: line)
        XCTAssertEqual(envelope.requestId, 5, file: file, line: line)
        XCTAssertNil(try decoder.next(), file: file, line: line)
        return envelope.message
    }

    private func assertRoundTrip(_ message: Message, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try decode(message, file: file, line: line), message, file: file, line: line)
    }
}
