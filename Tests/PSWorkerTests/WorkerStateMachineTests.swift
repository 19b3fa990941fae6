import PSCore
import PSWire
@testable import PSWorker
import XCTest

/// The worker's rules, state × event, with no sockets, threads or BLAS.
final class WorkerStateMachineTests: XCTestCase {
    static let spec = JobSpec(name: "t", seed: 1,
                        data: DataSpec(format: .idx, train: .idx(images: "/d/i", labels: "/d/l"), preprocessing: .scale(255)),
                        model: ModelSpec(inputs: 4, layers: [LayerSpec(units: 3, activation: .softmax)]),
                        loss: .softmaxCrossEntropy, optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1),
                        training: TrainingSpec(batchSize: 8, chunks: 2, epochs: 1), earlyStopping: nil)
    static let parameters = 4 * 3 + 3

    func sends(_ actions: [WorkerStateMachine.Action]) -> [Message] {
        actions.compactMap { if case let .send(m) = $0 { return m }; return nil }
    }
    func orders(_ actions: [WorkerStateMachine.Action]) -> [ComputeOrder] {
        actions.compactMap { if case let .compute(o) = $0 { return o }; return nil }
    }
    func reconnects(_ actions: [WorkerStateMachine.Action]) -> Bool {
        actions.contains { if case .reconnect = $0 { return true }; return false }
    }
    func assignment(version: Int = 0, kind: WorkKind = .train) -> Assignment {
        Assignment(jobId: "job-1", kind: kind, step: version, epoch: 0, version: version, batchStart: 0, batchSize: 8,
                   subtrees: [ChunkRange(firstChunk: 0, chunkCount: 2)])
    }

    /// A machine connected, registered as worker 7 and started on job-1.
    func started() -> WorkerStateMachine {
        var m = WorkerStateMachine(name: "w", threads: 2)
        _ = m.receive(.connected(serverName: "s"), now: 0)
        _ = m.receive(.received(.registered(Registered(workerId: 7, heartbeatIntervalMilliseconds: 500,
                                                       heartbeatTimeoutMilliseconds: 3000))), now: 0)
        _ = m.receive(.received(.startJob(StartJob(jobId: "job-1", spec: Self.spec))), now: 0)
        return m
    }

    // Proves connecting registers with the worker's name and threads, and registration starts the heartbeat.
    func testConnectRegistersAndRegistrationStartsTheHeartbeat() {
        var m = WorkerStateMachine(name: "w", threads: 2)
        XCTAssertEqual(sends(m.receive(.connected(serverName: "s"), now: 0)),
                       [.registerWorker(RegisterWorker(name: "w", threads: 2))])
        XCTAssertEqual(m.generation, 1)
        XCTAssertTrue(sends(m.receive(.heartbeatDue, now: 0)).isEmpty, "no heartbeat before registration")
        let actions = m.receive(.received(.registered(Registered(workerId: 7, heartbeatIntervalMilliseconds: 500,
                                                                 heartbeatTimeoutMilliseconds: 3000))), now: 0)
        XCTAssertTrue(actions.contains { if case .startHeartbeat(0.5) = $0 { return true }; return false })
        guard case let .heartbeat(h)? = sends(m.receive(.heartbeatDue, now: 1)).first else { return XCTFail("no heartbeat") }
        XCTAssertEqual(h.workerId, 7)
    }

    // Proves readiness follows registration: observed true when the server accepts the worker, false
    // when that connection is lost, and never on merely connecting.
    func testReadinessFollowsRegistration() {
        func registered(_ actions: [WorkerStateMachine.Action]) -> [Bool] {
            actions.compactMap { if case let .observe(.registered(up)) = $0 { return up }; return nil }
        }
        var m = WorkerStateMachine(name: "w", threads: 1)
        XCTAssertEqual(registered(m.receive(.connected(serverName: "s"), now: 0)), [])
        XCTAssertEqual(registered(m.receive(.received(.registered(Registered(workerId: 7, heartbeatIntervalMilliseconds: 500,
                                                                             heartbeatTimeoutMilliseconds: 3000))), now: 0)),
                       [true])
        XCTAssertEqual(registered(m.receive(.disconnected(reason: "reset"), now: 1)), [false])
    }

    // Proves a job start asks for its data once, and a repeated start of the same job does nothing.
    func testStartJobLoadsOnce() {
        var m = started()
        XCTAssertEqual(m.job?.jobId, "job-1")
        XCTAssertEqual(m.job?.parameterCount, Self.parameters)
        XCTAssertTrue(m.receive(.received(.startJob(StartJob(jobId: "job-1", spec: Self.spec))), now: 0).isEmpty)
        let other = m.receive(.received(.startJob(StartJob(jobId: "job-2", spec: Self.spec))), now: 0)
        XCTAssertTrue(other.contains { if case .load(jobId: "job-2", _) = $0 { return true }; return false })
    }

    // Proves an assignment is computed with its version's weights, whole or assembled from ranges in any order.
    func testAssignmentWithCompleteWeightsIsComputed() {
        var m = started()
        _ = m.receive(.received(.weights(Weights(jobId: "job-1", version: 0, tensor: TensorSlice(offset: 0, values: [Float](repeating: 1, count: Self.parameters))))), now: 0)
        let first = orders(m.receive(.received(.assignment(assignment())), now: 0))
        XCTAssertEqual(first.map(\.weights.count), [1])
        XCTAssertEqual(first.first?.generation, 1)
        // Version 1 in two ranges, the second first; a resent range replaces what it overlaps.
        for (offset, count) in [(12, 3), (0, 12), (12, 3)] {
            _ = m.receive(.received(.weights(Weights(jobId: "job-1", version: 1, tensor: TensorSlice(offset: offset, values: [Float](repeating: 2, count: count))))), now: 0)
        }
        let second = orders(m.receive(.received(.assignment(assignment(version: 1))), now: 0))
        XCTAssertEqual(second.first?.weights.map(\.offset), [0, 12])
        XCTAssertEqual(m.weights.map(\.version), [0, 1], "the two newest versions are held")
    }

    // Proves missing or incomplete weights make the worker reconnect instead of computing, and an
    // assignment for a job it was not started on is refused with a log line.
    func testAssignmentWithoutItsWeightsReconnects() {
        var m = started()
        XCTAssertTrue(reconnects(m.receive(.received(.assignment(assignment())), now: 0)))
        _ = m.receive(.received(.weights(Weights(jobId: "job-1", version: 0, tensor: TensorSlice(offset: 0, values: [1, 2, 3])))), now: 0)
        let partial = m.receive(.received(.assignment(assignment())), now: 0)
        XCTAssertTrue(reconnects(partial))
        XCTAssertTrue(orders(partial).isEmpty)
        var other = assignment()
        other.jobId = "job-9"
        let refused = m.receive(.received(.assignment(other)), now: 0)
        XCTAssertFalse(reconnects(refused))
        XCTAssertTrue(refused.contains { if case .log(.error, let text, _) = $0 { return text.contains("not started") }; return false })
    }

    // Proves results computed for an older connection are dropped, and current ones sent and counted.
    func testResultsOfAnOlderConnectionAreDropped() {
        var m = started()
        let push = PushGradient(jobId: "job-1", step: 0, subtree: ChunkRange(firstChunk: 0, chunkCount: 2),
                                gradient: TensorSlice(offset: 0, values: [1]), lossSum: 1, correct: 1, samples: 8)
        var report = ComputeReport(jobId: "job-1", kind: .train)
        report.samples = 8
        XCTAssertEqual(sends(m.receive(.pushReady(generation: 1, push), now: 1)), [.pushGradient(push)])
        _ = m.receive(.computed(generation: 1, report), now: 1)
        XCTAssertEqual(m.stepsDone, 1)
        _ = m.receive(.disconnected(reason: "reset"), now: 2)
        XCTAssertNil(m.workerId)
        XCTAssertTrue(m.weights.isEmpty)
        XCTAssertTrue(sends(m.receive(.pushReady(generation: 1, push), now: 3)).isEmpty)
        _ = m.receive(.computed(generation: 1, report), now: 3)
        XCTAssertEqual(m.stepsDone, 1, "a stale step is not counted")
    }

    // Proves an acknowledgement reports the push's round trip once, and an unknown one nothing.
    func testPushAcknowledgementTimesTheRoundTrip() {
        var m = started()
        let push = PushGradient(jobId: "job-1", step: 0, subtree: ChunkRange(firstChunk: 0, chunkCount: 2),
                                gradient: TensorSlice(offset: 12, values: [1, 2, 3]), lossSum: 1, correct: 1, samples: 8)
        _ = m.receive(.pushReady(generation: 1, push), now: 1)
        let ack = PushAck(jobId: "job-1", step: 0, subtree: push.subtree, duplicate: false, offset: 12)
        let actions = m.receive(.received(.pushAck(ack)), now: 1.25)
        XCTAssertTrue(actions.contains { if case .observe(.pushAcknowledged(seconds: 0.25)) = $0 { return true }; return false })
        XCTAssertTrue(m.receive(.received(.pushAck(ack)), now: 2).isEmpty)
    }

    // Proves a failed load and a computation without data are logged as errors and send nothing.
    // A worker that cannot load a job's data (or is not allowed to read it) logs it and tells the server,
    // which gives its chunks to others; a computation it was already given sends no result.
    func testLoadFailureIsLoggedAndReportedAndNoResultIsSent() {
        var m = started()
        let load = m.receive(.loaded(jobId: "job-1", .failure(.init("no such file /d/i"))), now: 0)
        XCTAssertTrue(load.contains { if case .log(.error, _, let f) = $0 { return f["error"] == "no such file /d/i" }; return false })
        XCTAssertEqual(sends(load), [.cannotRun(jobId: "job-1", reason: "no such file /d/i")])
        var report = ComputeReport(jobId: "job-1", kind: .validate)
        report.failure = "no such file /d/i"
        let computed = m.receive(.computed(generation: 1, report), now: 0)
        XCTAssertTrue(sends(computed).isEmpty)
        XCTAssertEqual(m.stepsDone, 0)
    }
}
