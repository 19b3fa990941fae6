import XCTest
import PSCore
import PSData
@testable import PSControl
import PSTrain
import PSTransport
import PSWire
import PSTestSupport

/// Exactness that knows its precondition: a bitwise job computes only on workers whose compute
/// signature equals the job's; one that accepts mixed signatures uses every worker and says its result
/// is not bitwise-reproducible.
final class SignatureTests: XCTestCase {
    static let other = "openblas-0.3.21/SkylakeX/avx2/glibc-2.36/threads-1"

    func errors(_ sim: Simulation, _ id: ConnectionID) -> [ErrorReply] {
        sim.sent[id, default: []].compactMap { if case let .error(e) = $0.message { return e }; return nil }
    }

    func assignments(_ sim: Simulation, _ id: ConnectionID) -> Int {
        sim.sent[id, default: []].filter { if case .assignment = $0.message { return true }; return false }.count
    }

    func status(_ sim: inout Simulation, _ client: ConnectionID) throws -> StatusReply {
        sim.feed(.received(client, Envelope(requestId: 90, message: .statusRequest(jobId: ""))))
        guard case let .statusReply(status)? = sim.replies[client]?.last?.message else {
            XCTFail("no status reply")
            throw CocoaError(.featureUnsupported)
        }
        return status
    }

    /// A simulation with `spec` submitted by a client (no worker yet).
    func submitted(_ spec: JobSpec, seed: UInt64) throws -> (Simulation, ConnectionID) {
        var sim = try Simulation(spec: spec, seed: seed)
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        return (sim, client)
    }

    /// Delivers every message until none is left; the client waits on job-1.
    func runToEnd(_ sim: inout Simulation, _ client: ConnectionID) throws -> JobResult {
        sim.feed(.received(client, Envelope(requestId: 3, message: .waitJob(jobId: "job-1"))))
        var deliveries = 0
        while sim.step(duplicates: false), deliveries < 200_000 { deliveries += 1 }
        guard case let .jobResult(result)? = sim.replies[client]?.last?.message else {
            XCTFail("job did not finish")
            throw CocoaError(.featureUnsupported)
        }
        return result
    }

    // The first worker fixes the job's signature; a worker with another one is told why once, gets no
    // chunk of any step or evaluation, and status names it; the result equals the local trainer's bits
    // and records one signature.
    func testOtherSignatureGetsNoChunks() throws {
        let spec = smallJob()
        let local = LocalTrainer(spec: spec, data: try DataLoader.load(spec)).run()
        var (sim, client) = try submitted(spec, seed: 3)
        sim.addWorker()
        let odd = sim.nextConnection
        sim.addWorker(signature: Self.other)
        let told = errors(sim, odd)
        XCTAssertEqual(told.map(\.code), [.signatureMismatch])
        XCTAssertTrue(told.first?.message.contains(Simulation.signature) ?? false, "\(told)")
        XCTAssertTrue(told.first?.message.contains(Self.other) ?? false, "\(told)")
        XCTAssertFalse(sim.closed.contains(odd), "a worker left idle stays connected")

        let running = try status(&sim, client)
        XCTAssertEqual(running.jobs.first?.computeSignature, Simulation.signature)
        XCTAssertEqual(running.jobs.first?.excludedWorkers, 1)
        let oddStatus = try XCTUnwrap(running.cluster.workers.first { $0.computeSignature == Self.other })
        XCTAssertTrue(oddStatus.excludedReason.contains("job-1"), oddStatus.excludedReason)
        XCTAssertEqual(oddStatus.jobId, "")

        let result = try runToEnd(&sim, client)
        XCTAssertEqual(result.state, .completed)
        XCTAssertEqual(result.weightsSHA256, local.weightsSHA256)
        XCTAssertEqual(assignments(sim, odd), 0)
        XCTAssertEqual(errors(sim, odd).count, 1, "told once per job, not per step")
        XCTAssertEqual(result.summary?.computeSignatures, [Simulation.signature])
        XCTAssertEqual(result.summary?.bitwiseReproducible, true)
    }

    // When the only matching worker dies after its results were accepted, the job waits (status says for which signature, and how many
    // workers have another) rather than moving its chunks to the other worker; a matching worker joining
    // finishes it with the local trainer's bits.
    func testJobWaitsForItsSignature() throws {
        let spec = smallJob()
        let local = LocalTrainer(spec: spec, data: try DataLoader.load(spec)).run()
        var (sim, client) = try submitted(spec, seed: 4)
        let first = sim.nextConnection
        sim.addWorker()
        let odd = sim.nextConnection
        sim.addWorker(signature: Self.other)
        // Until the first worker's first push is accepted: from then on the job is bound to its signature.
        var deliveries = 0
        while sim.coordinator.run?.signaturesUsed.isEmpty ?? true, deliveries < 10_000, sim.step(duplicates: false) { deliveries += 1 }
        XCTAssertFalse(sim.coordinator.run?.signaturesUsed.isEmpty ?? true)
        sim.kill(first)
        let waiting = try status(&sim, client)
        XCTAssertEqual(waiting.jobs.first?.state, .waitingForWorkers)
        XCTAssertTrue(waiting.jobs.first?.message.contains("waiting for a worker with compute signature \(Simulation.signature)") ?? false,
                      waiting.jobs.first?.message ?? "")
        XCTAssertTrue(waiting.jobs.first?.message.contains("1 connected worker has another") ?? false)
        sim.addWorker()
        let result = try runToEnd(&sim, client)
        XCTAssertEqual(result.weightsSHA256, local.weightsSHA256)
        XCTAssertEqual(assignments(sim, odd), 0)
    }

    // With only other-signature workers connected when its data is ready, the job never shows as
    // running: it goes from submitted to waiting, and observers hear no start.
    func testOnlyOtherSignaturesMeansWaiting() throws {
        var spec = smallJob()
        spec.training.computeSignature = Self.other
        var sim = try Simulation(spec: spec, seed: 8)
        let client = sim.connect(.client)
        sim.addWorker()
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        let states = sim.observations.compactMap { o -> JobState? in
            if case let .jobState(_, _, state) = o { return state }
            return nil
        }
        XCTAssertEqual(states, [.submitted, .waitingForWorkers])
        let status = try status(&sim, client)
        XCTAssertTrue(status.jobs.first?.message.contains("waiting for a worker with compute signature \(Self.other)") ?? false,
                      status.jobs.first?.message ?? "")
    }

    // The first worker's signature binds the job only once a result computed with it is accepted: if
    // that worker dies before anything came back, the job takes the next first worker's signature and
    // finishes with the local trainer's bits, recording that one signature.
    func testUnboundSignatureMovesToTheNextWorker() throws {
        let spec = smallJob()
        let local = LocalTrainer(spec: spec, data: try DataLoader.load(spec)).run()
        var (sim, client) = try submitted(spec, seed: 9)
        let first = sim.nextConnection
        sim.addWorker()
        let second = sim.nextConnection
        sim.addWorker(signature: Self.other)
        XCTAssertEqual(errors(sim, second).map(\.code), [.signatureMismatch])
        sim.kill(first)  // before delivering anything: no result was accepted
        XCTAssertEqual(try status(&sim, client).jobs.first?.computeSignature, Self.other)
        let result = try runToEnd(&sim, client)
        XCTAssertEqual(result.weightsSHA256, local.weightsSHA256)
        XCTAssertEqual(result.summary?.computeSignatures, [Self.other])
        XCTAssertGreaterThan(assignments(sim, second), 0)
    }

    // A signature named in the spec wins over the first worker's: the first worker (another
    // signature) idles and the second computes everything.
    func testSpecNamesTheSignature() throws {
        var spec = smallJob()
        spec.training.computeSignature = Self.other
        var (sim, client) = try submitted(spec, seed: 5)
        let first = sim.nextConnection
        sim.addWorker()
        let second = sim.nextConnection
        sim.addWorker(signature: Self.other)
        let result = try runToEnd(&sim, client)
        XCTAssertEqual(result.state, .completed)
        XCTAssertEqual(assignments(sim, first), 0)
        XCTAssertGreaterThan(assignments(sim, second), 0)
        XCTAssertEqual(result.summary?.computeSignatures, [Self.other])
    }

    // allow_mixed_signatures: every worker computes, and the result lists both signatures and is
    // marked as not bitwise-reproducible.
    func testMixedSignaturesAcceptedAndMarked() throws {
        var spec = smallJob()
        spec.training.allowMixedSignatures = true
        var (sim, client) = try submitted(spec, seed: 6)
        sim.addWorker()
        let odd = sim.nextConnection
        sim.addWorker(signature: Self.other)
        let running = try status(&sim, client)
        XCTAssertEqual(running.jobs.first?.allowMixedSignatures, true)
        XCTAssertEqual(running.jobs.first?.excludedWorkers, 0)
        let result = try runToEnd(&sim, client)
        XCTAssertEqual(result.state, .completed)
        XCTAssertGreaterThan(assignments(sim, odd), 0)
        XCTAssertTrue(errors(sim, odd).isEmpty)
        XCTAssertEqual(result.summary?.computeSignatures, [Simulation.signature, Self.other].sorted())
        XCTAssertEqual(result.summary?.bitwiseReproducible, false)
    }

    // A worker's hello must carry a well-formed signature; the refusal names the field and closes the connection.
    func testWorkerHelloNeedsASignature() throws {
        var sim = try Simulation(spec: smallJob(), seed: 1)
        let oversized = "openblas-0.3.21/" + String(repeating: "H", count: 5_000_000) + "/avx2/glibc-2.36/threads-1"
        for (id, text) in [(ConnectionID(1), ""), (2, "Haswell"), (3, oversized),
                           (4, "openblas-0.3.21/\u{1B}[2J/avx2/glibc-2.36/threads-1")] {
            sim.nextConnection = id
            _ = sim.connect(.worker, signature: text)
            let error = try XCTUnwrap(errors(sim, id).first)
            XCTAssertEqual(error.code, .badRequest)
            XCTAssertEqual(error.field, "compute_signature")
            XCTAssertTrue(sim.closed.contains(id))
        }
    }
}

/// Workers that cannot run a job (data outside their roots, not a regular file, unreadable): they stay
/// idle for it, their chunks go to the others, and when none can, the job fails naming each and why.
final class CannotRunTests: XCTestCase {
    func testChunksMoveToWorkersThatCanAndTheBitsStay() throws {
        let spec = smallJob(chunks: 4, epochs: 1)
        let sha = LocalTrainer(spec: spec, data: try DataLoader.load(spec)).run().weightsSHA256
        var sim = try Simulation(spec: spec, seed: 8)
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        sim.addWorker()
        sim.addWorker()
        let refuser = sim.workers.keys.sorted().first!
        var told = false
        while sim.step(duplicates: false) {
            if !told, sim.coordinator.run?.work != nil {
                sim.workers[refuser] = nil  // it computes nothing more
                sim.feed(.received(refuser, Envelope(requestId: 0, message: .cannotRun(jobId: "job-1", reason: "data.train.images: /x is outside this worker's data roots (/srv)"))))
                told = true
                sim.feed(.received(client, Envelope(requestId: 3, message: .statusRequest(jobId: "job-1"))))
                guard case let .statusReply(reply)? = sim.replies[client]?.last?.message else { return XCTFail() }
                XCTAssertTrue(reply.jobs[0].message.contains("1 worker cannot run this job") && reply.jobs[0].message.contains("outside"), reply.jobs[0].message)
                XCTAssertTrue(reply.cluster.workers.contains { $0.excludedReason.contains("cannot run job-1") })
            }
        }
        XCTAssertTrue(told)
        sim.feed(.received(client, Envelope(requestId: 4, message: .waitJob(jobId: "job-1"))))
        guard case let .jobResult(result)? = sim.replies[client]?.last?.message else { return XCTFail() }
        XCTAssertEqual(result.weightsSHA256, sha)
    }

    func testWhenNoWorkerCanTheJobFailsNamingEach() throws {
        let spec = smallJob(chunks: 4, epochs: 1)
        var sim = try Simulation(spec: spec, seed: 9)
        let client = sim.connect(.client)
        sim.feed(.received(client, Envelope(requestId: 2, message: .submitJob(spec))))
        sim.feed(.received(client, Envelope(requestId: 3, message: .waitJob(jobId: "job-1"))))
        sim.addWorker()
        sim.addWorker()
        for (i, id) in sim.workers.keys.sorted().enumerated() {
            sim.workers[id] = nil
            sim.feed(.received(id, Envelope(requestId: 0, message: .cannotRun(jobId: "job-1", reason: "reason \(i)"))))
        }
        guard case let .jobResult(result)? = sim.replies[client]?.last?.message else { return XCTFail("no result") }
        XCTAssertEqual(result.state, .failed)
        XCTAssertTrue(result.message.hasPrefix("no worker can run the job: "), result.message)
        XCTAssertTrue(result.message.contains("reason 0") && result.message.contains("reason 1"), result.message)
    }
}
