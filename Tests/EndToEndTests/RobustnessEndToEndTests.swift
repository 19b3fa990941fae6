import Foundation
import XCTest

/// Loads that cannot block anything else, programs that stop when told, and jobs that say why they do
/// not move, with the real binaries: a FIFO (or device, or folder) as data is refused by `psctl submit`
/// and, slipped in after the submit, fails its job naming the file while the next job runs and the server
/// still stops on SIGTERM; loads stuck in a read fail at their deadline and delay no other job; every
/// program exits within the stop limit; a job whose worker stopped answering names it in status.
final class RobustnessEndToEndTests: XCTestCase {
    static let spec = "examples/mnist-small-sgd.yaml"
    static let images = Binaries.repositoryRoot + "/data/mnist/small/train-images-idx3-ubyte"
    /// `StopLimits.orderlyStopSeconds` (10 s) plus room for a loaded 2-core machine to notice the exit.
    static let stopLimitSeconds = 15.0

    /// Seconds until `process` exits, or nil if it still runs after `timeout` (it is then killed).
    /// Sends `signal` to `process` and checks that it is gone within the stop limit, printing how long it
    /// took as "`what` exit after SIGNAL…" (a process still running after 30 s is killed and fails the test).
    func assertStops(_ process: Process, on signal: Int32, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        kill(process.processIdentifier, signal)
        let seconds = exitSeconds(process, timeout: 30)
        let name = signal == SIGINT ? "SIGINT" : "SIGTERM"
        print("\(what) exit after \(name): \(seconds.map { String(format: "%.2f s", $0) } ?? "still running after 30 s")")
        XCTAssertLessThan(seconds ?? .infinity, Self.stopLimitSeconds, what, file: file, line: line)
    }

    func exitSeconds(_ process: Process, timeout: Double) -> Double? {
        let started = Date()
        while process.isRunning {
            if Date().timeIntervalSince(started) > timeout {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return nil
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return Date().timeIntervalSince(started)
    }

    /// Submits `spec` with `overrides`, returning the job id.
    func submit(_ cluster: LocalCluster, _ overrides: [String]) throws -> String {
        let out = try cluster.psctl(["submit", Self.spec] + overrides.flatMap { ["--set", $0] })
        XCTAssertEqual(out.status, 0, out.stderr)
        return out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func state(_ cluster: LocalCluster, _ job: String) throws -> String {
        try cluster.jobStatus(job)["state"] as? String ?? ""
    }

    // psctl submit refuses a FIFO, a character device and a folder as data, naming the field and the path,
    // without opening them (a FIFO with no writer would block an open forever), and nothing is queued.
    func testSubmitRefusesDataThatIsNotARegularFile() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        let fifo = cluster.directory + "/train-images.fifo"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        for (path, kind) in [(fifo, "a FIFO"), ("/dev/zero", "a character device"), (cluster.directory, "a folder")] {
            let started = Date()
            let out = try cluster.psctl(["submit", Self.spec, "--set", "data.train.images=\(path)"])
            print("psctl submit with \(kind) as data.train.images: exit \(out.status) after \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
            XCTAssertEqual(out.status, 1, out.stdout + out.stderr)
            XCTAssertTrue(out.stderr.contains("data.train.images: \(path) is \(kind), not a regular file"), out.stderr)
        }
        let jobs = try cluster.status()["jobs"] as? [Any]
        XCTAssertEqual(jobs?.count, 0, "nothing was queued")
    }

    // A file replaced by a FIFO between the submit and the load: the job fails naming the file (the server
    // checks again at load and never opens it), the job behind it runs and its model is written, and the
    // server stops on SIGTERM within the limit.
    func testAFIFOSlippedInAfterTheSubmitFailsOnlyItsJob() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        let copy = cluster.directory + "/train-images"
        try FileManager.default.copyItem(atPath: Self.images, toPath: copy)
        // No worker yet: the first job loads and waits, holding the queue while the second's file changes.
        let first = try submit(cluster, ["training.epochs=1"])
        try cluster.waitUntil("\(first) waits for workers") { try state(cluster, first) == "waiting_for_workers" }
        let slipped = try submit(cluster, ["training.epochs=1", "data.train.images=\(copy)"])
        let next = try submit(cluster, ["training.epochs=1"])
        try FileManager.default.removeItem(atPath: copy)
        XCTAssertEqual(mkfifo(copy, 0o644), 0)
        XCTAssertEqual(try cluster.psctl(["cancel", first]).status, 0)

        try cluster.waitUntil("\(slipped) fails", timeout: 60) { try state(cluster, slipped) == "failed" }
        let message = try cluster.jobStatus(slipped)["message"] as? String ?? ""
        XCTAssertTrue(message.contains("data.train.images: \(copy) is a FIFO, not a regular file"), message)

        try cluster.startWorker("w1")
        let waited = try cluster.psctl(["wait", next])
        XCTAssertEqual(waited.status, 0, waited.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: cluster.dataDirectory + "/jobs/\(next)/model.psm"))

        assertStops(cluster.server, on: SIGTERM, "ps-server")
    }

    // Loads stuck in a read (the labelled test hook makes them hang, deaf to their cancellation, as a hung
    // network filesystem would): each fails its job at the --load-timeout deadline naming its files, the
    // server keeps a bounded number of threads, status stays quick, a normal job behind them runs and its
    // model is written, and SIGTERM still stops the server within the limit.
    func testStuckLoadsDelayNoOtherJobWriteOrStop() throws {
        let cluster = try LocalCluster(extraServerArguments: ["--load-timeout", "1"],
                                       serverEnvironment: ["PS_TEST_LOAD_HANG_PATH": "hangs-here"])
        defer { cluster.stop() }
        let stuckPath = cluster.directory + "/hangs-here-train-images"
        try FileManager.default.copyItem(atPath: Self.images, toPath: stuckPath)
        try cluster.startWorker("w1")
        let stuckCount = 6
        let stuck = try (0..<stuckCount).map { _ in try submit(cluster, ["training.epochs=1", "data.train.images=\(stuckPath)"]) }
        let normal = try submit(cluster, ["training.epochs=1"])
        var slowest = 0.0
        try cluster.waitUntil("the stuck jobs fail", timeout: 90) {
            let started = Date()
            let states = try stuck.map { try state(cluster, $0) }
            slowest = max(slowest, Date().timeIntervalSince(started) / Double(stuck.count))
            return states.allSatisfy { $0 == "failed" }
        }
        print("slowest psctl status while loads hang: \(String(format: "%.3f", slowest)) s")
        XCTAssertLessThan(slowest, 5)
        for job in stuck {
            let message = try cluster.jobStatus(job)["message"] as? String ?? ""
            XCTAssertTrue(message.hasPrefix("loading data took longer than 1 s"), message)
            XCTAssertTrue(message.contains("data.train.images: \(stuckPath)"), message)
        }
        let waited = try cluster.psctl(["wait", normal])
        XCTAssertEqual(waited.status, 0, waited.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: cluster.dataDirectory + "/jobs/\(normal)/model.psm"))
        let threads = try String(contentsOfFile: "/proc/\(cluster.server.processIdentifier)/status", encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("Threads:") } ?? ""
        print("ps-server with \(stuckCount) hung loads: \(threads)")

        assertStops(cluster.server, on: SIGTERM, "ps-server with hung loads")
    }

    // ps-server with a load hanging at the moment of SIGTERM, ps-worker mid-job, psctl wait and psctl
    // train --local (SIGINT, as a terminal's Ctrl-C) each exit within the stop limit.
    func testEveryProgramStopsWithinTheLimit() throws {
        let cluster = try LocalCluster(serverEnvironment: ["PS_TEST_LOAD_HANG_PATH": "hangs-here"])
        defer { cluster.stop() }
        try cluster.startWorker("w1")
        let job = try submit(cluster, ["training.epochs=10000"])
        try cluster.waitUntil("\(job) runs") { try state(cluster, job) == "running" }

        let waiter = try cluster.launch("psctl", ["wait", job, "--server", cluster.address], log: "wait")
        Thread.sleep(forTimeInterval: 1)
        assertStops(waiter, on: SIGTERM, "psctl wait")

        let local = try cluster.launch("psctl", ["train", "--local", Self.spec, "--set", "training.epochs=10000",
                                                 "--output", cluster.directory + "/local.psm"], log: "local")
        Thread.sleep(forTimeInterval: 1)
        assertStops(local, on: SIGINT, "psctl train --local")

        let worker = try XCTUnwrap(cluster.workers["w1"])
        assertStops(worker, on: SIGTERM, "ps-worker mid-job")

        // The server, while the job behind the cancelled one hangs in its load.
        let stuckPath = cluster.directory + "/hangs-here-train-images"
        try FileManager.default.copyItem(atPath: Self.images, toPath: stuckPath)
        let stuck = try submit(cluster, ["training.epochs=1", "data.train.images=\(stuckPath)"])
        let cancelled = try cluster.psctl(["cancel", job])
        XCTAssertEqual(cancelled.status, 0, cancelled.stderr)
        try cluster.waitForServerLog("test hook PS_TEST_LOAD_HANG_PATH")
        XCTAssertEqual(try state(cluster, stuck), "submitted")
        assertStops(cluster.server, on: SIGTERM, "ps-server during a hung load")
    }

    // When the orderly stop itself hangs (here: a checkpoint write the labelled test hook pauses for a
    // minute, which stop() waits for), the watchdog ends the server at the stop limit, exit status 1, and
    // the log says so. The half-written checkpoint is a temporary file a restart removes.
    func testTheWatchdogEndsAStopThatHangs() throws {
        let cluster = try LocalCluster(serverEnvironment: ["PS_TEST_CHECKPOINT_WRITE_PAUSE_SECONDS": "60"])
        defer { cluster.stop() }
        try cluster.startWorker("w1")
        _ = try submit(cluster, ["training.epochs=10000"])
        try cluster.waitForServerLog("test hook PS_TEST_CHECKPOINT_WRITE_PAUSE_SECONDS")
        assertStops(cluster.server, on: SIGTERM, "ps-server with a hung checkpoint write")
        XCTAssertEqual(cluster.server.terminationStatus, 1)
        XCTAssertTrue(cluster.log("server").contains("the orderly stop did not finish in time; exiting now"),
                      String(cluster.log("server").suffix(2000)))
    }

    // A worker that stops answering mid-job (SIGSTOP) while its connection stays up: before the heartbeat
    // deadline removes it, status names the job as stalled, waiting for that worker's chunks, and the log
    // says so; once it runs again the reason is gone.
    func testAStalledJobNamesTheWorkerItWaitsFor() throws {
        let cluster = try LocalCluster(heartbeatTimeout: 60, extraServerArguments: ["--stall-seconds", "2"])
        defer { cluster.stop() }
        try cluster.startWorker("fast")
        try cluster.startWorker("frozen")
        // Without backup chunks: with them the fast worker computes the frozen one's chunks and the job
        // does not stall (BackupChunksEndToEndTests).
        let job = try submit(cluster, ["training.epochs=10000", "training.backup_chunks=false"])
        try cluster.waitUntil("\(job) has applied a step") { (try cluster.jobStatus(job)["step"] as? Int ?? 0) > 0 }
        let frozen = try XCTUnwrap(cluster.workers["frozen"])
        kill(frozen.processIdentifier, SIGSTOP)
        var reason = ""
        try cluster.waitUntil("status says why \(job) stalls", timeout: 40) {
            reason = try cluster.jobStatus(job)["stall_reason"] as? String ?? ""
            return !reason.isEmpty
        }
        print("stall_reason: \(reason)")
        XCTAssertTrue(reason.contains("(frozen, last heartbeat"), reason)
        XCTAssertTrue(reason.contains("waits for chunk"), reason)
        let text = try cluster.psctl(["status", job])
        XCTAssertTrue(text.stdout.contains("\(job): stalled: no progress for"), text.stdout)
        try cluster.waitForServerLog("job stalled")
        kill(frozen.processIdentifier, SIGCONT)
        try cluster.waitUntil("\(job) moves again", timeout: 60) {
            (try cluster.jobStatus(job)["stall_reason"] as? String ?? "x").isEmpty
        }
        try cluster.waitForServerLog("job moving again")
    }

    // A worker whose copy of the data fails to load (here: truncated after the server loaded its own)
    // reports it (CannotRun) instead of holding its chunks; with no other worker the job fails naming the
    // worker, the file and the error.
    func testAWorkerWhoseDataFailsToLoadReportsIt() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        let copy = cluster.directory + "/train-images"
        try FileManager.default.copyItem(atPath: Self.images, toPath: copy)
        let job = try submit(cluster, ["training.epochs=1", "data.train.images=\(copy)"])
        try cluster.waitUntil("\(job) waits for workers") { try state(cluster, job) == "waiting_for_workers" }
        XCTAssertEqual(truncate(copy, 1000), 0)
        try cluster.startWorker("damaged")
        try cluster.waitUntil("\(job) fails", timeout: 60) { try state(cluster, job) == "failed" }
        let message = try cluster.jobStatus(job)["message"] as? String ?? ""
        print("message: \(message)")
        XCTAssertTrue(message.hasPrefix("no worker can run the job: damaged: "), message)
        XCTAssertTrue(message.contains(copy), message)
        XCTAssertTrue(cluster.log("damaged").contains("cannot run the job"), cluster.log("damaged"))
    }

    // psctl status stays quick while a model near the largest the limits allow (13,982,710 parameters) is
    // set up, trained for one epoch and written: the latencies are printed, and the model write's time.
    func testStatusStaysQuickWhileTheLargestModelIsSetUp() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("w1")
        let data = Binaries.repositoryRoot + "/data/mnist/small"
        let spec = cluster.directory + "/largest.yaml"
        try """
            name: largest
            seed: 1
            data:
              format: idx
              train: {images: \(data)/train-images-idx3-ubyte, labels: \(data)/train-labels-idx1-ubyte}
              scale: 255
            model:
              inputs: 784
              layers:
                - {units: 3500, activation: relu}
                - {units: 3200, activation: relu}
                - {units: 10, activation: softmax}
            loss: softmax_cross_entropy
            optimizer: {name: adam, learning_rate: 0.001}
            training: {batch_size: 64, chunks: 2, epochs: 1}
            """.write(toFile: spec, atomically: true, encoding: .utf8)
        let out = try cluster.psctl(["submit", spec])
        XCTAssertEqual(out.status, 0, out.stderr)
        let job = out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // Set-up (initial weights, first sends), then training, then the end (the model written).
        var latencies: [String: [Double]] = [:]
        try cluster.waitUntil("\(job) ends", timeout: 300) {
            let started = Date()
            let status = try cluster.jobStatus(job)
            let phase = (status["step"] as? Int ?? 0) == 0 ? "set-up" : "training and end"
            latencies[phase, default: []].append(Date().timeIntervalSince(started))
            return status["state"] as? String == "completed"
        }
        for (phase, values) in latencies.sorted(by: { $0.key > $1.key }) {
            let sorted = values.sorted()
            print("psctl status during the \(phase) of a 13,982,710-parameter job: \(values.count) calls, median "
                  + String(format: "%.3f s, max %.3f s", sorted[sorted.count / 2], sorted.last!))
            XCTAssertLessThan(sorted.last!, 5, phase)
        }
        let written = cluster.log("server").split(separator: "\n").first { $0.contains("model written") } ?? ""
        print("ps-server: \(written)")
    }

    // --load-timeout and --stall-seconds out of range, not a number or NaN: ps-server refuses to start
    // (usage error, exit 64), naming the flag and the range, and creates no data directory.
    func testOutOfRangeTimeFlagsAreRefused() throws {
        let data = NSTemporaryDirectory() + "ps-flags-\(UUID().uuidString)"
        for flag in ["--load-timeout", "--stall-seconds"] {
            for value in ["0", "-1", "100000", "nan", "soon"] {
                let out = try Binaries.run("ps-server", ["--listen", "127.0.0.1:0", "--data-dir", data, "\(flag)=\(value)"])
                XCTAssertEqual(out.status, 64, "\(flag) \(value): \(out.stderr)")
                let named = out.stderr.contains("\(flag) must be between 0.5 and 86400 seconds")
                    || out.stderr.contains("The value '\(value)' is invalid for '\(flag) <seconds>'")  // not a number
                XCTAssertTrue(named, "\(flag) \(value): \(out.stderr)")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: data))
    }
}
