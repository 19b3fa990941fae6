import Foundation
import PSTestSupport
import XCTest

/// TLS with the real binaries, and certificates made by deploy/tls/make-certs.sh as a user would make them.
final class TLSEndToEndTests: XCTestCase {
    // The small MNIST job (1 epoch) on 2 workers over mutual TLS ends with train --local's weights. Meanwhile
    // psctl without a certificate, with another CA's and in plaintext, and a worker without a certificate,
    // are refused with an error saying why (psctl at once, exit 1); the server logs each refusal with the peer
    // and the reason, and its /metrics, served over HTTPS (--metrics-tls), counts them.
    func testSmallJobOverMutualTLSMatchesLocal() throws {
        let overrides = ["training.epochs=1"]
        let local = try Reference.localSHA("examples/mnist-small-sgd.yaml", overrides)
        let certs = try TestCertificates.main(), other = try TestCertificates.other()
        let cluster = try LocalCluster(
            extraServerArguments: certs.arguments("server") + ["--metrics-listen", "127.0.0.1:0", "--metrics-tls"])
        defer { cluster.stop() }
        // The cluster's own psctl runs take their TLS files from the environment.
        cluster.clientEnvironment = ["PS_TLS_CERT": certs.certificate("psctl"), "PS_TLS_KEY": certs.key("psctl"),
                                     "PS_TLS_CA": certs.ca]
        XCTAssertTrue(cluster.log("server").contains("tls=mutual"), cluster.log("server"))
        try cluster.startWorker("w1", extraArguments: certs.arguments("worker"))
        try cluster.startWorker("w2", extraArguments: certs.arguments("worker"))

        let address = cluster.address
        let refusals: [([String], String)] = [
            (certs.arguments(nil), "TLS handshake with \(address) failed: the server requires a client certificate"),
            (["--tls-cert", other.certificate("psctl"), "--tls-key", other.key("psctl"), "--tls-ca", certs.ca],
             "TLS handshake with \(address) failed: the server refused our certificate (alert: unknown ca)"),
            ([], "TLS"),
        ]
        for (tls, text) in refusals {
            let start = Date()
            let out = try Binaries.run("psctl", ["status", "--server", address] + tls)
            XCTAssertEqual(out.status, 1, out.stderr)
            XCTAssertTrue(out.stderr.hasPrefix("psctl: error: "), out.stderr)
            XCTAssertTrue(out.stderr.contains(text), out.stderr)
            XCTAssertLessThan(Date().timeIntervalSince(start), 5, "refused at once: \(out.stderr)")
        }
        let refusedWorker = try cluster.launch("ps-worker", ["--server", address, "--name", "no-cert"] + certs.arguments(nil),
                                               log: "no-cert")
        try cluster.waitUntil("the worker without a certificate says why", timeout: 20) {
            cluster.log("no-cert").contains("TLS handshake with \(address) failed: the server requires a client certificate")
        }
        refusedWorker.terminate()
        refusedWorker.waitUntilExit()

        let out = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml", "--set", overrides[0], "--wait", "--json"])
        XCTAssertEqual(out.status, 0, "\(out.stderr)\n\(cluster.log("server").suffix(2000))")
        XCTAssertEqual(try Binaries.json(out)["weights_sha256"] as? String, local)
        // The TLS options are global options too, before the subcommand.
        let global = try Binaries.run("psctl", ["--server", address] + certs.arguments("psctl") + ["list"])
        XCTAssertEqual(global.status, 0, global.stderr)

        let log = cluster.log("server")
        for reason in ["no_certificate", "unknown_ca", "not_tls"] {
            XCTAssertNotNil(log.range(of: #"peer=127\.0\.0\.1:[0-9]+ problem=.* reason=\#(reason) \[PSTransport\] TLS handshake failed"#,
                                      options: .regularExpression), "\(reason) in:\n\(log.suffix(3000))")
        }
        let metrics = try scrapeOverTLS(cluster, certs)
        XCTAssertTrue(metrics.contains(#"ps_tls_handshake_failures_total{reason="unknown_ca"} 1"#), metrics)
        XCTAssertTrue(metrics.contains(#"ps_tls_handshake_failures_total{reason="not_tls"} 1"#), metrics)
        XCTAssertNotNil(metrics.range(of: #"ps_tls_handshake_failures_total\{reason="no_certificate"\} ([2-9]|[1-9][0-9]+)\n"#,
                                      options: .regularExpression), "psctl and the retrying worker: \(metrics)")
    }

    // ps-server refuses to start with an expired certificate, naming the file and its notAfter; psctl refuses
    // a TLS file it cannot read before it connects.
    func testExpiredOrMissingCertificateRefusesToStart() throws {
        let certs = try TestCertificates.main()
        let data = NSTemporaryDirectory() + "ps-tls-e2e-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let server = try Binaries.run("ps-server", ["--listen", "127.0.0.1:0", "--data-dir", data] + certs.arguments("expired"))
        XCTAssertEqual(server.status, 1, server.stderr)
        XCTAssertNotNil(server.stderr.range(of: "--tls-cert \(certs.certificate("expired")): the certificate expired at "
                                                + #"20[0-9-]+T[0-9:]+Z \(notAfter\)"#, options: .regularExpression), server.stderr)
        let psctl = try Binaries.run("psctl", ["status", "--server", "127.0.0.1:1", "--tls-ca", "/nonexistent/ca.pem"])
        XCTAssertEqual(psctl.status, 1, psctl.stderr)
        XCTAssertEqual(psctl.stderr, "psctl: error: --tls-ca /nonexistent/ca.pem: cannot read: no such file or directory\n")
    }

    // On a non-loopback address, mutual TLS protects the cluster as a token does (only holders of the CA's
    // certificates get in), so ps-server starts with it; TLS without --tls-ca only encrypts, and is refused.
    func testOpenListenAddressNeedsMutualTLS() throws {
        let certs = try TestCertificates.main()
        let data = NSTemporaryDirectory() + "ps-tls-e2e-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let encryptedOnly = try Binaries.run("ps-server", ["--listen", "0.0.0.0:0", "--data-dir", data]
                                             + certs.arguments("server", ca: false))
        XCTAssertEqual(encryptedOnly.status, 1, encryptedOnly.stderr)
        XCTAssertTrue(encryptedOnly.stderr.contains("refusing to listen on 0.0.0.0:0"), encryptedOnly.stderr)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Binaries.buildDirectory + "/ps-server")
        server.arguments = ["--listen", "0.0.0.0:0", "--data-dir", data] + certs.arguments("server")
        let log = Pipe()
        server.standardError = log
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && server.isRunning && !text.contains("[PSServer] listening") {
            text += String(decoding: log.fileHandleForReading.availableData, as: UTF8.self)
        }
        XCTAssertTrue(text.contains("tls=mutual [PSServer] listening"), text)
        XCTAssertFalse(text.contains("without authentication"), text)
    }

    /// The server's /metrics page, fetched over HTTPS with psctl's certificate (curl, as a scraper would).
    private func scrapeOverTLS(_ cluster: LocalCluster, _ certs: CertificateSet) throws -> String {
        var url = ""
        try cluster.waitUntil("the server serves metrics", timeout: 20) {
            let log = cluster.log("server")
            guard let range = log.range(of: #"url=https://127\.0\.0\.1:[0-9]+/metrics"#, options: .regularExpression) else {
                return false
            }
            url = String(log[range].dropFirst("url=".count))
            return true
        }
        let out = try Binaries.runSystem("/usr/bin/curl", ["--silent", "--show-error", "--max-time", "10", "--cacert", certs.ca,
                                                          "--cert", certs.certificate("psctl"), "--key", certs.key("psctl"), url])
        XCTAssertEqual(out.status, 0, out.stderr)
        return out.stdout
    }
}
