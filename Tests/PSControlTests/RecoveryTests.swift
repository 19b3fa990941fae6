import XCTest
import PSCore
import PSData
@testable import PSControl
@testable import PSShard
import PSTrain
import PSTransport
import PSWire
import PSTestSupport

/// Crash recovery, state × event: the server dies at a chosen moment (a new coordinator and shard are
/// built from the journal and the checkpoints, as a restarted `ps-server` does), new workers join, and
/// the job ends with the local trainer's bits; queued jobs survive; ended ones are listed with results.
final class RecoveryTests: XCTestCase {
    /// Where to kill the server.
    enum Moment: CustomStringConvertible {
        /// Mid-epoch: once the shard's version reaches this.
        case version(Int)
        /// While the given kind of evaluation is under way (its first result not yet in).
        case evaluating(WorkKind)
        /// While a checkpoint is being written: taken, not yet stored.
        case writingCheckpoint

        var description: String {
            switch self {
            case let .version(v): "at version \(v)"
            case let .evaluating(kind): "during \(kind)"
            case .writingCheckpoint: "while a checkpoint is written"
            }
        }
    }

    static let spec: JobSpec = {
        var spec = smallJob(chunks: 5, epochs: 3,
                            earlyStopping: EarlyStoppingSpec(monitor: .valLoss, patience: 5, restoreBest: true),
                            optimizer: OptimizerSpec(kind: .adam, learningRate: 0.003))
        spec.checkpoint = CheckpointSpec(everySteps: 4, everySeconds: 0, atEpochEnd: true, keep: 2)
        return spec
    }()

    static let local: String = {
        LocalTrainer(spec: spec, data: try! DataLoader.load(spec)).run().weightsSHA256
    }()

    /// Runs `spec` with 2 workers, kills the server at `moments` (one after another), restarts it each
    /// time with 2 new workers, and returns the final result and the simulation.
    func run(_ spec: JobSpec, killing moments: [Moment], seed: UInt64, alsoQueued: JobSpec? = nil,
             beforeRestart: (inout Simulation) -> Void = { _ in }) throws -> (JobResult, Simulation) {
        var sim = try Simulation(spec: spec, seed: seed, shards: 2)
        var client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        if let queued = alsoQueued { sim.feed(.received(client, Envelope(requestId: 3, message: .submitJob(queued)))) }
        sim.addWorker()
        sim.addWorker()
        var pending = moments
        var deliveries = 0
        while true {
            if let moment = pending.first, reached(moment, &sim) {
                pending.removeFirst()
                beforeRestart(&sim)  // what the data directory holds when the new server starts
                sim.restartServer(workers: 2)
                continue
            }
            guard sim.step(duplicates: false) else { break }
            deliveries += 1
            if deliveries > 400_000 { XCTFail("simulation does not finish"); break }
        }
        XCTAssertTrue(pending.isEmpty, "never reached \(pending)")
        // A client that reconnects after the restarts and waits.
        client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 9, message: .waitJob(jobId: "job-1"))))
        guard case let .jobResult(result)? = sim.replies[client]?.last?.message else {
            XCTFail("job-1 did not end: \(sim.coordinator.registry.jobs["job-1"]?.state.rawValue ?? "?")")
            throw CocoaError(.featureUnsupported)
        }
        return (result, sim)
    }

    func reached(_ moment: Moment, _ sim: inout Simulation) -> Bool {
        switch moment {
        case let .version(v):
            return (sim.store?.version ?? 0) >= v
        case let .evaluating(kind):
            guard let work = sim.coordinator.run?.work, work.kind == kind else { return false }
            return work.evaluations.nodes.isEmpty
        case .writingCheckpoint:
            if !sim.checkpointsBeingWritten.isEmpty { return true }
            // Hold the next checkpoint once a first one is stored, so a newer one is lost mid-write.
            if !(sim.checkpoints["job-1"] ?? []).isEmpty { sim.holdCheckpoints = true }
            return false
        }
    }

    // Killed mid-epoch, during validation, while a checkpoint is being written and after the last
    // epoch before the test evaluation (with restore_best: the kept weights come from the checkpoint):
    // each time the job ends with the local trainer's bits.
    func testEachMomentKeepsTheBits() throws {
        let moments: [Moment] = [.version(6), .evaluating(.validate), .writingCheckpoint, .evaluating(.test)]
        for (i, moment) in moments.enumerated() {
            let (result, sim) = try run(Self.spec, killing: [moment], seed: UInt64(30 + i))
            XCTAssertEqual(result.weightsSHA256, Self.local, "killed \(moment)")
            XCTAssertTrue([.completed, .stoppedEarly].contains(result.state), "\(moment): \(result.state) \(result.message)")
            let resumed = sim.observations.compactMap { o -> Int? in if case let .jobResumed(_, step) = o { return step }; return nil }
            XCTAssertEqual(resumed.count, 1, "\(moment): one resume")
        }
    }

    // delayed d = 2: killed mid-epoch (twice), during validation and while a checkpoint is written; the
    // checkpoints carry the earlier versions the open steps compute on, so the job ends with the local
    // trainer's delayed bits.
    func testDelayedModeResumesWithTheLocalBits() throws {
        var spec = Self.spec
        spec.training.consistency = .delayed(2)
        let local = LocalTrainer(spec: spec, data: try DataLoader.load(spec)).run().weightsSHA256
        XCTAssertNotEqual(local, Self.local)
        let (result, sim) = try run(spec, killing: [.version(6), .version(13), .evaluating(.validate), .writingCheckpoint], seed: 52)
        XCTAssertEqual(result.weightsSHA256, local)
        let resumed = sim.observations.compactMap { o -> Int? in if case let .jobResumed(_, step) = o { return step }; return nil }
        XCTAssertEqual(resumed.count, 4)
        XCTAssertFalse(sim.logs.contains { $0.0 == .error }, "\(sim.logs.filter { $0.0 == .error })")
    }

    // Killed three times in one run, the last before any newer checkpoint: still the same bits.
    func testRepeatedKillsKeepTheBits() throws {
        let (result, _) = try run(Self.spec, killing: [.version(3), .version(9), .version(10), .evaluating(.validate)], seed: 41)
        XCTAssertEqual(result.weightsSHA256, Self.local)
    }

    // The newest checkpoint is missing (or unusable): the previous one is used; with none the job starts
    // over from its first step. The bits never change.
    func testFallsBackToOlderCheckpointsOrTheStart() throws {
        let (result, sim) = try run(Self.spec, killing: [.version(13)], seed: 43) { sim in
            XCTAssertGreaterThanOrEqual(sim.checkpoints["job-1"]?.count ?? 0, 2)
            sim.checkpoints["job-1"]!.removeLast()
        }
        XCTAssertEqual(result.weightsSHA256, Self.local)
        let steps = sim.observations.compactMap { o -> Int? in if case let .jobResumed(_, step) = o { return step }; return nil }
        XCTAssertEqual(steps.count, 1)
        XCTAssertLessThan(steps[0], 12, "resumed from the older checkpoint")

        let (again, simAgain) = try run(Self.spec, killing: [.version(13)], seed: 44) { sim in sim.checkpoints = [:] }
        XCTAssertEqual(again.weightsSHA256, Self.local)
        XCTAssertTrue(simAgain.observations.contains { if case .jobResumed(_, 0) = $0 { return true }; return false })
    }

    // A checkpoint of another spec (the same job id) is refused by its spec digest: the job starts over.
    func testACheckpointOfAnotherSpecIsNotUsed() throws {
        var other = Self.spec
        other.seed += 1
        let (result, sim) = try run(Self.spec, killing: [.version(9)], seed: 45) { sim in
            let foreign = sim.checkpoints["job-1"]!.map { c -> Checkpoint in
                var c = c
                c.specSHA256 = Digest.sha256(other.wireBytes())
                return c
            }
            sim.checkpoints["job-1"] = foreign
        }
        XCTAssertEqual(result.weightsSHA256, Self.local)
        XCTAssertTrue(sim.observations.contains { if case .jobResumed(_, 0) = $0 { return true }; return false })
    }

    // A job queued behind the running one survives the crash and runs afterwards; after a second restart
    // both are listed as ended with their results, and job ids continue after them.
    func testQueuedJobSurvivesAndEndedJobsAreListed() throws {
        var second = smallJob(chunks: 3, epochs: 1)
        second.name = "second"
        let (result, firstSim) = try run(Self.spec, killing: [.version(5)], seed: 47, alsoQueued: second)
        XCTAssertEqual(result.weightsSHA256, Self.local)
        var sim = firstSim
        while sim.step(duplicates: false) {}
        let secondLocal = LocalTrainer(spec: second, data: try DataLoader.load(second)).run().weightsSHA256
        XCTAssertEqual(sim.coordinator.result(of: "job-2")?.weightsSHA256, secondLocal)
        sim.restartServer(workers: 0, firstJobNumber: 3)
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 4, message: .listJobs)))
        guard case let .jobList(list)? = sim.replies[client]?.last?.message else { return XCTFail("no job list") }
        XCTAssertEqual(list.map(\.jobId), ["job-1", "job-2"])
        XCTAssertTrue(list.allSatisfy { $0.state.isFinal })
        sim.feed(.received(client, Envelope(requestId: 5, message: .waitJob(jobId: "job-2"))))
        guard case let .jobResult(r)? = sim.replies[client]?.last?.message else { return XCTFail("no result") }
        XCTAssertEqual(r.weightsSHA256, secondLocal)
        // A model no longer in memory is read from the data directory.
        sim.feed(.received(client, Envelope(requestId: 6, message: .fetchModel(jobId: "job-1"))))
        guard case let .modelData(model)? = sim.replies[client]?.last?.message else { return XCTFail("no model") }
        XCTAssertEqual(weightsSHA256(model.parameters), Self.local)
        sim.feed(.received(client, Envelope(requestId: 7, message: .submitJob(second))))
        guard case let .submitted(id)? = sim.replies[client]?.last?.message else { return XCTFail("not submitted") }
        XCTAssertEqual(id, "job-3", "ids are never reused")
    }

    // Checkpoints are taken every N steps and at epoch ends, one at a time, and status shows the last.
    func testCheckpointTriggersAndStatus() throws {
        var sim = try Simulation(spec: Self.spec, seed: 50)
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(Self.spec))))
        sim.addWorker()
        var seen: [Int] = []
        var statusSteps: [Int] = []
        while sim.step(duplicates: false) {
            if let last = sim.checkpoints["job-1"]?.last?.optimizerSteps, seen.last != last {
                seen.append(last)
                sim.feed(.received(client, Envelope(requestId: 3, message: .statusRequest(jobId: "job-1"))))
                if case let .statusReply(reply)? = sim.replies[client]?.last?.message, let step = reply.jobs.first?.checkpointStep {
                    statusSteps.append(step)
                }
            }
        }
        // 17 steps per epoch: every 4 steps and at each epoch's end (after its validation), and before
        // the test evaluation once the last epoch is over.
        XCTAssertEqual(seen, [4, 8, 12, 16, 17, 21, 25, 29, 33, 34, 38, 42, 46, 50, 51])
        XCTAssertEqual(statusSteps, seen)
        XCTAssertEqual(sim.checkpoints["job-1"]?.count, 2, "keep: 2")
    }
}
