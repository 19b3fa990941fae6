import Foundation
import XCTest

/// Locates and runs the project's executables from the same build folder as this test bundle.
enum Binaries {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    /// The build folder holding the test bundle (and, after `swift build`, the executables).
    static var buildDirectory: String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = bundle.deletingLastPathComponent()
        // On Linux the xctest bundle is a plain executable in the build folder.
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        return dir.path
    }

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `name` with `arguments` from the repository root and waits for it.
    static func run(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Output {
        let path = buildDirectory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            XCTFail("\(name) is not built at \(path); run `swift build` with the same configuration first")
            throw CocoaError(.fileNoSuchFile)
        }
        return try runSystem(path, arguments, environment: environment)
    }

    /// Runs any executable (by absolute path) from the repository root and waits for it.
    static func runSystem(_ path: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // Output goes to files, so a chatty child can never block on a full pipe.
        let base = NSTemporaryDirectory() + "ps-run-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: base + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        process.standardOutput = FileHandle(forWritingAtPath: base + ".out")
        process.standardError = FileHandle(forWritingAtPath: base + ".err")
        try process.run()
        process.waitUntilExit()
        let out = FileManager.default.contents(atPath: base + ".out") ?? Data()
        let err = FileManager.default.contents(atPath: base + ".err") ?? Data()
        return Output(status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
                      stderr: String(decoding: err, as: UTF8.self))
    }

    /// What `spawn` measured of a child besides its output.
    struct Measured {
        var output: Output
        /// Wall-clock seconds from spawn to exit.
        var seconds: Double
        /// The child's peak resident set (its VmHWM, read every 10 ms while it runs), in bytes: a lower
        /// bound that misses at most the last 10 ms. Not wait4's ru_maxrss: Linux raises that to the
        /// spawning process's own peak at exec (posix_spawn's child shares this process's memory until
        /// then), so after a test that loaded MNIST it would measure the test process.
        var peakRSSBytes: Int
    }

    /// Runs `argv` (argv[0] an absolute path) and waits for that child alone, killing it after
    /// `secondsMax` (status 124, "killed after …"). Not with Foundation's `Process`: its child inherits
    /// a descriptor Foundation watches for the child's end, and a daemon the command starts in the
    /// background would keep it open, so the wait would last as long as the daemon. Here the child gets
    /// only its standard descriptors: every other descriptor of this process is marked close-on-exec
    /// first. It also samples the child's peak memory, which `Process` cannot.
    static func spawn(_ argv: [String], environment: [String: String] = [:], secondsMax: Double) throws -> Measured {
        let base = NSTemporaryDirectory() + "ps-spawn-\(UUID().uuidString)"
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, base + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, base + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let fd = Int32(entry), fd > 2 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        var cArgv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer { (cArgv + cEnv).forEach { free($0) } }
        var pid = pid_t()
        let started = Date()
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, &cArgv, &cEnv)
        guard spawned == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .EIO) }
        var status: Int32 = 0
        let deadline = started.addingTimeInterval(secondsMax)
        var killed = false
        var peak = 0
        while true {
            peak = max(peak, peakRSS(pid))
            if waitpid(pid, &status, WNOHANG) != 0 { break }
            if Date() > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                killed = true
                break
            }
            usleep(10_000)
        }
        let seconds = Date().timeIntervalSince(started)
        if killed {
            return Measured(output: Output(status: 124, stdout: "", stderr: "killed after \(secondsMax) s"),
                            seconds: seconds, peakRSSBytes: peak)
        }
        let exited = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let out = FileManager.default.contents(atPath: base + ".out") ?? Data()
        let err = FileManager.default.contents(atPath: base + ".err") ?? Data()
        return Measured(output: Output(status: exited, stdout: String(decoding: out, as: UTF8.self),
                                       stderr: String(decoding: err, as: UTF8.self)),
                        seconds: seconds, peakRSSBytes: peak)
    }

    /// A running process's peak resident set so far (VmHWM in /proc/PID/status), in bytes; 0 once it has exited.
    static func peakRSS(_ pid: pid_t) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
        return kib << 10
    }

    /// What `ps-bench signature` reports: the compute signature and kernel choice our binaries make on
    /// this machine with `environment` (which may differ from this test process's own: the test bundle
    /// does not run the start-up kernel choice).
    static func signature(environment: [String: String] = [:]) throws -> [String: Any] {
        let out = try run("ps-bench", ["signature"], environment: environment)
        XCTAssertEqual(out.status, 0, out.stderr)
        return try json(out)
    }

    /// Parses the last line of stdout as a JSON object.
    static func json(_ output: Output) throws -> [String: Any] {
        let line = output.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw CocoaError(.coderReadCorrupt)
        }
        return object
    }
}
