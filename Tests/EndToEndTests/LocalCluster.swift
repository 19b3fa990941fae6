import Foundation
import XCTest

/// A real cluster for end-to-end tests: `ps-server` on 127.0.0.1 (a free port) and `ps-worker`
/// processes, each with its log in a scratch folder. Everything it started is stopped by `stop()`.
final class LocalCluster {
    let directory: String
    private(set) var server: Process!
    private(set) var address = ""
    private(set) var workers: [String: Process] = [:]
    /// The current server's log (`server`, then `server-2`, … after restarts).
    private(set) var serverLog = "server"
    private var serverArguments: [String]
    /// The server's data directory (`DIRECTORY/data` unless a restart moved it).
    private(set) var dataDirectory: String

    /// `extraServerArguments` are appended to ps-server's command line (e.g. `--metrics-listen`) and
    /// `serverEnvironment` added to its environment (e.g. `NOTIFY_SOCKET`); `prepareData` is called with
    /// the data directory's path before the server starts (to mount one).
    init(heartbeatTimeout: Double = 3, extraServerArguments: [String] = [], serverEnvironment: [String: String] = [:],
         prepareData: ((String) throws -> Void)? = nil) throws {
        directory = NSTemporaryDirectory() + "ps-cluster-\(UUID().uuidString)"
        dataDirectory = directory + "/data"
        try FileManager.default.createDirectory(atPath: directory + "/logs", withIntermediateDirectories: true)
        try prepareData?(dataDirectory)
        serverArguments = ["--heartbeat-timeout", "\(heartbeatTimeout)"] + extraServerArguments
        server = try launch("ps-server", ["--listen", "127.0.0.1:0", "--data-dir", dataDirectory] + serverArguments, log: "server",
                            environment: serverEnvironment)
        // The server logs the address it bound; wait for it.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let log = (try? String(contentsOfFile: directory + "/logs/server.log", encoding: .utf8)) ?? ""
            if let range = log.range(of: #"address=127\.0\.0\.1:[0-9]+"#, options: .regularExpression) {
                address = String(log[range].dropFirst("address=".count))
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        stop()
        throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "ps-server did not start: \(log("server"))"])
    }

    /// Stops everything and removes the scratch folder (logs, data directory, checkpoints), unless
    /// `PS_KEEP_TEST_DIRS` is set (to read the logs of a failed run).
    deinit {
        stop()
        if ProcessInfo.processInfo.environment["PS_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Stops the server with `signal` (SIGKILL: no clean-up at all) and starts a new one on the same data
    /// directory (or, after `beforeStart`, on `moveTo`) and address (with `environment` added), returning
    /// once it listens. Workers reconnect by themselves.
    func restartServer(signal: Int32, environment: [String: String] = [:], moveTo: String? = nil,
                       beforeStart: () throws -> Void = {}) throws {
        Foundation.kill(server.processIdentifier, signal)
        server.waitUntilExit()
        try beforeStart()
        if let moveTo { dataDirectory = moveTo }
        if signal == SIGTERM { XCTAssertEqual(server.terminationStatus, 0, "ps-server after SIGTERM:\n\(log(serverLog).suffix(2000))") }
        let number = (Int(serverLog.split(separator: "-").last ?? "") ?? 1) + 1
        serverLog = "server-\(number)"
        // The port may take a moment to be free again after a kill.
        let deadline = Date().addingTimeInterval(20)
        while true {
            server = try launch("ps-server", ["--listen", address, "--data-dir", dataDirectory] + serverArguments, log: serverLog,
                                environment: environment)
            while server.isRunning && !log(serverLog).contains("[PSServer] listening") { Thread.sleep(forTimeInterval: 0.02) }
            if server.isRunning { return }
            guard Date() < deadline else {
                throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "ps-server did not restart: \(log(serverLog))"])
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    /// Waits (polling every few milliseconds) until the current server's log holds `text` more than
    /// `after` times; returns the new count.
    @discardableResult
    func waitForServerLog(_ text: String, after: Int = 0, timeout: Double = 120) throws -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let count = log(serverLog).components(separatedBy: text).count - 1
            if count > after { return count }
            Thread.sleep(forTimeInterval: 0.003)
        }
        XCTFail("timed out waiting for '\(text)' in the server log:\n\(log(serverLog).suffix(3000))")
        throw CocoaError(.fileReadUnknown)
    }

    /// SIGSTOP or SIGCONT to every worker.
    func signalWorkers(_ signal: Int32) {
        for (_, p) in workers { Foundation.kill(p.processIdentifier, signal) }
    }

    func launch(_ binary: String, _ arguments: [String], log: String, environment: [String: String] = [:]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Binaries.buildDirectory + "/" + binary)
        p.arguments = arguments
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        p.currentDirectoryURL = URL(fileURLWithPath: Binaries.repositoryRoot)
        let path = "\(directory)/logs/\(log).log"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = FileHandle(forWritingAtPath: path)!
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    /// Starts a worker (with `extraArguments` appended to its command line and `environment` added to
    /// its environment) and returns once the server lists it.
    func startWorker(_ name: String, extraArguments: [String] = [], environment: [String: String] = [:]) throws {
        let before = try workerCount()
        workers[name] = try launch("ps-worker", ["--server", address, "--name", name] + extraArguments, log: name,
                                   environment: environment)
        try waitUntil("worker \(name) joins") { try self.workerCount() > before }
    }

    /// Stops the server with `signal` (SIGKILL: a crash) and waits for it to exit; the workers stay.
    func killServer(signal: Int32 = SIGKILL) {
        Foundation.kill(server.processIdentifier, signal)
        server.waitUntilExit()
    }

    /// Starts ps-server again on the same address and data directory, as a restart after `killServer`:
    /// it resumes the jobs its journal lists. Logs to `log`; returns once it listens.
    func restartServer(log name: String) throws {
        precondition(!server.isRunning, "the server still runs")
        serverLog = name
        server = try launch("ps-server", ["--listen", address, "--data-dir", dataDirectory] + serverArguments, log: name)
        try waitUntil("the restarted server listens", timeout: 20) { log(name).contains("listening") }
    }

    func kill(_ name: String, signal: Int32 = SIGKILL) {
        guard let p = workers.removeValue(forKey: name) else { return }
        Foundation.kill(p.processIdentifier, signal)
        p.waitUntilExit()
    }

    /// Added to every `psctl` this cluster runs (e.g. `PS_AUTH_TOKEN_FILE`).
    var clientEnvironment: [String: String] = [:]

    func psctl(_ arguments: [String], environment: [String: String]? = nil) throws -> Binaries.Output {
        try Binaries.run("psctl", arguments + ["--server", address], environment: environment ?? clientEnvironment)
    }

    func status(_ job: String? = nil) throws -> [String: Any] {
        let out = try psctl(["status", "--json"] + (job.map { [$0] } ?? []))
        guard out.status == 0 else { throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: out.stderr]) }
        return try Binaries.json(out)
    }

    func workerCount() throws -> Int {
        ((try status()["cluster"] as? [String: Any])?["workers"] as? [Any])?.count ?? 0
    }

    func jobStatus(_ job: String) throws -> [String: Any] {
        try XCTUnwrap((try status(job)["jobs"] as? [[String: Any]])?.first)
    }

    func waitUntil(_ what: String, timeout: Double = 120, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("timed out waiting until \(what); server log:\n\(log(serverLog).suffix(3000))")
        throw CocoaError(.fileReadUnknown)
    }

    /// The metrics URL a process (its log `name`) logged when it started serving (`url=http://127.0.0.1:PORT/metrics`).
    func metricsURL(log name: String = "server") throws -> String {
        var url: String?
        try waitUntil("\(name) serves metrics", timeout: 20) {
            let text = self.log(name)
            guard let range = text.range(of: #"url=http://127\.0\.0\.1:[0-9]+/metrics"#, options: .regularExpression) else {
                return false
            }
            url = String(text[range].dropFirst("url=".count))
            return true
        }
        return try XCTUnwrap(url)
    }

    func log(_ name: String) -> String {
        (try? String(contentsOfFile: "\(directory)/logs/\(name).log", encoding: .utf8)) ?? ""
    }

    func stop() {
        signalWorkers(SIGCONT)
        for (_, p) in workers where p.isRunning { p.terminate() }
        for (_, p) in workers { p.waitUntilExit() }
        workers = [:]
        if let server, server.isRunning {
            server.terminate()
            server.waitUntilExit()
        }
    }
}

/// The local trainer's fingerprints, computed once per test run and shared by the tests that compare with them.
enum Reference {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var cache: [String: String] = [:]

    /// `weights_sha256` of `psctl train --local SPEC` with `overrides`.
    static func localSHA(_ spec: String, _ overrides: [String] = []) throws -> String {
        let key = ([spec] + overrides).joined(separator: " ")
        lock.lock()
        defer { lock.unlock() }
        if let sha = cache[key] { return sha }
        let out = try Binaries.run("psctl", ["train", "--local", spec, "--json", "--output", "/dev/null"]
                                   + overrides.flatMap { ["--set", $0] })
        XCTAssertEqual(out.status, 0, out.stderr)
        let sha = try XCTUnwrap(try Binaries.json(out)["weights_sha256"] as? String)
        cache[key] = sha
        return sha
    }
}
