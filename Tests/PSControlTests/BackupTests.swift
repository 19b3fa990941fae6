import XCTest
import PSCore
import PSData
@testable import PSControl
import PSTrain
import PSTransport
import PSWire
import PSTestSupport

/// Backup chunks on simulated time: a copy of a straggler's node goes out only past its threshold, only
/// to an idle worker, of the slowest node; the first push of a node wins and the other holder's pushes
/// are acknowledged as duplicates and never applied; a lost holder of either kind leaves the node
/// computed; and whatever happens, the bits are the local trainer's.
final class BackupTests: XCTestCase {
    /// Seconds each assignment takes a worker that is not held.
    static let computeSeconds = 0.01

    func spec(backups: Bool = true, chunks: Int = 4, epochs: Int = 1, optimizer: OptimizerSpec? = nil) -> JobSpec {
        var s = optimizer.map { smallJob(chunks: chunks, epochs: epochs, optimizer: $0) } ?? smallJob(chunks: chunks, epochs: epochs)
        s.training.backupChunks = backups
        return s
    }

    func start(_ spec: JobSpec, workers: Int) throws -> (Simulation, ConnectionID) {
        var sim = try Simulation(spec: spec, seed: 3)
        let client = sim.connect(.client)
        for _ in 0..<workers { sim.addWorker(style: .parts) }
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        sim.feed(.received(client, Envelope(requestId: 3, message: .waitJob(jobId: "job-1"))))
        return (sim, client)
    }

    /// Delivers what is in flight to workers other than `held`, oldest first; a worker takes
    /// `computeSeconds` per assignment, and its answers reach the coordinator as it sends them.
    func pump(_ sim: inout Simulation, holding held: Set<ConnectionID> = [], until done: (Simulation) -> Bool = { _ in false }) {
        while !done(sim), let i = sim.toWorkersLink.inFlight.firstIndex(where: { !held.contains($0.connection) }) {
            let (id, message) = sim.toWorkersLink.inFlight.remove(at: i)
            guard let worker = sim.workers[id] else { continue }
            if case .assignment = message { sim.clock.advance(by: Self.computeSeconds) }
            for reply in worker.respond(to: message) { sim.feed(.received(id, Envelope(requestId: 0, message: reply))) }
        }
    }

    /// What `id` answers to what is in flight to it (up to a training assignment of step `before`, when
    /// given), not yet delivered to the coordinator.
    func answers(of id: ConnectionID, before step: Int? = nil, _ sim: inout Simulation) -> [Message] {
        var replies: [Message] = []
        while let i = sim.toWorkersLink.inFlight.firstIndex(where: { $0.connection == id }) {
            let message = sim.toWorkersLink.inFlight[i].message
            if let step, case let .assignment(a) = message, a.kind == .train, a.step == step { break }
            sim.toWorkersLink.inFlight.remove(at: i)
            replies += sim.workers[id]!.respond(to: message)
        }
        return replies
    }

    func deliver(_ messages: [Message], from id: ConnectionID, _ sim: inout Simulation) {
        for m in messages { sim.feed(.received(id, Envelope(requestId: 0, message: m))) }
    }

    func assignments(to id: ConnectionID, _ sim: Simulation) -> [Assignment] {
        sim.toWorkersLink.inFlight.compactMap { $0.connection == id ? $0.message : nil }.compactMap {
            if case let .assignment(a) = $0 { return a }
            return nil
        }
    }

    func outcomes(_ sim: Simulation) -> [Bool] {
        sim.observations.compactMap { if case let .backupChunks(_, _, won) = $0 { return won }; return nil }
    }

    func duplicateAcks(to id: ConnectionID, _ sim: Simulation) -> Int {
        (sim.sent[id] ?? []).filter { if case let .pushAck(a) = $0.message { return a.duplicate }; return false }.count
    }

    var work: (Simulation) -> Work? { { $0.coordinator.run?.work } }

    /// The first step runs on both workers (it measures the time per chunk); the second is handed out.
    func firstStepDone(_ sim: inout Simulation) {
        pump(&sim) { ($0.coordinator.run?.version ?? 0) >= 1 }
        XCTAssertEqual(sim.coordinator.run?.version, 1)
        XCTAssertNotNil(sim.coordinator.run?.backupTiming.secondsPerChunk)
    }

    // A held worker's node: before its threshold no copy (and a wake-up asked for at it), at it the idle
    // worker gets a copy of exactly that node, its push wins and ends the step; the straggler's late
    // pushes are acknowledged as duplicates, applied once (the version moves by one).
    func testCopyGoesOutPastTheThresholdToTheIdleWorkerAndTheFirstPushWins() throws {
        var (sim, _) = try start(spec(), workers: 2)
        let (fast, slow): (ConnectionID, ConnectionID) = (sim.workers.keys.min()!, sim.workers.keys.max()!)
        firstStepDone(&sim)
        let slowNodes = assignments(to: slow, sim).flatMap(\.subtrees)
        XCTAssertEqual(slowNodes.count, 1)
        let started = sim.now
        pump(&sim, holding: [slow])
        let threshold = try XCTUnwrap(sim.coordinator.run?.backupTiming.threshold(chunks: 2))
        XCTAssertEqual(threshold, max(BackupLimits.minimumSeconds, BackupLimits.slowFactor * Self.computeSeconds), accuracy: 1e-9)
        XCTAssertEqual(sim.wakes.last!, started + threshold, accuracy: 1e-9, "a wake-up at the node's threshold")
        XCTAssertTrue(assignments(to: fast, sim).isEmpty, "no copy before the threshold")

        sim.clock.advance(by: started + threshold - sim.now - 0.001)
        sim.feed(.tick)
        XCTAssertTrue(assignments(to: fast, sim).isEmpty, "no copy before the threshold")
        sim.clock.advance(by: 0.001)
        sim.feed(.tick)
        let copy = assignments(to: fast, sim)
        XCTAssertEqual(copy.map(\.subtrees), [slowNodes], "the idle worker gets a copy of the slow node")
        XCTAssertEqual(copy.first?.step, 1)
        XCTAssertEqual(work(sim)?.backups.copies.count, 1)

        pump(&sim, holding: [slow])  // the copy is pushed: the step ends
        XCTAssertEqual(outcomes(sim), [true])
        XCTAssertEqual(sim.coordinator.run?.version, 2)
        let late = answers(of: slow, &sim).filter { if case let .pushGradient(p) = $0 { return p.step == 1 }; return false }
        XCTAssertEqual(late.count, 2, "the straggler's two parts of step 1")
        deliver(late, from: slow, &sim)
        XCTAssertEqual(duplicateAcks(to: slow, sim), 2, "late pushes acknowledged as duplicates")
        XCTAssertEqual(sim.coordinator.run?.version, 2, "applied once")
    }

    // The straggler pushes one part of its node while the copy is out: it wins the node, and the copy's
    // pushes, both parts, are acknowledged as duplicates and dropped, though one of them is a part the
    // straggler has not pushed yet. The straggler's second part ends the step, applied once.
    func testOriginalWinsWithItsFirstPartAndTheCopyIsDroppedWhole() throws {
        var (sim, _) = try start(spec(), workers: 2)
        let (fast, slow): (ConnectionID, ConnectionID) = (sim.workers.keys.min()!, sim.workers.keys.max()!)
        firstStepDone(&sim)
        pump(&sim, holding: [slow])
        sim.clock.advance(by: 1)
        sim.feed(.tick)
        XCTAssertEqual(assignments(to: fast, sim).count, 1)
        let slowPushes = answers(of: slow, &sim).filter { if case .pushGradient = $0 { return true }; return false }
        XCTAssertEqual(slowPushes.count, 2)
        deliver([slowPushes[0]], from: slow, &sim)
        XCTAssertEqual(outcomes(sim), [false], "the original came first")
        let copyPushes = answers(of: fast, &sim).filter { if case .pushGradient = $0 { return true }; return false }
        XCTAssertEqual(copyPushes.count, 2)
        deliver(copyPushes, from: fast, &sim)
        XCTAssertEqual(duplicateAcks(to: fast, sim), 2, "the copy's parts are dropped, the missing one too")
        XCTAssertEqual(sim.coordinator.run?.version, 1, "the step waits for the original's other part")
        XCTAssertTrue(sim.closed.isEmpty, "nobody is refused")
        deliver([slowPushes[1]], from: slow, &sim)
        XCTAssertEqual(sim.coordinator.run?.version, 2)
    }

    // Without backup chunks, or with one worker, a node held far past its threshold gets no copy.
    func testNoCopiesWhenOffOrWithOneWorker() throws {
        for (backups, workers) in [(false, 2), (true, 1)] {
            var (sim, _) = try start(spec(backups: backups), workers: workers)
            let slow = sim.workers.keys.max()!
            firstStepDone(&sim)
            pump(&sim, holding: [slow])
            for _ in 0..<8 {
                sim.clock.advance(by: 0.25)
                sim.feed(.tick)
            }
            XCTAssertEqual(work(sim)?.backups.copies.count, 0, "backups \(backups), \(workers) worker(s)")
            XCTAssertTrue(outcomes(sim).isEmpty)
            if !backups { XCTAssertTrue(sim.wakes.isEmpty, "no wake-ups when off") }
        }
    }

    // The copy's holder dies: the original keeps the node and its push ends the step. The original's
    // holder dies while a copy is out: the copy's holder takes the node over (not freed, not handed out
    // again) and its push ends the step.
    func testLostCopyHolderOrLostOriginal() throws {
        for lose in ["copy", "original"] {
            var (sim, _) = try start(spec(), workers: 3)
            let ids = sim.workers.keys.sorted()
            let slow = ids[2]
            firstStepDone(&sim)
            pump(&sim, holding: [slow])
            sim.clock.advance(by: 1)
            sim.feed(.tick)
            let copies = try XCTUnwrap(work(sim)?.backups.copies)
            XCTAssertEqual(copies.count, 1, lose)
            let (node, copyHolder) = copies.first!
            let copyConnection = sim.coordinator.membership.workers[copyHolder]!.connection
            if lose == "copy" {
                sim.kill(copyConnection)
                XCTAssertNotEqual(work(sim)?.backups.copies[node], copyHolder, "the dead holder's copy is dropped")
                XCTAssertEqual(sim.coordinator.membership.workers.count, 2)
                deliver(answers(of: slow, &sim), from: slow, &sim)
            } else {
                sim.kill(slow)
                XCTAssertEqual(work(sim)?.assigned[node], copyHolder, "the copy's holder holds the node")
                XCTAssertEqual(outcomes(sim), [true])
                pump(&sim) { ($0.coordinator.run?.version ?? 0) >= 2 }
            }
            XCTAssertEqual(sim.coordinator.run?.version, 2, lose)
            XCTAssertTrue(sim.closed.isEmpty, lose)
        }
    }

    /// Runs the job to its end with the last worker a straggler: it answers only when nothing else can
    /// happen (the others are idle and no wake-up is due), so every step past the first waits on it
    /// unless a copy overtakes it. Returns the result and the simulation.
    func runWithStraggler(_ spec: JobSpec, workers: Int) throws -> (JobResult, Simulation) {
        var (sim, client) = try start(spec, workers: workers)
        let slow = sim.workers.keys.max()!
        var rounds = 0
        while rounds < 100_000 {
            rounds += 1
            pump(&sim, holding: [slow])
            if case .jobResult? = sim.replies[client]?.last?.message { break }
            // The straggler catches up with the steps before the current one (its pushes are late).
            if let current = work(sim), current.kind == .train {
                let behind = answers(of: slow, before: current.step, &sim)
                if !behind.isEmpty {
                    sim.clock.advance(by: 3 * Self.computeSeconds)
                    deliver(behind, from: slow, &sim)
                    continue
                }
            }
            if let wake = sim.wakes.filter({ $0 > sim.now }).min() {
                sim.clock.advance(by: wake - sim.now)
                sim.feed(.tick)
                continue
            }
            let late = answers(of: slow, &sim)
            if late.isEmpty && sim.toWorkersLink.isEmpty { break }
            sim.clock.advance(by: 3 * Self.computeSeconds)
            deliver(late, from: slow, &sim)
        }
        guard case let .jobResult(result)? = sim.replies[client]?.last?.message else {
            XCTFail("job did not finish: \(sim.coordinator.registry.jobs["job-1"]?.state.rawValue ?? "?")")
            throw CocoaError(.featureUnsupported)
        }
        return (result, sim)
    }

    // A straggler on every step, on 2 and 3 workers, applied in parts and clipped (whole steps): copies
    // overtake it until it sits steps out, and the bits are the local trainer's, as without backups.
    func testStragglerKeepsTheBits() throws {
        let clipped = OptimizerSpec(kind: .adam, learningRate: 0.003, clipNorm: 0.5)
        for (s, name) in [(spec(chunks: 5), "parts"), (spec(chunks: 5, optimizer: clipped), "clipped")] {
            let local = LocalTrainer(spec: s, data: try DataLoader.load(s)).run().weightsSHA256
            for workers in [2, 3] {
                let (result, sim) = try runWithStraggler(s, workers: workers)
                XCTAssertEqual(result.state, .completed, "\(name), \(workers) workers: \(result.message)")
                XCTAssertEqual(result.weightsSHA256, local, "\(name), \(workers) workers")
                let won = outcomes(sim).filter { $0 }.count
                print("backup chunks, \(name), \(workers) workers: \(won) copies won, \(outcomes(sim).count - won) lost")
                // Copies overtake it until it lags BackupLimits.laggingMax steps; then it sits steps out
                // (none of its chunks to wait for) except the probe steps, where a copy overtakes it again.
                XCTAssertGreaterThanOrEqual(won, BackupLimits.laggingMax, "\(name), \(workers) workers: copies overtook the straggler")
                let sentToSlow = sim.sent[sim.workers.keys.max()!, default: []].filter {
                    if case let .assignment(a) = $0.message { return a.kind == .train } else { return false }
                }.count
                let stepsRun = sim.observations.filter { if case .stepCompleted = $0 { return true }; return false }.count
                XCTAssertLessThan(sentToSlow, stepsRun / 2, "\(name), \(workers) workers: the straggler sat most steps out (\(sentToSlow) assignments in \(stepsRun) steps)")
                XCTAssertTrue(sim.closed.isEmpty, "nobody refused")
            }
        }
    }
}

/// The pure rules: the threshold from measured times, which copies go out, and the shares of workers
/// that lag.
final class BackupRuleTests: XCTestCase {
    func testThresholdIsTheLargerOfTheMinimumAndTheFactorTimesExpected() {
        var t = BackupTiming()
        XCTAssertNil(t.threshold(chunks: 2), "nothing measured, no copies")
        t.record(seconds: 0.02, chunks: 2)
        XCTAssertEqual(t.threshold(chunks: 2)!, 1.5 * 0.02, accuracy: 1e-12)
        XCTAssertEqual(t.threshold(chunks: 4)!, 1.5 * 0.04, accuracy: 1e-12)
        t.record(seconds: 0.06, chunks: 2)  // one slow sample moves the average a quarter of the way
        XCTAssertEqual(t.secondsPerChunk!, 0.01 + 0.25 * 0.02, accuracy: 1e-12)
        var fast = BackupTiming()
        fast.record(seconds: 0.0001, chunks: 1)
        XCTAssertEqual(fast.threshold(chunks: 1), BackupLimits.minimumSeconds, "never below the minimum")
    }

    func testChooseGivesEachIdleWorkerTheMostOverdueNode() {
        let outstanding: [(node: Range<Int>, since: Double)] = [(0..<2, 0.0), (2..<3, 0.0), (3..<4, 0.09)]
        let threshold = { (chunks: Int) in 0.05 * Double(chunks) }
        // At 0.12: 0..<2 is 1.2x its threshold, 2..<3 2.4x, 3..<4 not due (0.03 of 0.05).
        let (copies, next) = Backups.choose(idle: [7, 9], outstanding: outstanding, now: 0.12, threshold: threshold)
        XCTAssertEqual(copies.map(\.worker), [7, 9])
        XCTAssertEqual(copies.map(\.node), [2..<3, 0..<2], "slowest first")
        XCTAssertNil(next, "no idle worker left for the node not yet due")
        let (one, due) = Backups.choose(idle: [7, 9], outstanding: [(3..<4, 0.09)], now: 0.12, threshold: threshold)
        XCTAssertTrue(one.isEmpty)
        XCTAssertEqual(due!, 0.14, accuracy: 1e-12, "the wake-up")
        XCTAssertTrue(Backups.choose(idle: [], outstanding: outstanding, now: 9, threshold: threshold).copies.isEmpty)
    }

    func testLaggingWorkersGetSmallerSharesButOneChunk() {
        var t = BackupTiming()
        XCTAssertTrue(t.shares.isEmpty)
        let even = Scheduler.assign(free: Array(0..<4), total: 4, workers: [1, 2], held: [:], shares: t.shares)
        XCTAssertEqual(even.map { $0.nodes.map(\.count).reduce(0, +) }, [2, 2])
        for _ in 0..<5 { t.overtaken(2) }
        XCTAssertEqual(t.shares[2], 1.0 / 8, "at most three halvings")
        let split = Scheduler.assign(free: Array(0..<4), total: 4, workers: [1, 2], held: [:], shares: t.shares)
        XCTAssertEqual(split.map(\.worker), [1, 2])
        XCTAssertEqual(split.map { $0.nodes.map(\.count).reduce(0, +) }, [3, 1], "one chunk kept")
        let wide = Scheduler.assign(free: Array(0..<16), total: 16, workers: [1, 2], held: [:], shares: t.shares)
        XCTAssertEqual(wide.map { $0.nodes.map(\.count).reduce(0, +) }, [13, 3], "1 each, then 14 in proportion 1 : 1/8")
        // Three halvings: it sits out every step but the probe steps (one in BackupLimits.probeSteps).
        XCTAssertEqual(t.shares(step: 1)[2], 0)
        XCTAssertTrue(t.sitsOut(2, step: 1))
        XCTAssertFalse(t.sitsOut(1, step: 1))
        let out = Scheduler.assign(free: Array(0..<4), total: 4, workers: [1, 2], held: [:], shares: t.shares(step: 1))
        XCTAssertEqual(out.map(\.worker), [1], "the straggler sits the step out")
        XCTAssertEqual(out.map { $0.nodes.map(\.count).reduce(0, +) }, [4])
        XCTAssertEqual(t.shares(step: BackupLimits.probeSteps)[2], 1.0 / 8, "a probe step")
        let alone = Scheduler.assign(free: Array(0..<4), total: 4, workers: [2], held: [:], shares: t.shares(step: 1))
        XCTAssertEqual(alone.map(\.worker), [2], "with nobody else left it computes")
        for _ in 0..<3 { t.keptUp(2) }
        XCTAssertTrue(t.shares.isEmpty, "keeping up gives the share back")
    }
}
