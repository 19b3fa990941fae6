import Foundation
import PSWire
import XCTest

/// The cluster as users run it: real `ps-server`, `ps-worker` and `psctl` processes on 127.0.0.1.
final class ClusterEndToEndTests: XCTestCase {
    // MNIST with the example spec on 3, 2 and 1 workers: each run reaches 97.5% test accuracy and the
    // pulled model's weights_sha256 equals `psctl train --local` on the same spec.
    func testMNISTOnOneTwoThreeWorkersMatchesLocal() throws {
        let local = try Reference.localSHA("examples/mnist-mlp.yaml")
        for workers in [3, 2, 1] {
            let cluster = try LocalCluster()
            defer { cluster.stop() }
            for i in 1...workers { try cluster.startWorker("worker-\(i)") }
            let out = try cluster.psctl(["submit", "examples/mnist-mlp.yaml", "--wait", "--json"])
            XCTAssertEqual(out.status, 0, "\(workers) workers: \(out.stderr)\n\(cluster.log("server").suffix(2000))")
            let result = try Binaries.json(out)
            XCTAssertGreaterThanOrEqual(try XCTUnwrap(result["test_accuracy"] as? Double), 0.975, "\(workers) workers")
            XCTAssertEqual(result["weights_sha256"] as? String, local, "\(workers) workers")
            let jobId = try XCTUnwrap(result["job_id"] as? String)
            let model = cluster.directory + "/pulled.model"
            let pull = try cluster.psctl(["model", "pull", jobId, "-o", model])
            XCTAssertEqual(pull.status, 0, pull.stderr)
            let info = try Binaries.run("psctl", ["model", "info", model, "--json"])
            XCTAssertEqual(try Binaries.json(info)["weights_sha256"] as? String, local, "pulled model, \(workers) workers")
            print("cluster of \(workers): samples_per_second \(result["samples_per_second"] ?? "?")")
        }
    }

    // A worker killed with SIGKILL mid-job and another started mid-job: the job completes with the
    // local trainer's weights.
    func testWorkerKilledAndAnotherJoinedMidJob() throws {
        let overrides = ["training.epochs=3"]
        let local = try Reference.localSHA("examples/mnist-mlp.yaml", overrides)
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("a")
        try cluster.startWorker("b")
        let submit = try cluster.psctl(["submit", "examples/mnist-mlp.yaml", "--set", overrides[0]])
        XCTAssertEqual(submit.status, 0, submit.stderr)
        let job = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try cluster.waitUntil("epoch 2 starts") { (try cluster.jobStatus(job)["epoch"] as? Int ?? 0) >= 2 }
        cluster.kill("a", signal: SIGKILL)
        try cluster.waitUntil("the server notices") { try cluster.workerCount() == 1 }
        try cluster.startWorker("c")
        let wait = try cluster.psctl(["wait", job, "--json"])
        XCTAssertEqual(wait.status, 0, wait.stderr)
        XCTAssertEqual(try Binaries.json(wait)["weights_sha256"] as? String, local)
        XCTAssertTrue(cluster.log("server").contains("worker left"), "the kill was not noticed")
        XCTAssertTrue(cluster.log("c").contains("registered"))
    }

    // A stopped (SIGSTOP) worker keeps its TCP connection open; the heartbeat deadline removes it and
    // the job still completes with the local trainer's weights.
    func testFrozenWorkerIsRemovedByHeartbeatDeadline() throws {
        let overrides = ["training.epochs=1", "data.validation_split=0.2"]
        let local = try Reference.localSHA("examples/mnist-small-sgd.yaml", overrides)
        let cluster = try LocalCluster(heartbeatTimeout: 2)
        defer { cluster.stop() }
        try cluster.startWorker("frozen")
        let frozen = cluster.workers["frozen"]!
        kill(frozen.processIdentifier, SIGSTOP)
        defer { kill(frozen.processIdentifier, SIGCONT) }
        let submit = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml"] + overrides.flatMap { ["--set", $0] })
        let job = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try cluster.startWorker("healthy")
        let wait = try cluster.psctl(["wait", job, "--json"])
        XCTAssertEqual(wait.status, 0, wait.stderr)
        XCTAssertEqual(try Binaries.json(wait)["weights_sha256"] as? String, local)
        XCTAssertTrue(cluster.log("server").contains("missed its heartbeat deadline"), cluster.log("server").suffix(2000).description)
    }

    // Every kind of bad input gets an error reply where possible, a log line naming the peer and the
    // problem, and closes only that connection; afterwards the server still answers status and finishes a job.
    func testBadInputClosesOnlyThatConnection() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        let bystander = try RawPeer(address: cluster.address)
        try bystander.send(.hello(Hello(role: .client, name: "bystander")))
        XCTAssertNotNil(bystander.read(until: { if case .helloOk = $0 { return true }; return false }))

        // Garbage that happens to fit in a frame: undecodable envelope.
        let garbage = try RawPeer(address: cluster.address)
        garbage.write([0, 0, 0, 6, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff])
        XCTAssertEqual(garbage.readError()?.code, .badRequest)
        XCTAssertTrue(garbage.isClosedByServer())

        // An HTTP request: its first four bytes read as a 1.2 GB length, refused before any allocation.
        let http = try RawPeer(address: cluster.address)
        http.write(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        XCTAssertEqual(http.readError()?.code, .tooLarge)
        XCTAssertTrue(http.isClosedByServer())

        // The largest possible length prefix.
        let huge = try RawPeer(address: cluster.address)
        huge.write([0xff, 0xff, 0xff, 0xff])
        XCTAssertEqual(huge.readError()?.code, .tooLarge)

        // A truncated frame followed by the peer hanging up: nothing to answer, nothing breaks.
        let truncated = try RawPeer(address: cluster.address)
        truncated.write([0, 0, 1, 0, 1, 2, 3])
        truncated.close()

        // A hello from a future protocol version.
        let future = try RawPeer(address: cluster.address)
        try future.send(.hello(Hello(protocolVersion: 99, role: .client, name: "future")))
        let versionError = future.readError()
        XCTAssertEqual(versionError?.code, .versionMismatch)
        XCTAssertTrue(versionError?.message.contains("99") ?? false)
        XCTAssertTrue(future.isClosedByServer())

        // An unknown job, asked by a client: an error naming it (the connection may stay).
        try bystander.send(.statusRequest(jobId: "job-999"), requestId: 7)
        XCTAssertEqual(bystander.readError()?.code, .unknownJob)

        // Worker-side cases need a running job whose chunks a raw worker holds.
        let submit = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml"])
        XCTAssertEqual(submit.status, 0, submit.stderr)
        let job = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        func rawWorker(_ name: String) throws -> (RawPeer, Assignment?) {
            let w = try RawPeer(address: cluster.address)
            // The real workers' signature (same machine, same environment), so the job gives it chunks.
            let signature = try XCTUnwrap(try Binaries.signature()["compute_signature"] as? String)
            try w.send(.hello(Hello(role: .worker, name: name, computeSignature: signature)))
            try w.send(.registerWorker(RegisterWorker(name: name, threads: 1)), requestId: 2)
            XCTAssertNotNil(w.read(until: { if case .registered = $0 { return true }; return false }))
            return (w, nil)
        }
        let (holder, _) = try rawWorker("holder")
        guard case let .assignment(assignment)? = holder.read(until: { if case .assignment = $0 { return true }; return false })?.message else {
            return XCTFail("the raw worker got no assignment; server log:\n\(cluster.log("server").suffix(2000))")
        }
        let node = assignment.subtrees[0]
        let parameters = 784 * 64 + 64 + 64 * 10 + 10

        // A push for chunks this worker was not assigned.
        let (intruder, _) = try rawWorker("intruder")
        try intruder.send(.pushGradient(PushGradient(jobId: job, step: assignment.step, subtree: node,
                                                     gradient: TensorSlice(offset: 0, values: .init(repeating: 0, count: parameters)),
                                                     lossSum: 1, correct: 0, samples: assignment.batchSize)), requestId: 3)
        XCTAssertEqual(intruder.readError()?.code, .notAssigned)
        XCTAssertTrue(intruder.isClosedByServer())

        // A push for an unknown job.
        let (stranger, _) = try rawWorker("stranger")
        try stranger.send(.pushGradient(PushGradient(jobId: "job-42", step: 0, subtree: node,
                                                     gradient: TensorSlice(offset: 0, values: [1]), lossSum: 1, correct: 0, samples: 1)), requestId: 4)
        XCTAssertEqual(stranger.readError()?.code, .unknownJob)
        XCTAssertTrue(stranger.isClosedByServer())

        // A push for a step that has not started.
        try holder.send(.pushGradient(PushGradient(jobId: job, step: assignment.step + 50, subtree: node,
                                                   gradient: TensorSlice(offset: 0, values: .init(repeating: 0, count: parameters)),
                                                   lossSum: 1, correct: 0, samples: assignment.batchSize)), requestId: 5)
        XCTAssertEqual(holder.readError()?.code, .unknownStep)
        XCTAssertTrue(holder.isClosedByServer())

        // A tensor of the wrong length, from the worker that now holds the freed chunks.
        let (second, _) = try rawWorker("second")
        guard case let .assignment(again)? = second.read(until: { if case .assignment = $0 { return true }; return false })?.message else {
            return XCTFail("freed chunks were not reassigned")
        }
        try second.send(.pushGradient(PushGradient(jobId: job, step: again.step, subtree: again.subtrees[0],
                                                   gradient: TensorSlice(offset: 0, values: [0, 0, 0]),
                                                   lossSum: 1, correct: 0, samples: 1)), requestId: 6)
        let lengthError = second.readError()
        XCTAssertEqual(lengthError?.code, .badRequest)
        XCTAssertTrue(lengthError?.message.contains("\(parameters) parameters") ?? false, lengthError?.message ?? "")
        XCTAssertTrue(second.isClosedByServer())

        // The bystander never noticed; status answers; a real worker finishes the job.
        try bystander.send(.listJobs, requestId: 8)
        XCTAssertNotNil(bystander.read(until: { if case .jobList = $0 { return true }; return false }))
        XCTAssertEqual(try cluster.psctl(["status"]).status, 0)
        // Global options before the subcommand too, as kubectl and docker users type them.
        let global = try Binaries.run("psctl", ["--server", cluster.address, "status"])
        XCTAssertEqual(global.status, 0, global.stderr)
        XCTAssertTrue(global.stdout.contains(job), global.stdout)
        XCTAssertEqual(try Binaries.run("psctl", ["--server=\(cluster.address)", "list"]).status, 0)
        let local = try Binaries.run("psctl", ["--server", cluster.address, "model", "info", "none.model"])
        XCTAssertEqual(local.status, 2, "a subcommand that talks to no server refuses it: \(local.stderr)")
        XCTAssertTrue(local.stderr.contains("--server"), local.stderr)
        try cluster.startWorker("real")
        let wait = try cluster.psctl(["wait", job, "--json"])
        XCTAssertEqual(wait.status, 0, wait.stderr)
        XCTAssertNotNil(try Binaries.json(wait)["test_accuracy"])

        let log = cluster.log("server")
        for problem in ["not assigned", "unknown job", "has not started", "parameters", "protocol version 99", "rejected frame"] {
            XCTAssertTrue(log.contains(problem), "no log line about '\(problem)'")
        }
        XCTAssertTrue(log.contains("peer=127.0.0.1:"), "log lines must name the peer")
    }

    // An invalid spec is rejected by `psctl submit` with exit code 1 and the field named; nothing starts.
    func testInvalidSpecIsRejectedAndNothingStarts() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        let out = try cluster.psctl(["submit", "examples/mnist-mlp.yaml", "--set", "training.chunks=0"])
        XCTAssertEqual(out.status, 1)
        XCTAssertTrue(out.stderr.contains("training.chunks"), out.stderr)
        let missing = try cluster.psctl(["submit", "examples/mnist-mlp.yaml", "--set", "data.test.labels=/nonexistent/labels.gz"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("data.test.labels"), missing.stderr)
        let list = try cluster.psctl(["list", "--json"])
        XCTAssertEqual(list.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "[]")
        let unreachable = try Binaries.run("psctl", ["status", "--server", "127.0.0.1:1"])
        XCTAssertEqual(unreachable.status, 1)
        XCTAssertTrue(unreachable.stderr.contains("127.0.0.1:1"), unreachable.stderr)
    }

    // A job whose chunk count leaves connected workers idle is accepted with a note saying so; one
    // that can use them all gets none.
    func testSubmitNotesWorkersTheChunkCountLeavesIdle() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("a")
        try cluster.startWorker("b")
        let small = ["submit", "examples/mnist-small-sgd.yaml", "--set", "training.epochs=1", "--wait"]
        let one = try cluster.psctl(small + ["--set", "training.chunks=1"])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertTrue(one.stderr.contains("note: training.chunks is 1, so at most 1 of the 2 connected workers"), one.stderr)
        let two = try cluster.psctl(small + ["--set", "training.chunks=2"])
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertFalse(two.stderr.contains("note:"), two.stderr)
    }

    // SIGTERM stops the server cleanly (exit 0) without ending the running job, which a restarted server
    // resumes: a waiter with --reconnect-seconds 0 fails at once, saying the server closed the connection;
    // one with --reconnect-seconds 1 says it is reconnecting, then gives up with exit 1, naming the server.
    func testSigtermLeavesTheJobToARestart() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("w")
        let submit = try cluster.psctl(["submit", "examples/mnist-mlp.yaml"])
        let job = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try cluster.waitUntil("training starts") { (try cluster.jobStatus(job)["state"] as? String) == "running" }
        let waiters = try ["0", "1"].map { seconds in
            try cluster.launch("psctl", ["wait", job, "--server", cluster.address, "--reconnect-seconds", seconds],
                               log: "wait-\(seconds)")
        }
        Thread.sleep(forTimeInterval: 0.5)
        cluster.killServer(signal: SIGTERM)
        waiters.forEach { $0.waitUntilExit() }
        XCTAssertEqual(cluster.server.terminationStatus, 0)
        XCTAssertTrue(cluster.log("server").contains("the job resumes from"), cluster.log("server").suffix(2000).description)

        let atOnce = cluster.log("wait-0")
        XCTAssertEqual(waiters[0].terminationStatus, 1, atOnce)
        XCTAssertEqual(atOnce, "psctl: error: \(cluster.address) closed the connection\n")
        let gaveUp = cluster.log("wait-1")
        XCTAssertEqual(waiters[1].terminationStatus, 1, gaveUp)
        XCTAssertTrue(gaveUp.hasPrefix("psctl: lost the connection to \(cluster.address) while waiting for \(job) "
                                       + "(the server closed the connection); reconnecting\n"), gaveUp)
        XCTAssertTrue(gaveUp.contains("psctl: error: gave up waiting for \(job): no connection to \(cluster.address) for 1s "
                                      + "(last: cannot connect to \(cluster.address): connection refused)"), gaveUp)
    }
}
