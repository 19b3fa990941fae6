import XCTest
import PSCore
@testable import PSControl
@testable import PSShard
import PSTransport
import PSWire

/// The coordinator as a table: each job state it can be in × each event that can reach it, and what
/// it must answer. The states are reached by driving the real coordinator, shard and worker machines.
final class CoordinatorStateTests: XCTestCase {
    enum State: String, CaseIterable {
        case idle               // no job
        case waitingForWorkers  // a job, no worker
        case running            // a step in progress
        case finishing          // trained and tested, the shard handing the weights over
        case ended              // the job completed
    }

    struct Fixture {
        var sim: Simulation
        let client: ConnectionID
        /// The finishing state's held hand-over (nil elsewhere).
        var handOver: CoordinatorEvent?
    }

    func reach(_ state: State) throws -> Fixture {
        let spec = smallJob(epochs: 1)
        var sim = try Simulation(spec: spec, seed: 11)
        let client = sim.connect(.client)
        if state == .idle { return Fixture(sim: sim, client: client) }
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        if state == .waitingForWorkers { return Fixture(sim: sim, client: client) }
        sim.holdShardAnswers = state == .finishing
        sim.addWorker(style: .parts)
        if state == .running { return Fixture(sim: sim, client: client) }
        var deliveries = 0
        while sim.step(duplicates: false) {
            deliveries += 1
            if deliveries >= 100_000 { throw CocoaError(.featureUnsupported) }
        }
        return Fixture(sim: sim, client: client, handOver: sim.heldShardAnswers.first)
    }

    func jobState(_ f: Fixture) -> JobState? { f.sim.coordinator.registry.jobs["job-1"]?.state }

    func lastReply(_ f: Fixture) -> Message? { f.sim.replies[f.client]?.last?.message }

    // The state each fixture is in, as status reports it.
    func testStatesAreReached() throws {
        let expected: [State: JobState?] = [.idle: nil, .waitingForWorkers: .waitingForWorkers, .running: .running,
                                            .finishing: .running, .ended: .completed]
        for state in State.allCases {
            let f = try reach(state)
            XCTAssertEqual(jobState(f), expected[state]!, state.rawValue)
            XCTAssertEqual(f.handOver != nil, state == .finishing, state.rawValue)
        }
    }

    // Status: answered in every state, with the job's state.
    func testStatusInEveryState() throws {
        for state in State.allCases {
            var f = try reach(state)
            f.sim.feed(.received(f.client, Envelope(requestId: 50, message: .statusRequest(jobId: ""))))
            guard case let .statusReply(reply)? = lastReply(f) else { XCTFail("\(state): no status"); continue }
            XCTAssertEqual(reply.jobs.map(\.state), jobState(f).map { [$0] } ?? [], state.rawValue)
        }
    }

    // Cancel: unknown job when idle, refused once ended, otherwise the job is cancelled (a finishing
    // job too: its hand-over then saves nothing).
    func testCancelInEveryState() throws {
        for state in State.allCases {
            var f = try reach(state)
            f.sim.feed(.received(f.client, Envelope(requestId: 51, message: .cancelJob(jobId: "job-1"))))
            switch state {
            case .idle:
                guard case let .error(e)? = lastReply(f) else { XCTFail("idle: no error"); continue }
                XCTAssertEqual(e.code, .unknownJob)
            case .ended:
                guard case let .error(e)? = lastReply(f) else { XCTFail("ended: no error"); continue }
                XCTAssertTrue(e.message.contains("already ended"), e.message)
                XCTAssertEqual(jobState(f), .completed)
            case .waitingForWorkers, .running, .finishing:
                guard case .ack? = lastReply(f) else { XCTFail("\(state): no ack"); continue }
                XCTAssertEqual(jobState(f), .cancelled, state.rawValue)
                if let handOver = f.handOver { f.sim.feed(handOver) }
                XCTAssertTrue(f.sim.models.isEmpty, state.rawValue)
                XCTAssertEqual(jobState(f), .cancelled, state.rawValue)
            }
        }
    }

    // The shard's hand-over: only a finishing job ends by it (completed, model saved); in every other
    // state it changes nothing.
    func testHandOverInEveryState() throws {
        let finishing = try reach(.finishing)
        let handOver = try XCTUnwrap(finishing.handOver)
        for state in State.allCases {
            var f = try reach(state)
            let before = jobState(f)
            let replies = f.sim.replies[f.client, default: []].count
            f.sim.feed(handOver)
            if state == .finishing {
                XCTAssertEqual(jobState(f), .completed)
                XCTAssertNotNil(f.sim.models["job-1"])
            } else {
                XCTAssertEqual(jobState(f), before, state.rawValue)
                XCTAssertEqual(f.sim.replies[f.client, default: []].count, replies, state.rawValue)
                XCTAssertEqual(f.sim.models.count, state == .ended ? 1 : 0, state.rawValue)
            }
        }
    }

    // Shutdown: no job changes state (a live one, finishing included, resumes at the next start; an
    // ended one stays as it was); every connection is closed and the server refuses what comes after.
    func testShutdownInEveryState() throws {
        for state in State.allCases {
            var f = try reach(state)
            let before = jobState(f)
            f.sim.feed(.shutdown)
            switch state {
            case .idle: XCTAssertNil(jobState(f))
            case .ended: XCTAssertEqual(jobState(f), .completed)
            case .waitingForWorkers, .running, .finishing:
                XCTAssertEqual(jobState(f), before, state.rawValue)
                XCTAssertEqual(jobState(f)?.isFinal, false, state.rawValue)
            }
            XCTAssertTrue(f.sim.closed.contains(f.client), state.rawValue)
            if let handOver = f.handOver {
                f.sim.feed(handOver)
                XCTAssertTrue(f.sim.models.isEmpty)
            }
        }
    }

    // A tick changes no job's state in any state (deadlines are far away).
    func testTickInEveryState() throws {
        for state in State.allCases {
            var f = try reach(state)
            let before = jobState(f)
            f.sim.feed(.tick)
            XCTAssertEqual(jobState(f), before, state.rawValue)
        }
    }
}
