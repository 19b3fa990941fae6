import Foundation
import XCTest

/// Backup chunks with the real binaries: one of two workers is a straggler (the test stops and
/// continues it, a third of the time running), the job ends with `train --local`'s bits, and the
/// server's metrics and debug log show copies of its chunks were computed by the other worker.
final class BackupChunksEndToEndTests: XCTestCase {
    /// Stops and continues `pid` (SIGSTOP `off` seconds, SIGCONT `on` seconds) until `stop()`.
    final class DutyCycle: @unchecked Sendable {
        private let lock = NSLock()
        private var running = true
        private let done = DispatchSemaphore(value: 0)

        init(pid: Int32, on: Double, off: Double) {
            Thread.detachNewThread { [self] in
                while isRunning {
                    kill(pid, SIGSTOP)
                    Thread.sleep(forTimeInterval: off)
                    kill(pid, SIGCONT)
                    Thread.sleep(forTimeInterval: on)
                }
                done.signal()
            }
        }

        private var isRunning: Bool { lock.lock(); defer { lock.unlock() }; return running }

        /// Ends the cycle with the process continued.
        func stop() {
            lock.lock()
            running = false
            lock.unlock()
            done.wait()
        }
    }

    func testStragglerIsOvertakenAndTheBitsAreTheLocalOnes() throws {
        let overrides = ["training.epochs=6"]
        let local = try Reference.localSHA("examples/mnist-small-sgd.yaml", overrides)
        let cluster = try LocalCluster(extraServerArguments: ["--metrics-listen", "127.0.0.1:0", "--log-level", "debug"])
        defer { cluster.stop() }
        let url = try cluster.metricsURL(log: "server")
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        try cluster.waitUntil("both workers registered") { try cluster.workerCount() == 2 }
        // A third of its speed: running 20 ms of every 60 (each step takes a few milliseconds here).
        let cycle = DutyCycle(pid: try XCTUnwrap(cluster.workers["w2"]).processIdentifier, on: 0.02, off: 0.04)
        let started = Date()
        let out = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml"] + overrides.flatMap { ["--set", $0] } + ["--wait", "--json"])
        let seconds = Date().timeIntervalSince(started)
        cycle.stop()
        XCTAssertEqual(out.status, 0, out.stderr + "\n" + cluster.log("server").suffix(2000))
        let result = try Binaries.json(out)
        XCTAssertEqual(result["weights_sha256"] as? String, local, "the bits of train --local")

        let page = try String(contentsOf: URL(string: url)!, encoding: .utf8)
        func sample(_ name: String) -> Double? {
            page.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        let won = try XCTUnwrap(sample(#"ps_backup_chunks_total{outcome="won"}"#), "the metric is served")
        let lost = try XCTUnwrap(sample(#"ps_backup_chunks_total{outcome="lost"}"#))
        let log = cluster.log("server")
        let handedOut = log.components(separatedBy: "backup chunks handed out").count - 1
        print("straggler at a third: job took \(String(format: "%.2f", seconds)) s; \(handedOut) copies handed out, \(Int(won)) won, \(Int(lost)) lost")
        XCTAssertGreaterThan(won, 0, "a copy overtook the stopped worker")
        XCTAssertEqual(Double(handedOut), won + lost, "every copy settled: by its push, or by the original's")
        XCTAssertTrue(log.contains("backup chunks won"), "the debug log says so")
    }
}
