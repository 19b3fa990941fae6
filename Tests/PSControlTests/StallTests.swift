import XCTest
import PSCore
@testable import PSControl
import PSTransport
import PSWire
import PSTestSupport

/// Loads that never finish and jobs that stop moving, on simulated time: a load past its deadline fails
/// its job (and is cancelled) while the queue moves on; a stalled job says why, in the log once per stall
/// and in status until it moves again.
final class StallTests: XCTestCase {
    static let config = CoordinatorConfig(address: "sim", loadTimeoutSeconds: 60, stallSeconds: 30)

    func status(_ sim: inout Simulation, _ client: ConnectionID) throws -> [JobStatus] {
        sim.feed(.received(client, Envelope(requestId: 90, message: .statusRequest(jobId: ""))))
        guard case let .statusReply(status)? = sim.replies[client]?.last?.message else {
            XCTFail("no status reply")
            throw CocoaError(.featureUnsupported)
        }
        return status.jobs
    }

    func warnings(_ sim: Simulation, _ message: String) -> [[String: String]] {
        sim.logs.filter { $0.0 == .warning && $0.1 == message }.map(\.2)
    }

    /// Advances the clock in ticks of a quarter second (as the runtime's timer) up to `seconds`; every
    /// connected worker heartbeats each second (so none is removed), nothing else is delivered.
    func wait(_ sim: inout Simulation, _ seconds: Double) {
        for i in 1...Int(seconds * 4) {
            sim.clock.advance(by: 0.25)
            sim.feed(.tick)
            guard i % 4 == 0 else { continue }
            for id in sim.workers.keys.sorted() {
                guard let wid = sim.coordinator.membership.connections[id]?.workerId else { continue }
                sim.feed(.received(id, Envelope(requestId: 0, message: .heartbeat(Heartbeat(workerId: wid, stepsDone: 0,
                                                                                             samplesPerSecond: 0)))))
            }
        }
    }

    // A load that never answers: status says "loading data", then (past the stall time) for how long;
    // the log says so once; at the deadline the job fails naming the deadline and its files, the load is
    // cancelled, the next job's load starts at once, and a late answer for the first job changes nothing.
    func testALoadPastItsDeadlineFailsItsJobAndTheQueueMovesOn() throws {
        let spec = smallJob()
        var sim = try Simulation(spec: spec, seed: 1, config: Self.config)
        sim.holdPrepares = true
        let client = sim.connect(.client)
        sim.addWorker()
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        sim.feed(.received(client, Envelope(requestId: 3, message: .submitJob(spec))))
        XCTAssertEqual(sim.loading.map(\.jobId), ["job-1"], "one job loads at a time")

        wait(&sim, 29)
        var jobs = try status(&sim, client)
        XCTAssertEqual(jobs[0].message, Coordinator.preparingMessage)
        XCTAssertEqual(jobs[0].stallReason, "")
        XCTAssertTrue(warnings(sim, "job stalled").isEmpty)

        wait(&sim, 2)
        jobs = try status(&sim, client)
        XCTAssertTrue(jobs[0].stallReason.hasPrefix("still loading data after 31 s"), jobs[0].stallReason)
        wait(&sim, 10)
        XCTAssertEqual(warnings(sim, "job stalled").count, 1, "logged once per stall")
        XCTAssertEqual(warnings(sim, "job stalled").first?["job"], "job-1")
        XCTAssertTrue(sim.cancelledLoads.isEmpty)

        wait(&sim, 20)
        jobs = try status(&sim, client)
        XCTAssertEqual(jobs[0].state, .failed)
        XCTAssertTrue(jobs[0].message.hasPrefix("loading data took longer than 60 s"), jobs[0].message)
        XCTAssertTrue(jobs[0].message.contains("data.train.images: \(spec.dataPaths[0].path)"), jobs[0].message)
        XCTAssertEqual(jobs[0].stallReason, "", "an ended job is not stalled")
        XCTAssertEqual(sim.cancelledLoads.map(\.jobId), ["job-1"])
        XCTAssertEqual(sim.loading.map(\.jobId), ["job-2"], "the next job's load starts at once")

        // The abandoned load answers after all: ignored.
        sim.feed(.prepared(jobId: "job-1", .failure(PreparationError("load stopped: the job failed"))))
        jobs = try status(&sim, client)
        XCTAssertTrue(jobs[0].message.hasPrefix("loading data took longer than 60 s"), jobs[0].message)
        XCTAssertEqual(jobs[1].state, .submitted)
    }

    // Cancelling a job whose data is loading cancels the load; a stopping server cancels it too (the job
    // stays queued in the journal and loads again at the next start).
    func testCancelAndShutdownCancelTheLoad() throws {
        let spec = smallJob()
        var sim = try Simulation(spec: spec, seed: 2, config: Self.config)
        sim.holdPrepares = true
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        sim.feed(.received(client, Envelope(requestId: 3, message: .submitJob(spec))))
        sim.feed(.received(client, Envelope(requestId: 4, message: .cancelJob(jobId: "job-1"))))
        XCTAssertEqual(sim.cancelledLoads.map(\.jobId), ["job-1"])
        XCTAssertEqual(sim.cancelledLoads.first?.reason, "cancelled by a client")
        XCTAssertEqual(sim.loading.map(\.jobId), ["job-2"])
        sim.feed(.shutdown)
        XCTAssertEqual(sim.cancelledLoads.map(\.jobId), ["job-1", "job-2"])
        XCTAssertEqual(sim.cancelledLoads.last?.reason, "the server is stopping")
        XCTAssertEqual(sim.coordinator.registry.jobs["job-2"]?.state, .submitted, "not ended: it loads again next start")
    }

    // A worker that stops answering mid-step (its heartbeats keep it in the cluster): past the stall time
    // status names the chunks it holds, the worker and since when; the log says it once; once the step
    // is applied the reason is gone and the log says the job moves again.
    func testAStalledStepNamesTheWorkerItWaitsFor() throws {
        let spec = smallJob(chunks: 4, epochs: 1)
        var sim = try Simulation(spec: spec, seed: 3, config: Self.config)
        let client = sim.connect(.client)
        sim.addWorker(style: .parts)
        sim.addWorker(style: .parts)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        // Nothing is delivered: both workers hold their chunks; heartbeats keep them (timeout 10 s).
        wait(&sim, 29)
        XCTAssertEqual(try status(&sim, client)[0].stallReason, "")
        wait(&sim, 3)
        let reason = try status(&sim, client)[0].stallReason
        XCTAssertTrue(reason.hasPrefix("no progress for 32 s: step 1 waits for chunks 0-1 from worker 1 (w2, last heartbeat 0.0 s ago)"), reason)
        XCTAssertTrue(reason.contains("since 32 s ago"), reason)
        XCTAssertTrue(reason.contains("chunks 2-3 from worker 2"), reason)
        XCTAssertEqual(warnings(sim, "job stalled").count, 1)
        wait(&sim, 5)
        XCTAssertEqual(warnings(sim, "job stalled").count, 1, "once per stall")

        // Deliver until the first step is applied.
        var deliveries = 0
        while sim.coordinator.registry.jobs["job-1"]!.step == 0, sim.step(duplicates: false) { deliveries += 1 }
        XCTAssertEqual(try status(&sim, client)[0].stallReason, "")
        XCTAssertTrue(sim.logs.contains { $0.1 == "job moving again" })
    }

    // With only workers of another compute signature connected, the reason says so.
    func testNoWorkerOfTheJobsSignature() throws {
        var spec = smallJob()
        spec.training.computeSignature = SignatureTests.other
        var sim = try Simulation(spec: spec, seed: 4, config: Self.config)
        let client = sim.connect(.client)
        sim.addWorker()
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        wait(&sim, 31)
        let job = try status(&sim, client)[0]
        XCTAssertEqual(job.state, .waitingForWorkers)
        XCTAssertTrue(job.stallReason.contains("no connected worker has the job's compute signature \(SignatureTests.other) "
                                               + "(1 connected worker has another)"), job.stallReason)
    }

    // No worker connected: the job says it waits for workers, and the stall clock does not run.
    func testNoStallWithoutWorkers() throws {
        let spec = smallJob()
        var sim = try Simulation(spec: spec, seed: 5, config: Self.config)
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        wait(&sim, 100)
        XCTAssertEqual(try status(&sim, client)[0].stallReason, "")
        sim.addWorker()
        wait(&sim, 1)
        XCTAssertEqual(try status(&sim, client)[0].stallReason, "", "the clock starts when a worker connects")
    }
}
