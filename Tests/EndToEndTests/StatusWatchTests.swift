import Foundation
import XCTest

/// `psctl status --watch` as a person and as a script see it.
final class StatusWatchTests: XCTestCase {
    // Off a terminal, --watch prints plain lines (no escape codes) until the watched job ends, then exits 0;
    // on a terminal it redraws in place and draws sparklines of the loss and validation accuracy.
    func testWatchPlainAndTerminal() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("w")
        // Long enough (a few seconds) that the watch prints several updates before the job ends.
        let overrides = ["--set", "training.epochs=60", "--set", "training.batch_size=16"]
        let plainJob = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml"] + overrides)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let plain = try cluster.psctl(["status", "--watch", plainJob, "--interval", "0.2"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stdout.contains("\u{1B}"), "escape codes in non-terminal output")
        let lines = plain.stdout.split(separator: "\n")
        XCTAssertGreaterThan(lines.count, 2)
        XCTAssertTrue(lines.last?.contains("\(plainJob) completed") ?? false, plain.stdout)
        XCTAssertTrue(plain.stdout.contains(" running epoch "), plain.stdout)

        let ttyJob = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml"] + overrides)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // `script` gives the command a pseudo-terminal, as a person's shell would.
        let command = "\(Binaries.buildDirectory)/psctl status --watch \(ttyJob) --interval 0.2 --server \(cluster.address)"
        let tty = try Binaries.runSystem("/usr/bin/script", ["-qfec", command, "/dev/null"])
        XCTAssertEqual(tty.status, 0, tty.stderr)
        XCTAssertTrue(tty.stdout.contains("\u{1B}[H\u{1B}[2J"), "no in-place redraw")
        XCTAssertTrue(tty.stdout.contains("WORKER  NAME"), "no worker table")
        XCTAssertTrue(tty.stdout.contains("\(ttyJob) loss "), "no loss sparkline")
        XCTAssertTrue(tty.stdout.unicodeScalars.contains { "▁▂▃▄▅▆▇█".unicodeScalars.contains($0) }, "no sparkline bars")
    }
}
