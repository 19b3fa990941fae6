import XCTest
import PSCore
import PSData
@testable import PSControl
@testable import PSShard
import PSTrain
import PSTransport
import PSWire
import PSTestSupport

/// The coordinator's protocol, state × event, without sockets.
final class CoordinatorProtocolTests: XCTestCase {
    func errorReply(_ sim: Simulation, _ id: ConnectionID) -> ErrorReply? {
        for e in sim.sent[id, default: []].reversed() { if case let .error(r) = e.message { return r } }
        return nil
    }

    // The first message must be hello with our protocol version; anything else is refused and that connection closed.
    func testHelloRules() throws {
        var sim = try Simulation(spec: smallJob(), seed: 1)
        sim.feed(.connected(1, peer: "10.0.0.1:1"))
        sim.feed(.received(1, Envelope(requestId: 3, message: .listJobs)))
        XCTAssertEqual(errorReply(sim, 1)?.code, .badRequest)
        XCTAssertTrue(errorReply(sim, 1)?.message.contains("first message") ?? false)
        XCTAssertTrue(sim.closed.contains(1))

        sim.feed(.connected(2, peer: "10.0.0.1:2"))
        sim.feed(.received(2, Envelope(requestId: 1, message: .hello(Hello(protocolVersion: 99, role: .client, name: "old")))))
        XCTAssertEqual(errorReply(sim, 2)?.code, .versionMismatch)
        XCTAssertTrue(errorReply(sim, 2)?.message.contains("99") ?? false)
        XCTAssertTrue(sim.closed.contains(2))

        sim.nextConnection = 3
        let ok = sim.connect(.client)
        guard case .helloOk = sim.replies[ok]?.last?.message else { return XCTFail("no helloOk") }
        XCTAssertFalse(sim.closed.contains(ok))
    }

    // A submitted spec is validated again on the server; a relative data path is refused naming the field, and nothing starts.
    func testSubmitValidates() throws {
        var sim = try Simulation(spec: smallJob(), seed: 1)
        let client = sim.connect(.client)
        var spec = smallJob()
        spec.data.train = .idx(images: "relative/images", labels: "/abs/labels")
        sim.feed(.received(client, Envelope(requestId: 5, message: .submitJob(spec))))
        let error = try XCTUnwrap(errorReply(sim, client))
        XCTAssertEqual(error.code, .invalidSpec)
        XCTAssertEqual(error.field, "data.train.images")
        XCTAssertEqual(sim.replies[client]?.last?.requestId, 5)
        XCTAssertFalse(sim.closed.contains(client))
        var bad = smallJob()
        bad.training.chunks = 0
        sim.feed(.received(client, Envelope(requestId: 6, message: .submitJob(bad))))
        XCTAssertEqual(errorReply(sim, client)?.field, "training.chunks")
        sim.feed(.received(client, Envelope(requestId: 7, message: .listJobs)))
        guard case let .jobList(jobs)? = sim.replies[client]?.last?.message else { return XCTFail("no job list") }
        XCTAssertTrue(jobs.isEmpty)
    }

    // Jobs are prepared one at a time: a job submitted while another's data loads stays queued (status
    // says which is loading), is prepared once the first ends, and the first's late result changes nothing.
    func testOneJobIsPreparedAtATime() throws {
        var coordinator = Coordinator(config: CoordinatorConfig(address: "t"), now: 0)
        func feed(_ event: CoordinatorEvent) -> [CoordinatorAction] { coordinator.receive(event, now: 0) }
        func prepared(_ actions: [CoordinatorAction]) -> [String] {
            actions.compactMap { if case let .prepare(jobId, _) = $0 { return jobId }; return nil }
        }
        func jobs() -> [JobStatus] {
            for case let .send(_, envelope) in feed(.received(1, Envelope(requestId: 9, message: .listJobs))) {
                if case let .jobList(list) = envelope.message { return list }
            }
            return []
        }
        _ = feed(.connected(1, peer: "10.0.0.1:1"))
        _ = feed(.received(1, Envelope(requestId: 1, message: .hello(Hello(role: .client, name: "c")))))
        XCTAssertEqual(prepared(feed(.received(1, Envelope(requestId: 2, message: .submitJob(smallJob()))))), ["job-1"])
        XCTAssertEqual(prepared(feed(.received(1, Envelope(requestId: 3, message: .submitJob(smallJob()))))), [])
        XCTAssertEqual(jobs().map(\.state), [.submitted, .submitted])
        XCTAssertEqual(jobs().map(\.message), [Coordinator.preparingMessage, ""])

        XCTAssertEqual(prepared(feed(.received(1, Envelope(requestId: 4, message: .cancelJob(jobId: "job-1"))))), ["job-2"])
        let late = feed(.prepared(jobId: "job-1", .success(PreparedData(trainCount: 850, validationCount: 150,
                                                                          testCount: 1000, preprocessing: .scale(divisor: 255)))))
        XCTAssertTrue(late.isEmpty, "\(late)")
        XCTAssertEqual(jobs().map(\.state), [.cancelled, .submitted])
        XCTAssertEqual(jobs().map(\.message), ["cancelled by a client", Coordinator.preparingMessage])
    }

    // With no workers a prepared job waits and says so; a worker joining starts it with the spec, weights and an assignment of every chunk.
    func testJobWaitsForWorkersThenStarts() throws {
        var sim = try Simulation(spec: smallJob(), seed: 1)
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(smallJob()))))
        guard case .submitted(let jobId)? = sim.replies[client]?.last?.message else { return XCTFail("not submitted") }
        XCTAssertEqual(jobId, "job-1")
        sim.feed(.received(client, Envelope(requestId: 3, message: .statusRequest(jobId: ""))))
        guard case let .statusReply(status)? = sim.replies[client]?.last?.message else { return XCTFail("no status") }
        XCTAssertEqual(status.jobs.first?.state, .waitingForWorkers)
        XCTAssertEqual(status.jobs.first?.stepsPerEpoch, 17)  // 850 training samples / 50
        XCTAssertTrue(status.cluster.workers.isEmpty)

        sim.addWorker()
        let kinds = sim.toWorkers.map { Mirror(reflecting: $0.1).children.first?.label ?? "" }
        XCTAssertEqual(kinds, ["registered", "startJob", "weights", "assignment"])
        guard case let .assignment(a) = sim.toWorkers.last!.1 else { return XCTFail() }
        XCTAssertEqual(a.kind, .train)
        XCTAssertEqual(a.step, 0)
        // One worker holds the whole batch: the whole tree is one node, pushed as one tensor.
        XCTAssertEqual(a.subtrees.map { $0.firstChunk..<($0.firstChunk + $0.chunkCount) }, [0..<6])
        // A second worker joining mid-step gets nothing until the next step.
        sim.toWorkers = []
        sim.addWorker()
        XCTAssertFalse(sim.toWorkers.contains { if case .assignment = $0.1 { return true }; return false })
    }

    // Bad pushes: unassigned chunks and a wrong-length tensor close that connection with a named error;
    // a duplicate and a stale step are acknowledged as duplicates; a future step is refused.
    func testPushValidation() throws {
        var sim = try Simulation(spec: smallJob(), seed: 1)
        let client = sim.connect(.client)
        sim.addWorker()
        sim.addWorker()
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(smallJob()))))
        let (a, b) = (sim.workers.keys.min()!, sim.workers.keys.max()!)
        // Deliver the setup messages; the first worker got chunks 0..<3, the second 3..<6.
        var pushes: [ConnectionID: [Message]] = [:]
        for (id, m) in sim.toWorkers { pushes[id, default: []] += sim.workers[id]!.respond(to: m) }
        sim.toWorkers = []
        guard case let .pushGradient(first)? = pushes[a]?.first else { return XCTFail("no push") }

        // Worker b pushes worker a's node: not assigned → error and b is closed.
        sim.feed(.received(b, Envelope(requestId: 9, message: .pushGradient(first))))
        XCTAssertEqual(errorReply(sim, b)?.code, .notAssigned)
        XCTAssertTrue(sim.closed.contains(b))

        // A wrong-length gradient from a closes a.
        var short = first
        short.gradient = TensorSlice(offset: 0, values: Array(first.gradient.values.dropLast()))
        sim.addWorker()
        let c = sim.workers.keys.max()!
        sim.feed(.received(a, Envelope(requestId: 10, message: .pushGradient(short))))
        XCTAssertEqual(errorReply(sim, a)?.code, .badRequest)
        XCTAssertTrue(errorReply(sim, a)?.message.contains("parameters") ?? false)
        XCTAssertTrue(sim.closed.contains(a))

        // Worker c, which joined mid-step, now holds every chunk; its pushes complete step 0; a repeat is a duplicate.
        var cPushes: [Message] = []
        for (id, m) in sim.toWorkers where id == c { cPushes += sim.workers[c]!.respond(to: m) }
        sim.toWorkers = []
        XCTAssertFalse(cPushes.isEmpty)
        for p in cPushes { sim.feed(.received(c, Envelope(requestId: 11, message: p))) }
        sim.feed(.received(c, Envelope(requestId: 12, message: cPushes[0])))
        let acks = sim.sent[c, default: []].compactMap { e -> PushAck? in
            if case let .pushAck(a) = e.message { return a }
            return nil
        }
        guard let ack = acks.last else { return XCTFail("no ack") }
        XCTAssertEqual(acks.filter { !$0.duplicate }.count, cPushes.count)
        XCTAssertTrue(ack.duplicate)
        XCTAssertFalse(sim.closed.contains(c))

        // A push for a step far in the future is refused and closes the connection.
        guard case var future = cPushes[0], case var .pushGradient(p) = future else { return XCTFail() }
        p.step = 99
        future = .pushGradient(p)
        sim.feed(.received(c, Envelope(requestId: 13, message: future)))
        XCTAssertEqual(errorReply(sim, c)?.code, .unknownStep)
        XCTAssertTrue(sim.closed.contains(c))
    }

    // Pushes per part (push range): each is acknowledged with its offset (a repeat as a duplicate); a
    // part every chunk has pushed is applied at once and its new weights go to the workers before the
    // step ends; a push whose parts disagree on the statistics, or whose range is not a part, closes
    // its connection; a lost worker's chunks are recomputed, its applied part acknowledged as a
    // duplicate; a worker sent only some parts of the new version gets the rest with its next assignment.
    func testPartPushesAndStreamedWeights() throws {
        let spec = smallJob(chunks: 4)  // one node each for two workers: 0..<2 and 2..<4
        var sim = try Simulation(spec: spec, seed: 1)
        let client = sim.connect(.client)
        sim.addWorker(style: .parts)
        sim.addWorker(style: .parts)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        let (a, b) = (sim.workers.keys.min()!, sim.workers.keys.max()!)
        var pushes: [ConnectionID: [PushGradient]] = [:]
        for (id, m) in sim.toWorkers {
            for case let .pushGradient(p) in sim.workers[id]!.respond(to: m) { pushes[id, default: []].append(p) }
        }
        sim.toWorkers = []
        let layout = spec.network.layout
        XCTAssertEqual(layout.pushRanges.count, 2)
        let (part0, part1) = (layout.pushRanges[0], layout.pushRanges[1])
        // Last part first, each with the node's statistics.
        XCTAssertEqual(pushes[a]?.map { $0.gradient.indices }, [part1, part0])
        XCTAssertEqual(pushes[a]?[0].lossSum, pushes[a]?[1].lossSum)
        func acks(_ id: ConnectionID) -> [PushAck] {
            sim.sent[id, default: []].compactMap { if case let .pushAck(x) = $0.message { return x }; return nil }
        }
        func weights(_ id: ConnectionID, version: Int) -> [TensorSlice] {
            sim.sent[id, default: []].compactMap { if case let .weights(w) = $0.message, w.version == version { return w.tensor }; return nil }
        }
        sim.feed(.received(a, Envelope(requestId: 3, message: .pushGradient(pushes[a]![0]))))
        sim.feed(.received(a, Envelope(requestId: 4, message: .pushGradient(pushes[a]![0]))))
        XCTAssertEqual(acks(a).map(\.offset), [part1.lowerBound, part1.lowerBound])
        XCTAssertEqual(acks(a).map(\.duplicate), [false, true])
        XCTAssertTrue(weights(a, version: 1).isEmpty)
        // b's last part completes part 1 across the batch: applied, and sent to both at version 1.
        sim.feed(.received(b, Envelope(requestId: 5, message: .pushGradient(pushes[b]![0]))))
        XCTAssertEqual(weights(a, version: 1).map(\.indices), [part1])
        XCTAssertEqual(weights(b, version: 1).map(\.indices), [part1])
        XCTAssertEqual(sim.store?.version, 0, "the step is not over")

        // A third worker joins: nothing to do until b is lost.
        sim.addWorker(style: .parts)
        let c = sim.workers.keys.max()!
        XCTAssertTrue(weights(c, version: 0).isEmpty)
        // b's first part claims other statistics than its last: refused, b closed.
        var lying = pushes[b]![1]
        lying.lossSum += 1
        sim.feed(.received(b, Envelope(requestId: 6, message: .pushGradient(lying))))
        XCTAssertEqual(errorReply(sim, b)?.code, .badRequest)
        XCTAssertTrue(errorReply(sim, b)?.message.contains("earlier part") ?? false)
        XCTAssertTrue(sim.closed.contains(b))

        // b's chunks go to c and a, one each; their part 1 was applied already, so those pushes are
        // duplicates. c gets version 0 part by part: part 1 as it was before this step's update (the
        // store holds version 1 there already), part 0 from the store.
        XCTAssertEqual(weights(c, version: 0).map(\.indices), [part0, part1])
        let initial = spec.network.initialParameters(seed: spec.seed)
        for part in weights(c, version: 0) {
            XCTAssertTrue(part.values.elementsEqual(initial[part.indices]) { $0.bitPattern == $1.bitPattern },
                          "version 0 of \(part.indices) is not the initial weights")
        }
        var again: [(ConnectionID, Message)] = []
        for (id, m) in sim.toWorkers { again += sim.workers[id]!.respond(to: m).map { (id, $0) } }
        sim.toWorkers = []
        XCTAssertEqual(again.count, 4)
        for (id, p) in again { sim.feed(.received(id, Envelope(requestId: 7, message: p))) }
        XCTAssertEqual(acks(c).map(\.duplicate), [true, false])
        XCTAssertEqual(acks(a).map(\.duplicate), [false, true, true, false])
        XCTAssertEqual(sim.store?.version, 0)
        // a's first part ends the step: part 0 goes to a and c; c, which missed part 1, gets it with its assignment.
        sim.feed(.received(a, Envelope(requestId: 8, message: .pushGradient(pushes[a]![1]))))
        let store = try XCTUnwrap(sim.store)
        XCTAssertEqual(store.version, 1)
        XCTAssertEqual(weights(a, version: 1).map(\.indices), [part1, part0])
        XCTAssertEqual(weights(c, version: 1).map(\.indices), [part0, part1])
        for id in [a, c] {
            let sent = weights(id, version: 1)
            for part in sent {
                XCTAssertTrue(part.values.elementsEqual(store.parameters[part.indices]) { $0.bitPattern == $1.bitPattern })
            }
            XCTAssertTrue(sim.toWorkers.contains { $0.0 == id && { if case .assignment = $0 { return true }; return false }($0.1) })
        }
        var next: [ConnectionID: [PushGradient]] = [:]
        for (id, m) in sim.toWorkers {  // both put version 1 together and compute step 1
            for case let .pushGradient(p) in sim.workers[id]!.respond(to: m) { next[id, default: []].append(p) }
        }
        XCTAssertTrue(sim.workers[c]!.assembledWeights(version: 1, count: layout.count) == store.parameters)
        XCTAssertEqual(next[a]?.first?.step, 1)

        // A range that is not a part's is refused.
        var odd = try XCTUnwrap(next[a]?.last)
        odd.gradient = TensorSlice(offset: 5, values: Array(odd.gradient.values[5...]))
        sim.feed(.received(a, Envelope(requestId: 9, message: .pushGradient(odd))))
        XCTAssertEqual(errorReply(sim, a)?.code, .badRequest)
        XCTAssertTrue(errorReply(sim, a)?.message.contains("push ranges") ?? false)
        XCTAssertTrue(sim.closed.contains(a))
    }

    // A worker whose heartbeat stops is removed at the deadline and its chunks go to the remaining worker.
    func testHeartbeatDeadlineReassigns() throws {
        var sim = try Simulation(spec: smallJob(), seed: 1)
        let client = sim.connect(.client)
        sim.addWorker()
        sim.addWorker()
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(smallJob()))))
        let (a, b) = (sim.workers.keys.min()!, sim.workers.keys.max()!)
        sim.toWorkers = []
        sim.clock.advance(by: 6)
        sim.feed(.received(b, Envelope(requestId: 0, message: .heartbeat(Heartbeat(workerId: sim.workers[b]!.workerId ?? 2, stepsDone: 0, samplesPerSecond: 0)))))
        sim.clock.advance(by: 4.5)  // t = 10.5
        sim.feed(.tick)
        XCTAssertTrue(sim.closed.contains(a))
        XCTAssertFalse(sim.closed.contains(b))
        let reassigned = sim.toWorkers.compactMap { entry -> Assignment? in
            if entry.0 == b, case let .assignment(x) = entry.1 { return x }
            return nil
        }
        XCTAssertEqual(reassigned.flatMap(\.subtrees).map(\.firstChunk), [0, 2])
        XCTAssertTrue(sim.logs.contains { $0.1 == "worker left" && $0.2["reason"] == "missed its heartbeat deadline" })
    }

    // Cancelling a running job answers its waiters with the cancelled state; the job list shows it.
    func testCancelAnswersWaiters() throws {
        var sim = try Simulation(spec: smallJob(), seed: 1)
        let client = sim.connect(.client)
        let waiter = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(smallJob()))))
        sim.addWorker()
        sim.feed(.received(waiter, Envelope(requestId: 7, message: .waitJob(jobId: "job-1"))))
        XCTAssertEqual(sim.replies[waiter]?.count, 1)  // only the helloOk so far
        sim.feed(.received(client, Envelope(requestId: 3, message: .cancelJob(jobId: "job-1"))))
        guard case let .jobResult(result)? = sim.replies[waiter]?.last?.message else { return XCTFail("waiter not answered") }
        XCTAssertEqual(result.state, .cancelled)
        XCTAssertEqual(sim.replies[waiter]?.last?.requestId, 7)
        sim.feed(.received(client, Envelope(requestId: 4, message: .cancelJob(jobId: "job-1"))))
        XCTAssertTrue(errorReply(sim, client)?.message.contains("already ended") ?? false)
        sim.feed(.received(client, Envelope(requestId: 5, message: .cancelJob(jobId: "job-9"))))
        XCTAssertEqual(errorReply(sim, client)?.code, .unknownJob)
    }

    // Training and testing are over, but the job ends only when the shard hands its weights over:
    // until then it is running. A cancel meanwhile wins and the late hand-over saves nothing; the
    // hand-over itself saves the model and answers the waiter with the parameters' fingerprint. An
    // answer for a job that is not finishing changes nothing.
    func testJobEndsWhenTheShardHandsOver() throws {
        let spec = smallJob(epochs: 1)
        var sim = try Simulation(spec: spec, seed: 3)
        sim.holdShardAnswers = true
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        sim.addWorker()
        sim.feed(.received(client, Envelope(requestId: 3, message: .waitJob(jobId: "job-1"))))
        var deliveries = 0
        while sim.step(duplicates: false) {
            deliveries += 1
            if deliveries >= 100_000 { return XCTFail("simulation does not finish") }
        }
        XCTAssertEqual(sim.heldShardAnswers.count, 1)
        guard case let .shardFinished(jobId, parameters, sha)? = sim.heldShardAnswers.first else { return XCTFail("no hand-over") }
        XCTAssertEqual(jobId, "job-1")
        XCTAssertEqual(sha, weightsSHA256(parameters))
        XCTAssertEqual(sim.coordinator.registry.jobs["job-1"]?.state, .running)
        XCTAssertTrue(sim.models.isEmpty)

        var cancelled = sim
        cancelled.feed(.received(client, Envelope(requestId: 4, message: .cancelJob(jobId: "job-1"))))
        cancelled.feed(sim.heldShardAnswers[0])
        XCTAssertEqual(cancelled.coordinator.registry.jobs["job-1"]?.state, .cancelled)
        XCTAssertTrue(cancelled.models.isEmpty)

        let before = sim.replies[client, default: []].count
        sim.feed(.shardFinished(jobId: "job-9", parameters: parameters, sha256: sha))
        XCTAssertEqual(sim.replies[client, default: []].count, before)
        sim.feed(sim.heldShardAnswers[0])
        XCTAssertEqual(sim.models["job-1"]?.parameters, parameters)
        guard case let .jobResult(result)? = sim.replies[client]?.last?.message else { return XCTFail("waiter not answered") }
        XCTAssertEqual(result.state, .completed)
        XCTAssertEqual(result.weightsSHA256, sha)
        // A second hand-over for the ended job changes nothing.
        let ended = sim.replies[client, default: []].count
        sim.feed(sim.heldShardAnswers[0])
        XCTAssertEqual(sim.replies[client, default: []].count, ended)
    }

    // Shutdown marks the running job interrupted and answers its waiters.
    // SIGTERM: every connection is closed and the running job is not ended (no result for its waiters,
    // nothing final for the journal), so a restarted server resumes it; the shard lets its values go.
    func testShutdownLeavesTheJobToResume() throws {
        var sim = try Simulation(spec: smallJob(), seed: 1)
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(smallJob()))))
        sim.addWorker()
        sim.feed(.received(client, Envelope(requestId: 3, message: .waitJob(jobId: "job-1"))))
        sim.feed(.shutdown)
        let results = sim.replies[client, default: []].compactMap { e -> JobResult? in
            if case let .jobResult(r) = e.message { return r }
            return nil
        }
        XCTAssertEqual(results.count, 0)
        XCTAssertTrue(sim.closed.contains(client))
        XCTAssertEqual(sim.coordinator.registry.jobs["job-1"]?.state.isFinal, false)
        XCTAssertNil(sim.coordinator.run)
        XCTAssertNil(sim.shard.job)
        XCTAssertTrue(sim.observations.contains { if case .jobSuspended("job-1") = $0 { return true }; return false })
        XCTAssertTrue(sim.logs.contains { $0.1.contains("resumes from") })
    }
}

/// The property the cluster exists for: the coordinator with simulated workers produces bitwise the
/// weights of the local trainer, whatever the number of workers, the delivery order, duplicates,
/// workers dying mid-step and workers joining.
final class CoordinatorExactnessTests: XCTestCase {
    func localSHA(_ spec: JobSpec) throws -> (String, TrainingSummary) {
        let result = LocalTrainer(spec: spec, data: try DataLoader.load(spec)).run()
        return (result.weightsSHA256, result.model.summary)
    }

    /// Runs the job to the end; `chaos` kills and adds workers at random moments.
    func simulate(_ spec: JobSpec, workers: Int, seed: UInt64, chaos: Bool, shards: Int = 1) throws -> (String, TrainingSummary, Simulation) {
        let (result, sim) = try simulateToEnd(spec, workers: workers, seed: seed, chaos: chaos, shards: shards)
        XCTAssertTrue(result.state == .completed || result.state == .stoppedEarly, "\(result.state) \(result.message)")
        return (result.weightsSHA256, try XCTUnwrap(result.summary), sim)
    }

    /// Runs the job until it ends, however it ends: its result and the simulation.
    func simulateToEnd(_ spec: JobSpec, workers: Int, seed: UInt64, chaos: Bool, shards: Int = 1) throws -> (JobResult, Simulation) {
        var sim = try Simulation(spec: spec, seed: seed, shards: shards)
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        for _ in 0..<workers { sim.addWorker() }
        sim.feed(.received(client, Envelope(requestId: 3, message: .waitJob(jobId: "job-1"))))
        var deliveries = 0
        while sim.step(duplicates: chaos) {
            deliveries += 1
            if chaos && deliveries % 37 == 0 {
                if sim.workers.count > 1 && sim.random(3) == 0 {
                    sim.kill(sim.workers.keys.sorted()[sim.random(sim.workers.count)])
                } else if sim.workers.count < 4 {
                    sim.addWorker()
                }
            }
            XCTAssertLessThan(deliveries, 200_000, "simulation does not finish")
            if deliveries >= 200_000 { break }
        }
        guard case let .jobResult(result)? = sim.replies[client]?.last?.message else {
            XCTFail("job did not finish; state: \(sim.coordinator.registry.jobs["job-1"]?.state.rawValue ?? "?")")
            throw CocoaError(.featureUnsupported)
        }
        return (result, sim)
    }

    // 1, 2 and 3 workers, in-order-ish delivery: the same bits as the local trainer, and the same figures.
    func testSameBitsAsLocalForOneTwoThreeWorkers() throws {
        let spec = smallJob()
        let (sha, summary) = try localSHA(spec)
        for n in 1...3 {
            let (clusterSHA, clusterSummary, sim) = try simulate(spec, workers: n, seed: UInt64(n), chaos: false)
            XCTAssertEqual(clusterSHA, sha, "\(n) workers")
            XCTAssertEqual(clusterSummary.testAccuracy, summary.testAccuracy)
            XCTAssertEqual(clusterSummary.testLoss, summary.testLoss)
            XCTAssertEqual(clusterSummary.validationLoss, summary.validationLoss)
            XCTAssertEqual(clusterSummary.trainLoss, summary.trainLoss)
            XCTAssertEqual(clusterSummary.bestEpoch, summary.bestEpoch)
            XCTAssertEqual(sim.models["job-1"].map { weightsSHA256($0.parameters) }, sha)
            // Observers hear every step and epoch, and the job's path through its states.
            let steps = sim.observations.filter { if case .stepCompleted = $0 { return true }; return false }.count
            let epochs = sim.observations.compactMap { o -> EpochReport? in
                if case let .epochCompleted(_, report, _) = o { return report }
                return nil
            }
            XCTAssertEqual(steps, 2 * 17)
            XCTAssertEqual(epochs.map(\.epoch), [1, 2])
            XCTAssertEqual(epochs.last?.trainLoss, clusterSummary.trainLoss)
            let states = sim.observations.compactMap { o -> JobState? in
                if case let .jobState(_, _, state) = o { return state }
                return nil
            }
            XCTAssertEqual(states, [.submitted, .waitingForWorkers, .running, .completed])  // submitted before any worker joined
        }
    }

    // Random delivery order, retransmitted pushes, workers killed mid-step and joining: still the same
    // bits (five seeds; PS_CHAOS_SEEDS=N runs N, for a longer hunt).
    func testChaosKeepsTheBits() throws {
        let spec = smallJob(chunks: 7, epochs: 2)
        let (sha, _) = try localSHA(spec)
        let seeds = UInt64(ProcessInfo.processInfo.environment["PS_CHAOS_SEEDS"].flatMap(Int.init) ?? 5)
        for seed in 11..<(11 + seeds) {
            let (clusterSHA, _, sim) = try simulate(spec, workers: 3, seed: seed, chaos: true, shards: 3)
            XCTAssertEqual(clusterSHA, sha, "seed \(seed)")
            XCTAssertTrue(sim.logs.contains { $0.1 == "worker left" }, "seed \(seed) killed nobody")
        }
    }

    // The one worker dies after a range of a step was applied and before the step ended; a new worker
    // computes the whole step from version t (the applied range's values before its update) and the
    // job ends with the local trainer's bits.
    func testWorkerLostAfterARangeWasApplied() throws {
        let spec = smallJob(chunks: 2, epochs: 1)
        let (sha, _) = try localSHA(spec)
        var sim = try Simulation(spec: spec, seed: 7)
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        sim.addWorker(style: .parts)
        sim.feed(.received(client, Envelope(requestId: 3, message: .waitJob(jobId: "job-1"))))
        var killed = false
        var deliveries = 0
        while sim.step(duplicates: false) {
            deliveries += 1
            if !killed, let run = sim.coordinator.run, sim.store?.version == 3, let work = run.work, work.kind == .train,
               work.gradients.applied.contains(true) {
                sim.kill(sim.workers.keys.first!)
                sim.addWorker(style: .parts)
                killed = true
            }
            if deliveries >= 100_000 { return XCTFail("simulation does not finish") }
        }
        XCTAssertTrue(killed, "no range was applied mid-step")
        guard case let .jobResult(result)? = sim.replies[client]?.last?.message else { return XCTFail("job did not finish") }
        XCTAssertEqual(result.weightsSHA256, sha)
    }

    // A diverged job told to carry on (`on_non_finite: continue`, NaN losses) still ends: every push of
    // a node reports the same NaN, which the server compares by its bits, and the weights are the local
    // trainer's.
    func testDivergedJobEndsWithTheLocalBits() throws {
        var spec = smallJob(chunks: 4, epochs: 1, optimizer: OptimizerSpec(kind: .sgd, learningRate: 1e30))
        spec.training.onNonFinite = .continue
        let (sha, _) = try localSHA(spec)
        let (clusterSHA, _, _) = try simulate(spec, workers: 2, seed: 4, chaos: false)
        XCTAssertEqual(clusterSHA, sha)
    }

    /// Diverging jobs: SGD at 1e30 (a finite first update, then a non-finite loss) and at 3e38 with an L2
    /// penalty (the update overflows from a finite gradient), each applied in parts and, clipped, whole.
    func divergingSpecs(_ policy: NonFinitePolicy) -> [JobSpec] {
        var specs: [JobSpec] = []
        for (rate, decay): (Float, Float) in [(1e30, 0), (3e38, 100)] {
            for clip: Float? in [nil, 1e30] {
                var spec = smallJob(chunks: 4, epochs: 2, earlyStopping: EarlyStoppingSpec(monitor: .valLoss, patience: 5),
                                    optimizer: OptimizerSpec(kind: .sgd, learningRate: rate, weightDecay: decay, clipNorm: clip))
                spec.training.onNonFinite = policy
                specs.append(spec)
            }
        }
        return specs
    }

    // By default a diverging job fails at the step the local trainer fails at, naming it and what was
    // not finite, and its model is the local trainer's last good weights (bitwise), with no NaN or inf:
    // the non-finite step was not applied, in parts (undone by the shard) or whole.
    func testDivergedJobFailsAtTheLocalStepWithTheLastGoodWeights() throws {
        var named: Set<NonFiniteStep.Value> = []
        for spec in divergingSpecs(.fail) {
            let local = LocalTrainer(spec: spec, data: try DataLoader.load(spec)).run()
            let step = try XCTUnwrap(local.nonFinite, "the local run did not diverge")
            XCTAssertTrue(local.failed)
            named.insert(step.value)
            for (workers, seed, chaos) in [(2, UInt64(4), false), (3, UInt64(9), true)] {
                let what = "lr \(spec.optimizer.learningRate) clip \(spec.optimizer.clipNorm ?? 0), \(workers) workers"
                let (result, sim) = try simulateToEnd(spec, workers: workers, seed: seed, chaos: chaos, shards: 2)
                XCTAssertEqual(result.state, .failed, what)
                XCTAssertTrue(result.message.hasPrefix("\(step); the last good weights (step \(step.step - 1)) are the job's model (psctl model pull job-1)"),
                              "\(what): \(result.message)")
                XCTAssertEqual(result.weightsSHA256, local.weightsSHA256, what)
                let model = try XCTUnwrap(sim.models["job-1"], what)
                XCTAssertEqual(weightsSHA256(model.parameters), local.weightsSHA256, what)
                XCTAssertTrue(model.parameters.allSatisfy(\.isFinite), what)
                XCTAssertTrue(sim.coordinator.keepsCheckpoints(of: "job-1"), what)
                // Its end is on disk before its model: a restart after the model alone would list it as completed.
                XCTAssertEqual(sim.writes, ["ended job-1", "model job-1"], what)
            }
        }
        XCTAssertEqual(named, [.loss, .update], "the specs should reach both the coordinator's and the shard's check")
    }

    // With `on_non_finite: stop` a diverging job completes, stopped early at the local trainer's step,
    // with a note naming it, and with the local trainer's bits and figures (the epoch ends at the last
    // good step; its validation runs on those weights).
    func testDivergedJobStopsWithTheLocalBits() throws {
        for spec in divergingSpecs(.stop) {
            let local = LocalTrainer(spec: spec, data: try DataLoader.load(spec)).run()
            let step = try XCTUnwrap(local.nonFinite)
            XCTAssertFalse(local.failed)
            XCTAssertTrue(local.model.parameters.allSatisfy(\.isFinite))
            let what = "lr \(spec.optimizer.learningRate) clip \(spec.optimizer.clipNorm ?? 0)"
            let (result, sim) = try simulateToEnd(spec, workers: 3, seed: 11, chaos: true, shards: 2)
            XCTAssertEqual(result.state, .stoppedEarly, what)
            // A job that ends well: its model first, so a restart in between finishes it from the model.
            XCTAssertEqual(sim.writes, ["model job-1", "ended job-1"], what)
            XCTAssertEqual(result.message, "stopped on a \(step) (training.on_non_finite: stop)", what)
            XCTAssertEqual(result.weightsSHA256, local.weightsSHA256, what)
            XCTAssertEqual(result.summary?.epochsRun, local.model.summary.epochsRun, what)
            XCTAssertEqual(result.summary?.testAccuracy, local.model.summary.testAccuracy, what)
            XCTAssertEqual(result.summary?.trainLoss, local.model.summary.trainLoss, what)
        }
    }

    // A clipped step cannot be applied a layer at a time (the norm needs every layer): with clipping the
    // server waits for the whole gradient, and chaos still keeps the bits.
    func testChaosWithClippingKeepsTheBits() throws {
        let clipped = OptimizerSpec(kind: .adam, learningRate: 0.003, clipNorm: 0.5)
        let onePart = [LayerSpec(units: 24, activation: .relu, dropout: 0.25), LayerSpec(units: 10, activation: .softmax)]
        for (spec, seeds) in [(smallJob(chunks: 5, epochs: 1, optimizer: clipped), 21...22 as ClosedRange<UInt64>),
                              (smallJob(chunks: 5, epochs: 1, optimizer: clipped, layers: onePart), 23...23)] {
            let (sha, _) = try localSHA(spec)
            for seed in seeds {
                let (clusterSHA, _, _) = try simulate(spec, workers: 3, seed: seed, chaos: true, shards: 2)
                XCTAssertEqual(clusterSHA, sha, "seed \(seed), \(spec.network.layout.pushRanges.count) push range(s)")
            }
        }
    }

    // Early stopping with restore_best decides identically in the cluster and keeps the same weights.
    func testEarlyStoppingMatchesLocal() throws {
        let spec = smallJob(epochs: 8, earlyStopping: EarlyStoppingSpec(monitor: .valLoss, patience: 1, restoreBest: true),
                            optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.9))
        let (sha, summary) = try localSHA(spec)
        let (clusterSHA, clusterSummary, _) = try simulate(spec, workers: 2, seed: 3, chaos: false)
        XCTAssertEqual(clusterSHA, sha)
        XCTAssertEqual(clusterSummary.epochsRun, summary.epochsRun)
        XCTAssertEqual(clusterSummary.bestEpoch, summary.bestEpoch)
        XCTAssertEqual(clusterSummary.stoppedEarly, summary.stoppedEarly)
    }
}
