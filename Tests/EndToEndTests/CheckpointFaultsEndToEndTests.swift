import Foundation
import XCTest

/// Checkpoints that are damaged, missing or cannot be written, with the real binaries: a restarted server
/// falls back to the previous checkpoint (or the job's start), a full disk is reported and training goes
/// on, and a copied data directory resumes elsewhere; every run ends with `train --local`'s weights.
final class CheckpointFaultsEndToEndTests: XCTestCase {
    static let spec = "examples/mnist-small-sgd.yaml"
    static let overrides = ["training.epochs=40", "checkpoint.every_steps=3", "checkpoint.keep=3"]

    func submit(_ cluster: LocalCluster) throws -> String {
        let out = try cluster.psctl(["submit", Self.spec] + Self.overrides.flatMap { ["--set", $0] })
        XCTAssertEqual(out.status, 0, out.stderr)
        return out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Freezes the workers once the server has written `count` more checkpoints, kills the server, lets
    /// `damage` act on the checkpoint folder (newest entry first), and restarts it (on `moveTo` if given).
    func crash(_ cluster: LocalCluster, after count: Int, moveTo: String? = nil,
               damage: (_ folder: String, _ newestFirst: [String]) throws -> Void) throws {
        let written = cluster.log(cluster.serverLog).components(separatedBy: "] checkpoint written").count - 1
        try cluster.waitForServerLog("] checkpoint written", after: written + count - 1)
        cluster.signalWorkers(SIGSTOP)
        Thread.sleep(forTimeInterval: 0.3)  // a checkpoint already taken finishes its write
        try cluster.restartServer(signal: SIGKILL, moveTo: moveTo) {
            let folder = cluster.dataDirectory + "/jobs/job-1/checkpoints"
            let entries = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".ckpt") }.sorted()
            try damage(folder, entries.reversed())
            if let moveTo {
                let copy = Process()
                copy.executableURL = URL(fileURLWithPath: "/bin/cp")
                copy.arguments = ["-a", cluster.dataDirectory, moveTo]
                try copy.run()
                copy.waitUntilExit()
                XCTAssertEqual(copy.terminationStatus, 0)
                try FileManager.default.removeItem(atPath: cluster.dataDirectory)
            }
        }
        cluster.signalWorkers(SIGCONT)
    }

    // A truncated newest checkpoint, then one with a flipped byte, then a missing newest one: each time
    // the server says why it passes over the newest and resumes from the previous one. With every
    // checkpoint damaged it starts over. Last, the data directory is copied to another path and the
    // server started there resumes. The job ends with the local trainer's bits.
    func testDamagedMissingAndMovedCheckpoints() throws {
        let local = try Reference.localSHA(Self.spec, Self.overrides)
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("w1")
        let job = try submit(cluster)

        try crash(cluster, after: 4) { folder, entries in
            let path = "\(folder)/\(entries[0])"
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        }
        try expectFallback(cluster, problem: "not a valid protobuf message")

        try crash(cluster, after: 3) { folder, entries in
            let path = "\(folder)/\(entries[0])"
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes[bytes.count / 2] ^= 0x01
            try bytes.write(to: URL(fileURLWithPath: path))
        }
        try expectFallback(cluster, problem: "checksum does not match")

        var removed = ""
        try crash(cluster, after: 3) { folder, entries in
            removed = entries[0]
            try FileManager.default.removeItem(atPath: "\(folder)/\(entries[0])")
        }
        let read = try cluster.waitForServerLog("] checkpoint read")
        XCTAssertEqual(read, 1)
        XCTAssertFalse(cluster.log(cluster.serverLog).contains(removed), "resumed from the one before the missing newest")

        try crash(cluster, after: 3) { folder, entries in
            for entry in entries { try Data("garbage".utf8).write(to: URL(fileURLWithPath: "\(folder)/\(entry)")) }
        }
        try cluster.waitForServerLog("checkpoint not usable; the job starts at its first step")
        try cluster.waitForServerLog("] job starts over from its first step")

        try crash(cluster, after: 3, moveTo: cluster.directory + "/moved") { _, _ in }
        try cluster.waitForServerLog("] job resumes from its checkpoint")

        let out = try cluster.psctl(["wait", job, "--json"])
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertEqual(try Binaries.json(out)["weights_sha256"] as? String, local)
        XCTAssertTrue(FileManager.default.fileExists(atPath: cluster.directory + "/moved/jobs/job-1/model.psm"))
    }

    /// The restarted server names the newest checkpoint's problem, then resumes from the previous one.
    func expectFallback(_ cluster: LocalCluster, problem: String) throws {
        try cluster.waitForServerLog("checkpoint not usable; trying the previous one")
        let log = cluster.log(cluster.serverLog)
        XCTAssertTrue(log.contains(problem), "the log names '\(problem)':\n\(log.suffix(2000))")
        try cluster.waitForServerLog("] job resumes from its checkpoint")
    }

    // A full disk (a 2 MiB tmpfs as the data directory, filled once the first checkpoint is written):
    // checkpoints fail with an error line, a metric and a status note while training goes on and the
    // previous checkpoint stays intact; once there is room again they are written and the note clears.
    func testFullDiskKeepsTrainingAndThePreviousCheckpoint() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root (CI runs as root)") }
        let local = try Reference.localSHA(Self.spec, Self.overrides)
        var mounted = ""
        let cluster = try LocalCluster(extraServerArguments: ["--metrics-listen", "127.0.0.1:0"]) { data in
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            XCTAssertEqual(try Binaries.runSystem("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", data]).status, 0)
            mounted = data
        }
        defer {
            cluster.stop()
            if !mounted.isEmpty { _ = try? Binaries.runSystem("/bin/umount", [mounted]) }
        }
        let metrics = try cluster.metricsURL()
        try cluster.startWorker("w1")
        let job = try submit(cluster)
        try cluster.waitForServerLog("] checkpoint written")
        cluster.signalWorkers(SIGSTOP)
        Thread.sleep(forTimeInterval: 0.3)
        let folder = cluster.dataDirectory + "/jobs/job-1/checkpoints"
        let before = try checkpointFiles(folder)
        // Fill what is left of the tmpfs.
        let filler = cluster.dataDirectory + "/filler"
        _ = try Binaries.runSystem("/bin/dd", ["if=/dev/zero", "of=\(filler)", "bs=4096", "count=1000"])
        cluster.signalWorkers(SIGCONT)
        try cluster.waitForServerLog("cannot write checkpoint; training goes on and the previous checkpoint is kept")
        cluster.signalWorkers(SIGSTOP)
        let status = try cluster.jobStatus(job)
        let note = status["checkpoint_error"] as? String ?? ""
        XCTAssertTrue(note.contains("No space left on device"), "status: \(status)")
        XCTAssertEqual(try checkpointFiles(folder), before, "the previous checkpoints are intact, nothing half-written is left")
        let scraped = try String(contentsOf: URL(string: metrics)!, encoding: .utf8)
        let failures = scraped.split(separator: "\n").first { $0.hasPrefix("ps_checkpoint_failures_total ") }
        XCTAssertNotNil(failures, scraped)
        XCTAssertGreaterThanOrEqual(Double(failures?.split(separator: " ").last ?? "0") ?? 0, 1, scraped)
        XCTAssertTrue(scraped.contains("ps_checkpoint_bytes "), scraped)
        XCTAssertTrue(scraped.contains("ps_checkpoint_seconds_bucket"), scraped)

        try FileManager.default.removeItem(atPath: filler)
        let written = cluster.log(cluster.serverLog).components(separatedBy: "] checkpoint written").count - 1
        cluster.signalWorkers(SIGCONT)
        try cluster.waitForServerLog("] checkpoint written", after: written)
        try cluster.waitUntil("the note clears") { (try cluster.jobStatus(job)["checkpoint_error"] as? String ?? "").isEmpty }
        let out = try cluster.psctl(["wait", job, "--json"])
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertEqual(try Binaries.json(out)["weights_sha256"] as? String, local)
    }

    /// Name and contents of every file in `folder`.
    func checkpointFiles(_ folder: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(name)"))
        }
        return files
    }
}
