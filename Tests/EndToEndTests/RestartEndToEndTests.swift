import Foundation
import XCTest

/// Checkpoints and a server restart as users see them through psctl, with the real binaries.
final class RestartEndToEndTests: XCTestCase {
    /// Long enough (a few thousand steps) that the job is still running when the test acts on it, and
    /// checkpointed at every step so that one exists at once.
    static let overrides = ["training.epochs=40", "training.batch_size=16", "checkpoint.every_steps=1"]

    func submit(_ cluster: LocalCluster) throws -> String {
        let submit = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml"] + Self.overrides.flatMap { ["--set", $0] })
        XCTAssertEqual(submit.status, 0, submit.stderr)
        return submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // `psctl status` shows the running job's newest checkpoint. `psctl wait` outlasts the server killed
    // with SIGKILL and started again on the same data directory and port: it says on stderr that it lost
    // the connection and that it reconnected, and exits 0 with the job's result, whose weights are the
    // local trainer's (the job resumed from its checkpoint). The worker is frozen (SIGSTOP) across the
    // restart so that the job cannot end before the server is killed, however fast this machine is.
    func testWaitOutlastsAServerRestart() throws {
        let local = try Reference.localSHA("examples/mnist-small-sgd.yaml", Self.overrides)
        let cluster = try LocalCluster(heartbeatTimeout: 30)
        defer { cluster.stop() }
        try cluster.startWorker("w")
        let worker = cluster.workers["w"]!
        let job = try submit(cluster)
        try cluster.waitUntil("a checkpoint is written", timeout: 30) { try cluster.jobStatus(job)["checkpoint_step"] is Int }
        kill(worker.processIdentifier, SIGSTOP)
        defer { kill(worker.processIdentifier, SIGCONT) }

        let status = try cluster.psctl(["status", job])
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertNotNil(status.stdout.range(of: "\n\(job): checkpoint: step [1-9][0-9]*, [0-9]+s ago\n", options: .regularExpression),
                        status.stdout)
        XCTAssertFalse(status.stdout.contains("checkpoint failed"), status.stdout)
        let running = try cluster.jobStatus(job)
        XCTAssertEqual(running["state"] as? String, "running")
        XCTAssertNotNil(running["checkpoint_age_seconds"] as? Double, "\(running)")
        XCTAssertEqual(running["checkpoint_error"] as? String, "")

        let out = cluster.directory + "/logs/wait-stdout.log"
        let err = cluster.directory + "/logs/wait-stderr.log"
        for path in [out, err] { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let waiter = Process()
        waiter.executableURL = URL(fileURLWithPath: Binaries.buildDirectory + "/psctl")
        waiter.arguments = ["wait", job, "--json", "--server", cluster.address]
        waiter.standardOutput = FileHandle(forWritingAtPath: out)
        waiter.standardError = FileHandle(forWritingAtPath: err)
        try waiter.run()
        defer { if waiter.isRunning { waiter.terminate() } }
        Thread.sleep(forTimeInterval: 0.5)  // the wait request reaches the server
        cluster.killServer()
        try cluster.waitUntil("psctl wait notices", timeout: 10) { cluster.log("wait-stderr").contains("reconnecting") }
        XCTAssertTrue(waiter.isRunning, cluster.log("wait-stderr"))
        try cluster.restartServer(log: "server-restarted")
        kill(worker.processIdentifier, SIGCONT)
        try cluster.waitUntil("psctl wait exits", timeout: 60) { !waiter.isRunning }
        waiter.waitUntilExit()

        let stderr = cluster.log("wait-stderr")
        XCTAssertEqual(waiter.terminationStatus, 0, stderr)
        XCTAssertTrue(stderr.contains("psctl: lost the connection to \(cluster.address) while waiting for \(job) "
                                      + "(the server closed the connection); reconnecting\n"), stderr)
        XCTAssertTrue(stderr.contains("psctl: reconnected to \(cluster.address); waiting for \(job)\n"), stderr)
        let result = try Binaries.json(Binaries.Output(status: 0, stdout: cluster.log("wait-stdout"), stderr: stderr))
        XCTAssertEqual(result["job_id"] as? String, job)
        XCTAssertEqual(result["state"] as? String, "completed")
        XCTAssertEqual(result["weights_sha256"] as? String, local)
        XCTAssertTrue(cluster.log("server-restarted").contains("job resumes from its checkpoint"),
                      cluster.log("server-restarted").suffix(3000).description)
        XCTAssertTrue(try cluster.jobStatus(job)["checkpoint_step"] is NSNull, "an ended job shows no checkpoint")
    }

    // A checkpoint that cannot be written is shown by `psctl status` with its reason and the note that
    // training goes on with the previous one kept; the next one written clears it, and the job completes.
    func testStatusShowsAFailedCheckpoint() throws {
        let cluster = try LocalCluster(heartbeatTimeout: 30)
        defer { cluster.stop() }
        try cluster.startWorker("w")
        let worker = cluster.workers["w"]!
        let job = try submit(cluster)
        try cluster.waitUntil("a checkpoint is written", timeout: 30) { try cluster.jobStatus(job)["checkpoint_step"] is Int }
        // A file where the job's checkpoint folder was: the next writes fail, even for root. The worker
        // is frozen meanwhile, so that no checkpoint is written between the two changes.
        let folder = "\(cluster.directory)/data/jobs/\(job)/checkpoints"
        kill(worker.processIdentifier, SIGSTOP)
        Thread.sleep(forTimeInterval: 0.2)  // a checkpoint being written ends
        try FileManager.default.moveItem(atPath: folder, toPath: folder + ".aside")
        XCTAssertTrue(FileManager.default.createFile(atPath: folder, contents: Data("not a folder".utf8)))
        kill(worker.processIdentifier, SIGCONT)
        try cluster.waitUntil("a checkpoint fails", timeout: 30) { !(try cluster.jobStatus(job)["checkpoint_error"] as? String ?? "").isEmpty }
        kill(worker.processIdentifier, SIGSTOP)
        let status = try cluster.psctl(["status", job])
        kill(worker.processIdentifier, SIGCONT)
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertNotNil(status.stdout.range(of: "\n\(job): checkpoint: step [1-9][0-9]*, [0-9]+s ago\n", options: .regularExpression),
                        status.stdout)
        XCTAssertNotNil(status.stdout.range(
            of: "\n\(job): checkpoint failed: [^\n]*checkpoints[^\n]* \\(training goes on; the previous checkpoint is kept\\)\n",
            options: .regularExpression), status.stdout)

        // Without the file the server makes the folder again.
        try FileManager.default.removeItem(atPath: folder)
        try cluster.waitUntil("a checkpoint is written again", timeout: 30) {
            let j = try cluster.jobStatus(job)
            return j["state"] as? String != "running" || (j["checkpoint_error"] as? String) == ""
        }
        let wait = try cluster.psctl(["wait", job])
        XCTAssertEqual(wait.status, 0, wait.stderr)
    }
}
