import Foundation
import XCTest

/// A server that dies, with the real binaries: the MNIST example on 2 workers, `ps-server` killed at
/// several points of one run and restarted on the same data directory and address; the job ends with
/// `psctl train --local`'s weights, a job queued behind it survives and runs afterwards, and the model is
/// written once.
final class CrashRecoveryEndToEndTests: XCTestCase {
    func testKilledServerResumesWithTheLocalBits() throws {
        try killAndResume(signal: SIGKILL)
    }

    func testStoppedServerResumesWithTheLocalBits() throws {
        try killAndResume(signal: SIGTERM)
    }

    func killAndResume(signal: Int32) throws {
        let spec = "examples/mnist-mlp.yaml"
        let queuedSpec = "examples/mnist-small-sgd.yaml"
        let queuedOverrides = ["training.epochs=1"]
        let local = try Reference.localSHA(spec)
        let queuedLocal = try Reference.localSHA(queuedSpec, queuedOverrides)
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        let job = try cluster.psctl(["submit", spec]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let queued = try cluster.psctl(["submit", queuedSpec] + queuedOverrides.flatMap { ["--set", $0] })
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual([job, queued], ["job-1", "job-2"])
        let checkpoints = cluster.directory + "/data/jobs/job-1/checkpoints"

        // 1. Mid-epoch, once a checkpoint exists.
        try cluster.waitForServerLog("checkpoint written")
        try cluster.waitUntil("epoch 2 is under way") {
            let s = try cluster.jobStatus(job)
            return (s["epoch"] as? Int ?? 0) >= 2 && (s["step"] as? Int ?? 0) >= 100
        }
        try cluster.restartServer(signal: signal)
        try cluster.waitForServerLog("] job resumes from its checkpoint")

        // 2. During validation: the workers are frozen as it starts, so it cannot end before the kill.
        try killDuring("] validation started", cluster, signal: signal, notAfter: "] epoch done")

        // 3. While a checkpoint is being written (the test hook pauses each write halfway through). A
        //    SIGTERM lets the write finish; a SIGKILL leaves half a temporary file, which is never read.
        try cluster.restartServer(signal: signal, environment: ["PS_TEST_CHECKPOINT_WRITE_PAUSE_SECONDS": "3"])
        try cluster.waitForServerLog("test hook PS_TEST_CHECKPOINT_WRITE_PAUSE_SECONDS")
        let halfWritten = (try FileManager.default.contentsOfDirectory(atPath: checkpoints)).filter { $0.contains(".tmp-") }
        XCTAssertEqual(halfWritten.count, 1, "a checkpoint is being written")
        try cluster.restartServer(signal: signal)
        try cluster.waitForServerLog("] job resumes from its checkpoint")
        let left = (try FileManager.default.contentsOfDirectory(atPath: checkpoints)).filter { $0.contains(".tmp-") }
        XCTAssertEqual(left, [], "leftovers of the interrupted write are removed")

        // 4. After the last epoch, before the test evaluation ends.
        try killDuring("] test evaluation started", cluster, signal: signal, notAfter: "] job ended")

        let out = try cluster.psctl(["wait", job, "--json"])
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertEqual(try Binaries.json(out)["weights_sha256"] as? String, local, "job-1 after 4 restarts")
        let second = try cluster.psctl(["wait", queued, "--json"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(try Binaries.json(second)["weights_sha256"] as? String, queuedLocal, "the queued job")

        // Every server's log: one resume per restart, the model written once, checkpoints kept at 2.
        let logs = (["server"] + (2...6).map { "server-\($0)" }).map(cluster.log).joined(separator: "\n")
        XCTAssertEqual(count("[PSServer] model written", in: logs, job: "job-1"), 1, "the model is written once")
        XCTAssertEqual(count("] job resumes from its checkpoint", in: logs, job: "job-1"), 5, "one resume per restart (the restart that turned the test hook on included)")
        XCTAssertEqual(count("] job started", in: logs, job: "job-1"), 1)
        let listed = try cluster.psctl(["list"])
        XCTAssertTrue(listed.stdout.contains("job-1") && listed.stdout.contains("job-2"), listed.stdout)
        let remaining = (try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []
        XCTAssertLessThanOrEqual(remaining.filter { $0.hasSuffix(".ckpt") }.count, 2, "keep: 2")
    }

    /// Freezes the workers as soon as the server logs `start`, checks that `notAfter` was not logged
    /// after it yet (else tries again at the next occurrence), then stops the server with `signal`,
    /// restarts it and lets the workers go on.
    func killDuring(_ start: String, _ cluster: LocalCluster, signal: Int32, notAfter end: String) throws {
        var seen = 0
        for _ in 0..<10 {
            seen = try cluster.waitForServerLog(start, after: seen)
            cluster.signalWorkers(SIGSTOP)
            let log = cluster.log(cluster.serverLog)
            let tail = log.components(separatedBy: start).last ?? ""
            if !tail.contains(end) {
                try cluster.restartServer(signal: signal)
                cluster.signalWorkers(SIGCONT)
                try cluster.waitForServerLog("] job resumes from its checkpoint")
                return
            }
            cluster.signalWorkers(SIGCONT)  // it ended before the workers froze: the next one
        }
        XCTFail("never stopped the server between '\(start)' and '\(end)'")
    }

    func count(_ text: String, in logs: String, job: String) -> Int {
        logs.split(separator: "\n").filter { $0.contains(text) && $0.contains("job=\(job)") }.count
    }
}
