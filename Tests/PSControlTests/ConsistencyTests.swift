import XCTest
import PSCore
import PSData
@testable import PSControl
@testable import PSShard
import PSTrain
import PSTransport
import PSWire
import PSTestSupport

/// The consistency modes in the pure coordinator, shard and workers (the simulation of
/// `CoordinatorExactnessTests`). delayed: the local trainer's bits with any workers, delivery order,
/// retransmissions and kills, and several steps really in flight. ssp/async: every batch applied once,
/// never staler than the bound, through kills and checkpoints. (An extension: it uses the simulation helpers.)
extension CoordinatorExactnessTests {
    func spec(_ consistency: Consistency, chunks: Int = 6, epochs: Int = 2) -> JobSpec {
        var spec = smallJob(chunks: chunks, epochs: epochs)
        spec.training.consistency = consistency
        return spec
    }

    // delayed d = 1, 2, 3: 1, 2 and 3 workers in order-ish delivery give the local trainer's bits and
    // figures, which differ from sync's; steps really overlap (up to d + 1 open at once).
    func testDelayedHasTheLocalBitsOnOneTwoThreeWorkers() throws {
        let (syncSHA, _) = try localSHA(smallJob())
        for d in [1, 2, 3] {
            let spec = spec(.delayed(d))
            let (sha, summary) = try localSHA(spec)
            XCTAssertNotEqual(sha, syncSHA, "d=\(d)")
            for n in 1...3 {
                var sim = try Simulation(spec: spec, seed: UInt64(n), shards: 1)
                let client = sim.connect(.client)
                sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
                for _ in 0..<n { sim.addWorker() }
                sim.feed(.received(client, Envelope(requestId: 3, message: .waitJob(jobId: "job-1"))))
                var mostOpen = 0
                var deliveries = 0
                while sim.step(duplicates: false) {
                    mostOpen = max(mostOpen, sim.coordinator.run?.works.filter { $0.kind == .train }.count ?? 0)
                    deliveries += 1
                    if deliveries > 200_000 { return XCTFail("simulation does not finish") }
                }
                guard case let .jobResult(result)? = sim.replies[client]?.last?.message else { return XCTFail("d=\(d) \(n): no result") }
                XCTAssertEqual(result.weightsSHA256, sha, "d=\(d), \(n) workers")
                XCTAssertEqual(result.summary?.trainLoss, summary.trainLoss, "d=\(d), \(n) workers")
                XCTAssertEqual(result.summary?.testAccuracy, summary.testAccuracy, "d=\(d), \(n) workers")
                XCTAssertEqual(mostOpen, d + 1, "d=\(d), \(n) workers: steps in flight")
                XCTAssertFalse(sim.logs.contains { $0.0 == .error }, "d=\(d) \(n): \(sim.logs.filter { $0.0 == .error })")
            }
        }
    }

    // delayed with random delivery, retransmitted pushes, workers killed with chunks of several open
    // steps and new ones joining, on 3 key ranges: still the local bits.
    func testDelayedChaosKeepsTheBits() throws {
        for d in [1, 2] {
            let spec = spec(.delayed(d), chunks: 7)
            let (sha, _) = try localSHA(spec)
            for seed in UInt64(21)..<24 {
                let (clusterSHA, _, sim) = try simulate(spec, workers: 3, seed: seed, chaos: true, shards: 3)
                XCTAssertEqual(clusterSHA, sha, "d=\(d) seed \(seed)")
                XCTAssertTrue(sim.logs.contains { $0.1 == "worker left" }, "seed \(seed) killed nobody")
                XCTAssertFalse(sim.logs.contains { $0.0 == .error }, "d=\(d) seed \(seed): \(sim.logs.filter { $0.0 == .error })")
            }
        }
    }

    // delayed, clipped (each step applied whole after all its pushes): the local bits.
    func testDelayedClippedHasTheLocalBits() throws {
        var spec = spec(.delayed(2))
        spec.optimizer.clipNorm = 1
        let (sha, _) = try localSHA(spec)
        let (clusterSHA, _, _) = try simulate(spec, workers: 2, seed: 5, chaos: true)
        XCTAssertEqual(clusterSHA, sha)
    }

    /// Runs `spec` to the end on `workers` with chaos; the result and the simulation.
    func runToEnd(_ spec: JobSpec, workers: Int, seed: UInt64, chaos: Bool) throws -> (JobResult, Simulation) {
        try simulateToEnd(spec, workers: workers, seed: seed, chaos: chaos, shards: 2)
    }

    // ssp (s = 1, 2) and async: every batch of every epoch applied exactly once (the staleness counts add
    // up to the steps), none staler than the bound, through kills and joins; the result says it is not
    // reproducible.
    func testSSPAndAsyncApplyEveryBatchOnceWithinTheBound() throws {
        for consistency in [Consistency.ssp(1), .ssp(2), .async] {
            for (workers, chaos) in [(1, false), (3, false), (3, true)] {
                let spec = spec(consistency)
                let what = "\(consistency), \(workers) workers\(chaos ? ", chaos" : "")"
                let (result, sim) = try runToEnd(spec, workers: workers, seed: 17, chaos: chaos)
                XCTAssertEqual(result.state, .completed, "\(what): \(result.message)")
                XCTAssertEqual(result.summary?.timingDependent, true, what)
                XCTAssertEqual(result.summary?.bitwiseReproducible, false, what)
                let counts = sim.coordinator.registry.jobs["job-1"]!.stalenessCounts
                XCTAssertEqual(counts.reduce(0, +), 2 * 17, "\(what): \(counts)")
                XCTAssertLessThanOrEqual(counts.count - 1, consistency.stalenessBound, "\(what): \(counts)")
                if workers == 3 && !chaos && consistency.stalenessBound >= 2 {
                    XCTAssertGreaterThan(counts.count, 1, "\(what): batches overlap, so some are stale: \(counts)")
                }
                let observed = sim.observations.compactMap { o -> Int? in if case let .pushStaleness(_, s) = o { return s }; return nil }
                XCTAssertEqual(observed.count, 2 * 17, what)
                XCTAssertFalse(sim.logs.contains { $0.0 == .error }, "\(what): \(sim.logs.filter { $0.0 == .error })")
            }
        }
    }

    // ssp with a checkpoint every 4 steps: each is taken with no batch in flight (the batches drain first),
    // and the job completes; its checkpoints hold no earlier versions (only delayed mode keeps those).
    func testSSPCheckpointsWithNoBatchInFlight() throws {
        var spec = spec(.ssp(2))
        spec.checkpoint = CheckpointSpec(everySteps: 4, everySeconds: 0, atEpochEnd: true, keep: 100)
        let (result, sim) = try runToEnd(spec, workers: 3, seed: 3, chaos: false)
        XCTAssertEqual(result.state, .completed, result.message)
        let checkpoints = sim.checkpoints["job-1"] ?? []
        XCTAssertGreaterThanOrEqual(checkpoints.count, 2 * (17 / 4))
        for c in checkpoints {
            XCTAssertEqual(c.optimizerSteps, c.epoch * 17 + c.stepInEpoch, "one optimizer step per applied batch")
            XCTAssertEqual(c.olderVersions, [])
        }
    }

    // delayed d = 2, checkpoints every 3 steps: each holds the two versions before its own (fewer at the
    // start), which the next steps compute on.
    func testDelayedCheckpointsHoldTheEarlierVersions() throws {
        var spec = spec(.delayed(2))
        spec.checkpoint = CheckpointSpec(everySteps: 3, everySeconds: 0, atEpochEnd: true, keep: 100)
        let (result, sim) = try runToEnd(spec, workers: 2, seed: 3, chaos: false)
        XCTAssertEqual(result.state, .completed, result.message)
        let checkpoints = (sim.checkpoints["job-1"] ?? []).filter { $0.phase == .train }
        XCTAssertGreaterThan(checkpoints.count, 5)
        for c in checkpoints {
            XCTAssertEqual(c.olderVersions.map(\.version), Array(max(0, c.version - 2)..<c.version), "checkpoint at \(c.version)")
            XCTAssertNil(c.problem(jobId: "job-1", spec: spec, specSHA256: Digest.sha256(spec.wireBytes()), stepsPerEpoch: 17,
                                   parameterCount: spec.network.parameterCount, optimizerSlots: 2))
        }
        // A checkpoint whose earlier versions are missing is refused, naming them.
        var broken = checkpoints.last!
        broken.olderVersions.removeFirst()
        let problem = try XCTUnwrap(broken.problem(jobId: "job-1", spec: spec, specSHA256: Digest.sha256(spec.wireBytes()),
                                                   stepsPerEpoch: 17, parameterCount: spec.network.parameterCount, optimizerSlots: 2))
        XCTAssertTrue(problem.contains("delayed mode (d=2)"), problem)
    }
}
