import Foundation
import PSTransport
import PSWire
import XCTest

/// Shared-secret authentication with the real binaries: every refusal a running server gives (no token,
/// another token, a replayed handshake, a token on one side only) is named to the peer, counted in the
/// metrics, and leaves the server serving everyone else; the token never appears in logs, status or
/// process arguments; a server will not listen beyond loopback without a token or TLS.
final class AuthEndToEndTests: XCTestCase {
    var directory = ""
    var tokenFile: String { directory + "/token" }
    var otherTokenFile: String { directory + "/other" }
    static let secret = "a5a5-the-cluster-secret-0123456789"

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "ps-auth-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try (Self.secret + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        try "another-secret-of-some-length-42\n".write(toFile: otherTokenFile, atomically: true, encoding: .utf8)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testRefusalsAreNamedCountedAndHarmless() throws {
        let spec = "examples/mnist-small-sgd.yaml"
        let overrides = ["training.epochs=1"]
        let local = try Reference.localSHA(spec, overrides)
        let cluster = try LocalCluster(extraServerArguments: ["--auth-token-file", tokenFile, "--metrics-listen", "127.0.0.1:0"])
        defer { cluster.stop() }
        cluster.clientEnvironment = ["PS_AUTH_TOKEN_FILE": tokenFile]
        try cluster.startWorker("w1", extraArguments: ["--auth-token-file", tokenFile])

        // No token: refused by the server, which says what to pass.
        let none = try cluster.psctl(["status"], environment: ["PS_AUTH_TOKEN_FILE": ""])
        XCTAssertEqual(none.status, 1)
        XCTAssertTrue(none.stderr.contains("requires the cluster's token") && none.stderr.contains("--auth-token-file"), none.stderr)
        // Another token: the client does not trust the server's proof and gives up.
        let wrong = try cluster.psctl(["status", "--auth-token-file", otherTokenFile])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("could not prove it holds the cluster's token"), wrong.stderr)
        // A worker with another token never joins.
        let stranger = try cluster.launch("ps-worker", ["--server", cluster.address, "--name", "stranger",
                                                        "--auth-token-file", otherTokenFile], log: "stranger")
        defer { stranger.terminate(); stranger.waitUntilExit() }
        try cluster.waitUntil("the stranger is refused") { cluster.log("stranger").contains("could not prove") }
        // A replayed handshake: a complete exchange computed with the real token, then sent again on a
        // new connection; the server's fresh nonce makes the recorded proof worthless.
        let token = AuthToken(bytes: Array(Self.secret.utf8))
        let hello = Hello(role: .client, name: "replayer", nonce: Array(repeating: 3, count: 32))
        let first = try RawPeer(address: cluster.address)
        try first.send(.hello(hello))
        guard case let .authChallenge(challenge)? = first.read()?.message else { return XCTFail("no challenge") }
        let proof = AuthProof.proof(.client, token: token, hello: hello, serverNonce: challenge.serverNonce)
        try first.send(.authResponse(clientProof: proof), requestId: 1)
        guard case .helloOk? = first.read()?.message else { return XCTFail("the genuine exchange is accepted") }
        first.close()
        let replay = try RawPeer(address: cluster.address)
        try replay.send(.hello(hello))
        guard case .authChallenge? = replay.read()?.message else { return XCTFail("no challenge") }
        try replay.send(.authResponse(clientProof: proof), requestId: 1)
        guard case let .error(reply)? = replay.read()?.message else { return XCTFail("the replay was not refused") }
        XCTAssertEqual(reply.code, .unauthenticated)
        XCTAssertTrue(reply.message.contains("does not match"), reply.message)
        XCTAssertNil(replay.read(), "and the connection is closed")
        // Anything but a hello first.
        let rude = try RawPeer(address: cluster.address)
        try rude.send(.listJobs)
        guard case let .error(first2)? = rude.read()?.message else { return XCTFail() }
        XCTAssertEqual(first2.code, .unauthenticated)

        // Counted by reason; the server still serves the worker and a client with the token: the job's
        // weights are the local trainer's.
        let metrics = try String(contentsOf: URL(string: try cluster.metricsURL())!, encoding: .utf8)
        for (reason, least) in [("missing", 1), ("abandoned", 2), ("mismatch", 1), ("protocol", 1)] {
            let line = metrics.split(separator: "\n").first { $0.hasPrefix("ps_auth_failures_total{reason=\"\(reason)\"}") }
            XCTAssertGreaterThanOrEqual(Int(Double(line?.split(separator: " ").last ?? "0") ?? 0), least, "\(reason):\n\(metrics)")
        }
        let out = try cluster.psctl(["submit", spec, "--wait", "--json"] + overrides.flatMap { ["--set", $0] })
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertEqual(try Binaries.json(out)["weights_sha256"] as? String, local)

        // The secret is nowhere: not in any log, not in status, not in the metrics, not in any argument.
        let status = try cluster.psctl(["status", "--json"]).stdout
        for text in [cluster.log(cluster.serverLog), cluster.log("w1"), cluster.log("stranger"), status, metrics, none.stderr, wrong.stderr] {
            XCTAssertFalse(text.contains(Self.secret), "the token leaked")
        }
        let arguments = (try? String(contentsOfFile: "/proc/\(cluster.server.processIdentifier)/cmdline", encoding: .utf8)) ?? ""
        XCTAssertFalse(arguments.contains(Self.secret))
        XCTAssertTrue(cluster.log(cluster.serverLog).contains("authentication failed"), "a log line with the peer")
        XCTAssertTrue(cluster.log(cluster.serverLog).contains("peer=127.0.0.1:"), "names the peer")
    }

    // A token on the client only: a server without one cannot prove anything, so the client refuses it.
    func testAClientWithATokenRefusesAServerWithout() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        let out = try cluster.psctl(["status", "--auth-token-file", tokenFile])
        XCTAssertEqual(out.status, 1)
        XCTAssertTrue(out.stderr.contains("did not authenticate itself"), out.stderr)
        XCTAssertEqual(try cluster.psctl(["status"]).status, 0, "without a token it talks to it")
    }

    // Secure by default: no non-loopback listen address without a token or TLS, unless --insecure; the
    // refusal says why and what to do. A token file that is too short is refused naming the file only.
    func testServerRefusesAnOpenListenAddressWithoutProtection() throws {
        let data = directory + "/data"
        let open = try Binaries.run("ps-server", ["--listen", "0.0.0.0:0", "--data-dir", data])
        XCTAssertEqual(open.status, 1)
        XCTAssertTrue(open.stderr.contains("refusing to listen on 0.0.0.0:0 with neither a token nor TLS")
            && open.stderr.contains("--auth-token-file") && open.stderr.contains("--insecure"), open.stderr)
        try "short\n".write(toFile: directory + "/short", atomically: true, encoding: .utf8)
        let short = try Binaries.run("ps-server", ["--listen", "0.0.0.0:0", "--data-dir", data, "--auth-token-file", directory + "/short"])
        XCTAssertEqual(short.status, 1)
        XCTAssertTrue(short.stderr.contains("\(directory)/short") && short.stderr.contains("at least 16"), short.stderr)
        XCTAssertFalse(short.stderr.contains("short\n"))
        for flags in [["--insecure"], ["--auth-token-file", tokenFile]] {
            let server = Process()
            server.executableURL = URL(fileURLWithPath: Binaries.buildDirectory + "/ps-server")
            server.arguments = ["--listen", "0.0.0.0:0", "--data-dir", data + "-\(flags.count)"] + flags
            let log = Pipe()
            server.standardError = log
            server.standardOutput = FileHandle.nullDevice
            try server.run()
            defer { server.terminate(); server.waitUntilExit() }
            var text = ""
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline && !text.contains("[PSServer] listening") {
                text += String(decoding: log.fileHandleForReading.availableData, as: UTF8.self)
            }
            XCTAssertTrue(text.contains("[PSServer] listening"), "\(flags): \(text)")
            if flags == ["--insecure"] { XCTAssertTrue(text.contains("without authentication (--insecure)"), text) }
        }
    }
}
