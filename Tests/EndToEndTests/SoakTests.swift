import Foundation
import PSTestSupport
import PSWire
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A seeded soak: real binaries on 127.0.0.1 run several jobs in a row while a driver injects faults
/// at random — workers killed, stopped and resumed, restarted; garbage and half-sent frames; bursts of
/// idle connections. At the end every job is in a final state with `train --local`'s bits, no program
/// crashed, the server's resident memory stayed under `rssBoundMB`, and `psctl status` never took
/// longer than `statusBoundSeconds`.
///
/// The default run is short and part of `make test`. A longer one:
/// `PS_SOAK_SECONDS=600 PS_SOAK_JOBS=40 PS_SOAK_SEED=7 swift test ... --filter SoakTests`.
/// The seed is printed first, so a failing run can be repeated with its faults in the same order.
final class SoakTests: XCTestCase {
    /// The server's resident memory must stay under this. It idles at about 30 MB with the small
    /// example; the transport's cap on bytes held in incomplete frames (128 MiB) is the rest.
    static let rssBoundMB = 300.0
    /// `psctl status`, a whole process run (start, connect, hello, reply), must always return within this.
    static let statusBoundSeconds = 2.0

    func testSoak() throws {
        let env = ProcessInfo.processInfo.environment
        let seed = UInt64(env["PS_SOAK_SEED"] ?? "") ?? 14
        let seconds = Double(env["PS_SOAK_SECONDS"] ?? "") ?? 45
        let jobCount = Int(env["PS_SOAK_JOBS"] ?? "") ?? 8
        print("soak: seed \(seed), \(seconds) s of faults at most, \(jobCount) jobs")
        raiseOpenFileLimit()
        var random = SeededGenerator(state: seed)

        // Jobs differ in chunk count, batch size and seed: the faults must never change the math. Each
        // runs a few seconds, so faults land in every phase (loading, training, validation, test).
        let variants: [[String]] = [
            ["training.epochs=150", "training.batch_size=32"],
            ["training.epochs=120", "training.chunks=3", "training.batch_size=32"],
            ["training.epochs=60", "training.batch_size=16", "seed=2"],
            ["training.epochs=120", "training.chunks=4", "seed=3", "training.batch_size=32"],
        ]
        let spec = "examples/mnist-small-sgd.yaml"
        let cluster = try LocalCluster(heartbeatTimeout: 2)
        defer { cluster.stop() }
        var soak = SoakDriver(cluster: cluster)
        // Declared after the cluster's, so it runs first: the driver's workers are not the cluster's.
        defer { soak.stopWorkers() }
        for _ in 0..<3 { try soak.startWorker() }
        let serverPid = cluster.server.processIdentifier
        let rssBefore = residentMB(serverPid)

        // Jobs in a row: a new one is submitted whenever fewer than two are waiting or running, until
        // `jobCount` were submitted and the fault time is spent.
        var jobs: [(id: String, overrides: [String])] = []
        func submit() throws {
            let overrides = variants[jobs.count % variants.count]
            let out = try cluster.psctl(["submit", spec] + overrides.flatMap { ["--set", $0] })
            XCTAssertEqual(out.status, 0, out.stderr)
            jobs.append((out.stdout.trimmingCharacters(in: .whitespacesAndNewlines), overrides))
        }
        // `psctl status` and the server's memory are sampled all along, by a thread of their own, so that
        // what a fault does to them is seen while it happens (not only between faults).
        let poller = StatusPoller(cluster: cluster, serverPid: serverPid)
        poller.start()
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            let open = try soak.observe(jobs.map(\.id), serverPid: serverPid)
            if open < 2 && jobs.count < jobCount { try submit() }
            if open == 0 && jobs.count >= jobCount { break }
            try soak.injectFault(&random)
            Thread.sleep(forTimeInterval: Double.random(in: 0.1...0.5, using: &random))
        }
        // Faults stop; the cluster must finish whatever is left with the workers it has.
        try soak.settle()
        try cluster.waitUntil("every job ends", timeout: 300) { try soak.observe(jobs.map(\.id), serverPid: serverPid) == 0 }
        let duration = Date().timeIntervalSince(start)
        let (polled, rssMaxMB, failures) = poller.stop()
        for failure in failures.prefix(3) { XCTFail("psctl status failed during the soak: \(failure)") }

        for (id, overrides) in jobs {
            let wait = try cluster.psctl(["wait", id, "--json"])
            XCTAssertEqual(wait.status, 0, "\(id) \(overrides): \(wait.stderr)")
            XCTAssertEqual(try Binaries.json(wait)["weights_sha256"] as? String, try Reference.localSHA(spec, overrides),
                           "\(id) \(overrides)")
        }
        XCTAssertTrue(cluster.server.isRunning, "the server exited")
        for (name, crash) in soak.crashes() { XCTFail("\(name) crashed: \(crash)") }
        let serverLog = cluster.log(cluster.serverLog)
        for sign in ["Fatal error", "Segmentation", "precondition"] {
            XCTAssertFalse(serverLog.contains(sign), "the server log has '\(sign)'")
        }

        let latencies = (soak.statusSeconds + polled).sorted()
        func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        print("soak: \(String(format: "%.0f", duration)) s, \(jobs.count) jobs completed with train --local's bits; faults: "
              + soak.faults.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print("soak: server RSS \(String(format: "%.0f", rssBefore)) MB before, \(String(format: "%.0f", max(soak.rssMaxMB, rssMaxMB))) MB at most "
              + "(bound \(Self.rssBoundMB)); psctl status over \(latencies.count) calls: p50 \(ms(percentile(0.5))), "
              + "p90 \(ms(percentile(0.9))), p99 \(ms(percentile(0.99))), max \(ms(latencies.last ?? 0)) (bound \(Self.statusBoundSeconds) s)")
        XCTAssertLessThan(max(soak.rssMaxMB, rssMaxMB), Self.rssBoundMB)
        XCTAssertLessThan(latencies.last ?? 0, Self.statusBoundSeconds)
    }

    private func ms(_ seconds: Double) -> String { String(format: "%.0f ms", seconds * 1000) }
}

/// The soak's fault injector and observer: it owns the workers it starts and the raw connections it opens.
struct SoakDriver {
    let cluster: LocalCluster
    private var workers: [(name: String, process: Process)] = []
    private var stopped: Set<String> = []
    /// Workers this driver ended on purpose (any other exit is a crash).
    private var killed: Set<String> = []
    private var all: [(name: String, process: Process)] = []
    private var serial = 0
    private var idle: [Int32] = []
    private(set) var faults: [String: Int] = [:]
    private(set) var statusSeconds: [Double] = []
    private(set) var rssMaxMB = 0.0

    init(cluster: LocalCluster) {
        self.cluster = cluster
    }

    mutating func startWorker() throws {
        serial += 1
        let name = "soak-\(serial)"
        let process = try cluster.launch("ps-worker", ["--server", cluster.address, "--name", name], log: name)
        workers.append((name, process))
        all.append((name, process))
    }

    mutating func injectFault(_ random: inout SeededGenerator) throws {
        let fault = ["kill", "stop", "restart", "garbage", "half-frame", "idle-burst", "none"].randomElement(using: &random)!
        faults[fault, default: 0] += 1
        switch fault {
        case "kill":
            guard workers.count > 1, let i = workers.indices.randomElement(using: &random) else { break }
            let (name, process) = workers.remove(at: i)
            killed.insert(name)
            stopped.remove(name)
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            try startWorker()
        case "stop":
            // Stopped for a while: sometimes back before its heartbeat deadline (2 s), sometimes after it.
            guard let victim = workers.filter({ !stopped.contains($0.name) }).randomElement(using: &random) else { break }
            kill(victim.process.processIdentifier, SIGSTOP)
            stopped.insert(victim.name)
            let hold = Double.random(in: 0.3...3.5, using: &random)
            Thread.sleep(forTimeInterval: hold)
            kill(victim.process.processIdentifier, SIGCONT)
            stopped.remove(victim.name)
        case "restart":
            guard let i = workers.indices.randomElement(using: &random) else { break }
            let (name, process) = workers.remove(at: i)
            killed.insert(name)
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            if process.terminationStatus != 0 || process.terminationReason != .exit {
                XCTFail("\(name) did not stop cleanly on SIGTERM (status \(process.terminationStatus)): \(cluster.log(name).suffix(500))")
            }
            try startWorker()
        case "garbage":
            let peer = try RawPeer(address: cluster.address)
            let count = Int.random(in: 1...4096, using: &random)
            peer.write((0..<count).map { _ in UInt8.random(in: 0...255, using: &random) })
            peer.close()
        case "half-frame":
            // A length prefix of up to 60 MB and part of its body, sometimes after a valid hello, held
            // open a moment; a send timeout keeps the driver from blocking if the server stops reading.
            let peer = try RawPeer(address: cluster.address)
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(peer.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            if Bool.random(using: &random) { try peer.send(.hello(Hello(role: .client, name: "half-frame"))) }
            let length = Int.random(in: 1 << 20...60_000_000, using: &random)
            let sent = Int.random(in: 0...min(length - 1, 8 << 20), using: &random)
            peer.write(withUnsafeBytes(of: UInt32(length).bigEndian) { Array($0) } + [UInt8](repeating: 0x5a, count: sent))
            Thread.sleep(forTimeInterval: Double.random(in: 0...1, using: &random))
            peer.close()
        case "idle-burst":
            closeIdle()
            for _ in 0..<Int.random(in: 50...1200, using: &random) {
                guard let fd = try? RawPeer(address: cluster.address).detach() else { break }
                idle.append(fd)
            }
        default:
            break
        }
        if fault != "idle-burst", !idle.isEmpty, Bool.random(using: &random) { closeIdle() }
    }

    mutating func closeIdle() {
        for fd in idle { close(fd) }
        idle = []
    }

    /// Times one `psctl status`, samples the server's memory, and counts the jobs of `jobs` that have not ended.
    mutating func observe(_ jobs: [String], serverPid: Int32) throws -> Int {
        let started = Date()
        let out = try cluster.psctl(["status", "--json"])
        statusSeconds.append(Date().timeIntervalSince(started))
        rssMaxMB = max(rssMaxMB, residentMB(serverPid))
        guard out.status == 0 else {
            XCTFail("psctl status failed during the soak: \(out.stderr)")
            return jobs.count
        }
        let ended = (try Binaries.json(out)["jobs"] as? [[String: Any]] ?? [])
            .filter { jobs.contains($0["job_id"] as? String ?? "") }
            .filter { ["completed", "failed", "cancelled"].contains($0["state"] as? String ?? "") }
        return jobs.count - ended.count
    }

    /// Ends the faults: stopped workers resume, idle connections close, and at least two workers run.
    mutating func settle() throws {
        closeIdle()
        for (_, process) in workers { kill(process.processIdentifier, SIGCONT) }
        stopped = []
        while workers.count < 2 { try startWorker() }
    }

    /// Stops every worker this driver started (the end of the test; failed or not).
    mutating func stopWorkers() {
        closeIdle()
        for (name, process) in all where process.isRunning {
            killed.insert(name)
            kill(process.processIdentifier, SIGCONT)
            process.terminate()
            process.waitUntilExit()
        }
        workers = []
    }

    /// Workers that ended without the driver ending them, with how.
    func crashes() -> [(String, String)] {
        all.compactMap { name, process in
            guard !process.isRunning, !killed.contains(name) else { return nil }
            return (name, "\(process.terminationReason == .uncaughtSignal ? "signal" : "exit") \(process.terminationStatus): "
                    + cluster.log(name).suffix(500))
        }
    }
}

/// Runs `psctl status` every 0.2 s on a thread of its own and samples the server's resident memory.
final class StatusPoller: @unchecked Sendable {
    private let cluster: LocalCluster
    private let serverPid: Int32
    private let lock = NSLock()
    private var running = true
    private var seconds: [Double] = []
    private var rssMaxMB = 0.0
    private var failures: [String] = []
    private let done = DispatchSemaphore(value: 0)

    init(cluster: LocalCluster, serverPid: Int32) {
        self.cluster = cluster
        self.serverPid = serverPid
    }

    func start() {
        Thread.detachNewThread { [self] in
            while lock.withLock({ running }) {
                let started = Date()
                let out = try? cluster.psctl(["status"])
                let took = Date().timeIntervalSince(started)
                let rss = residentMB(serverPid)
                lock.withLock {
                    seconds.append(took)
                    rssMaxMB = max(rssMaxMB, rss)
                    if out?.status != 0 { failures.append(out?.stderr ?? "psctl did not run") }
                }
                Thread.sleep(forTimeInterval: 0.2)
            }
            done.signal()
        }
    }

    /// Stops polling; the latencies, the largest resident memory seen, and the failed calls.
    func stop() -> ([Double], Double, [String]) {
        lock.withLock { running = false }
        done.wait()
        return lock.withLock { (seconds, rssMaxMB, failures) }
    }
}

extension RawPeer {
    /// Keeps the socket open after this object goes away; the caller closes it.
    func detach() -> Int32 { dup(fd) }
}

/// The resident memory of process `pid` in MB (VmRSS), or 0 if it cannot be read.
func residentMB(_ pid: Int32) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kb = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return 0 }
    return kb / 1024
}

/// Lets one test process hold a few thousand sockets (the soft limit is often 1,024).
func raiseOpenFileLimit() {
    var limit = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = min(limit.rlim_max, 65_536)
    setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
}
