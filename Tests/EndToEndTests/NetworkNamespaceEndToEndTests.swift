import Foundation
import PSTestSupport
import XCTest

/// A cluster across hosts built on this machine with network namespaces (`deploy/netns/hosts.sh`): a
/// server host, three worker hosts and a client host on a bridge, with the shared token and mutual TLS
/// on. The job's weights equal `train --local`'s; a worker whose link goes down mid-job is removed at its
/// heartbeat deadline, rejoins when the link comes back, and the bits stay; a client without the token is
/// refused. Links are shaped with netem where the kernel has it (the script says when it has not).
final class NetworkNamespaceEndToEndTests: XCTestCase {
    let prefix = "ps\(getpid() % 100_000)"
    let hosts = ["srv", "w1", "w2", "w3", "cli"]
    let server = "10.77.0.1:7070"
    var directory = ""
    var processes: [String: Process] = [:]

    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("network namespaces need root (CI runs as root)") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip") else {
            throw XCTSkip("iproute2 is not installed (scripts/install-deps.sh --test installs it)")
        }
        directory = NSTemporaryDirectory() + "ps-netns-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory + "/logs", withIntermediateDirectories: true)
        let up = try script(["up", prefix] + hosts)
        XCTAssertEqual(up.status, 0, up.stderr)
        if up.stderr.contains("no netem") { print("note: \(up.stderr.trimmingCharacters(in: .whitespacesAndNewlines))") }
    }

    override func tearDown() {
        for (_, p) in processes where p.isRunning {
            kill(p.processIdentifier, SIGCONT)
            p.terminate()
        }
        for (_, p) in processes { p.waitUntilExit() }
        _ = try? script(["down", prefix] + hosts)
        try? FileManager.default.removeItem(atPath: directory)
    }

    func script(_ arguments: [String]) throws -> Binaries.Output {
        try Binaries.runSystem(Binaries.repositoryRoot + "/deploy/netns/hosts.sh", arguments)
    }

    /// Starts `binary` inside host `host`'s namespace, logging to logs/NAME.log.
    @discardableResult
    func start(_ name: String, on host: String, _ binary: String, _ arguments: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", "\(prefix)-\(host)", Binaries.buildDirectory + "/" + binary] + arguments
        p.currentDirectoryURL = URL(fileURLWithPath: Binaries.repositoryRoot)
        let path = "\(directory)/logs/\(name).log"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = FileHandle(forWritingAtPath: path)!
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        processes[name] = p
        return p
    }

    func log(_ name: String) -> String {
        (try? String(contentsOfFile: "\(directory)/logs/\(name).log", encoding: .utf8)) ?? ""
    }

    /// psctl on the client host, with `environment`.
    func psctl(_ arguments: [String], environment: [String: String]) throws -> Binaries.Output {
        try Binaries.runSystem("/usr/sbin/ip", ["netns", "exec", "\(prefix)-cli", Binaries.buildDirectory + "/psctl"]
                               + arguments + ["--server", server], environment: environment)
    }

    func waitUntil(_ what: String, timeout: Double = 60, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("timed out waiting until \(what); server log:\n\(log("server").suffix(3000))")
        throw CocoaError(.fileReadUnknown)
    }

    func testAuthenticatedTLSClusterAcrossHostsKeepsTheBitsThroughALinkFailure() throws {
        let spec = "examples/mnist-small-sgd.yaml"
        let overrides = ["training.epochs=400", "training.chunks=6"]
        let local = try Reference.localSHA(spec, overrides)
        // Certificates for the server's address on the bridge, and the cluster's token.
        let certs = directory + "/certs"
        let made = try Binaries.runSystem(Binaries.repositoryRoot + "/deploy/tls/make-certs.sh", [certs, "10.77.0.1"])
        XCTAssertEqual(made.status, 0, made.stderr)
        let token = directory + "/token"
        try "netns-cluster-token-0123456789abcdef\n".write(toFile: token, atomically: true, encoding: .utf8)
        func tls(_ name: String) -> [String] {
            ["--tls-cert", "\(certs)/\(name).pem", "--tls-key", "\(certs)/\(name)-key.pem", "--tls-ca", "\(certs)/ca.pem"]
        }
        try start("server", on: "srv", "ps-server", ["--listen", server, "--data-dir", directory + "/data",
                                                     "--heartbeat-timeout", "3", "--auth-token-file", token] + tls("server"))
        try waitUntil("the server listens", timeout: 20) { log("server").contains("[PSServer] listening") }
        for w in ["w1", "w2", "w3"] {
            try start(w, on: w, "ps-worker", ["--server", server, "--name", w, "--auth-token-file", token] + tls("worker"))
        }
        try waitUntil("three workers join") { log("server").components(separatedBy: "] worker joined").count - 1 >= 3 }
        let client = ["PS_AUTH_TOKEN_FILE": token, "PS_TLS_CERT": "\(certs)/psctl.pem", "PS_TLS_KEY": "\(certs)/psctl-key.pem",
                      "PS_TLS_CA": "\(certs)/ca.pem"]

        // A client on its own host without the token is refused; the server serves on.
        var noToken = client
        noToken["PS_AUTH_TOKEN_FILE"] = ""
        let refused = try psctl(["status"], environment: noToken)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("requires the cluster's token"), refused.stderr)

        let submitted = try psctl(["submit", spec] + overrides.flatMap { ["--set", $0] }, environment: client)
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        let job = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try waitUntil("the job runs on w1") { log("w1").contains("data loaded") }

        // w1's link goes down mid-job: removed at its heartbeat deadline, its chunks go to the others.
        // Its link comes back: it reconnects and rejoins.
        XCTAssertEqual(try script(["link", prefix, "w1", "down"]).status, 0)
        try waitUntil("w1 misses its heartbeat deadline", timeout: 30) {
            log("server").split(separator: "\n").contains { $0.contains("name=w1") && $0.contains("missed its heartbeat deadline") }
        }
        XCTAssertEqual(try script(["link", prefix, "w1", "up"]).status, 0)
        try waitUntil("w1 rejoins", timeout: 30) {
            log("server").split(separator: "\n").filter { $0.contains("] worker joined") && $0.contains("name=w1") }.count >= 2
        }
        let result = try psctl(["wait", job, "--json"], environment: client)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(try Binaries.json(result)["weights_sha256"] as? String, local, "across hosts, through a lost link")
        XCTAssertTrue(log("server").contains("tls=mutual"), "the server ran mutual TLS")
    }
}
