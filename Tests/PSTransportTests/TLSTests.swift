import Foundation
import NIOCore
import PSTestSupport
@testable import PSTransport
import PSWire
import XCTest

/// TLS between a real TransportServer and real clients over 127.0.0.1, with certificates made by
/// deploy/tls/make-certs.sh: what gets through, what each end says when a handshake is refused, and that a
/// refusal closes only that connection.
final class TLSTests: XCTestCase {
    private var certs: CertificateSet!
    private var other: CertificateSet!

    override func setUpWithError() throws {
        certs = try TestCertificates.main()
        other = try TestCertificates.other()
    }

    /// The server's TLS from `set` (default: the main CA's server certificate); `mutual`: clients need a certificate.
    private func serverTLS(_ set: CertificateSet? = nil, mutual: Bool) throws -> ServerTLS {
        let set = set ?? certs!
        return try XCTUnwrap(ServerTLS(TLSFiles(certificate: set.certificate("server"), key: set.key("server"),
                                                ca: mutual ? certs.ca : nil)))
    }

    /// A client's TLS trusting the main CA, presenting `name`'s certificate from `set` (default: main) if given,
    /// with its files checked at `now` (default: now).
    private func clientTLS(_ name: String?, from set: CertificateSet? = nil, serverName: String? = nil,
                           now: Int = Int(time(nil))) throws -> ClientTLS {
        let set = set ?? certs!
        return try XCTUnwrap(ClientTLS(TLSFiles(certificate: name.map(set.certificate), key: name.map(set.key),
                                                ca: certs.ca, serverName: serverName), now: now))
    }

    /// Asserts that connecting with `tls` fails the TLS handshake for `reason`, saying `text`, within a few seconds.
    private func assertHandshakeFails(_ address: String, tls: ClientTLS?, _ reason: TLSHandshakeFailure.Reason,
                                      says text: String, line: UInt = #line) {
        let start = ContinuousClock.now
        XCTAssertThrowsError(try BlockingClient(address: address, name: "t", tls: tls), line: line) { error in
            guard case let .tlsHandshake(reported, failure)? = error as? ClientError else {
                return XCTFail("expected .tlsHandshake, got \(error)", line: line)
            }
            XCTAssertEqual(reported, address, line: line)
            XCTAssertEqual(failure.reason, reason, "\(failure)", line: line)
            XCTAssertTrue("\(error)".hasPrefix("TLS handshake with \(address) failed: "), "\(error)", line: line)
            XCTAssertTrue("\(error)".contains(text), "\(error)", line: line)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(TransportLimits.tlsHandshakeSeconds + 1), line: line)
    }

    // Proves a request and a 1 MB message cross a TLS connection intact, the server sees the same events as
    // over plaintext, and a client dialling the server's DNS name (localhost) checks it against the DNS SAN.
    func testRoundTripOverTLS() throws {
        let echo = try EchoServer(tls: try serverTLS(mutual: false))
        defer { echo.server.shutdown() }
        let client = try BlockingClient(address: echo.address, name: "t", tls: try clientTLS(nil))
        XCTAssertEqual(client.serverHello.serverName, "echo")
        let weights = Message.weights(Weights(jobId: "job-1", version: 7,
                                              tensor: TensorSlice(offset: 0, values: (0..<250_000).map { Float($0) })))
        XCTAssertEqual(try client.request(weights), weights)
        client.close()
        let byName = try BlockingClient(address: "localhost:\(echo.port)", name: "t", tls: try clientTLS(nil))
        XCTAssertEqual(try byName.request(.ack), .ack)
        byName.close()
        XCTAssertTrue(eventually { echo.events.items.filter { if case .disconnected = $0 { true } else { false } }.count == 2 })
        XCTAssertEqual(echo.tlsRejections, [])
        XCTAssertEqual(echo.connectionCount, 2)
    }

    // Proves mutual TLS lets in a client (BlockingClient) and a worker (ReconnectingConnection) whose
    // certificates the CA signed.
    func testMutualTLS() throws {
        let echo = try EchoServer(tls: try serverTLS(mutual: true))
        defer { echo.server.shutdown() }
        let client = try BlockingClient(address: echo.address, name: "t", tls: try clientTLS("psctl"))
        defer { client.close() }
        XCTAssertEqual(try client.request(.cancelJob(jobId: "job-1")), .cancelJob(jobId: "job-1"))
        let events = Recorder<ReconnectingConnection.Event>()
        let worker = ReconnectingConnection(address: echo.address, hello: Hello(role: .worker, name: "w"),
                                            tls: try clientTLS("worker"), logger: testLogger) { events.append($0) }
        defer { worker.stop() }
        worker.start()
        XCTAssertTrue(eventually { events.items.contains { if case .connected = $0 { true } else { false } } })
        XCTAssertTrue(worker.send(.ack, requestId: 3))
        XCTAssertTrue(eventually { events.items.contains { if case let .received(e) = $0 { e.requestId == 3 } else { false } } })
        XCTAssertEqual(echo.tlsRejections, [])
    }

    // Proves the token's handshake works inside a TLS session: a client with the certificate and the token gets
    // in, one with the certificate and another token is refused by the token's handshake, not by TLS.
    func testTokenHandshakeInsideTLS() throws {
        let token = AuthToken(bytes: Array("correct horse battery staple".utf8))
        let echo = try EchoServer(tls: try serverTLS(mutual: true), authToken: token)
        defer { echo.server.shutdown() }
        let client = try BlockingClient(address: echo.address, name: "t", authToken: token, tls: try clientTLS("psctl"))
        defer { client.close() }
        XCTAssertEqual(try client.request(.ack), .ack)
        XCTAssertThrowsError(try BlockingClient(address: echo.address, name: "t",
                                                authToken: AuthToken(bytes: Array("another token of the same length".utf8)),
                                                tls: try clientTLS("psctl"))) { error in
            guard case .unauthenticated? = error as? ClientError else { return XCTFail("expected .unauthenticated, got \(error)") }
        }
        XCTAssertEqual(echo.tlsRejections, [])
    }

    // Proves a client certificate signed by another CA is refused: the server counts unknown_ca and the
    // client hears that the server refused its certificate.
    func testClientCertificateOfAnotherCAIsRefused() throws {
        let echo = try EchoServer(tls: try serverTLS(mutual: true))
        defer { echo.server.shutdown() }
        assertHandshakeFails(echo.address, tls: try clientTLS("psctl", from: other), .refusedByPeer,
                             says: "the server refused our certificate (alert: unknown ca)")
        XCTAssertTrue(eventually { echo.tlsRejections == [.unknownCA] }, "\(echo.tlsRejections)")
    }

    // Proves a client without a certificate is refused when the server requires one, and is told to give one.
    func testClientWithoutCertificateIsRefused() throws {
        let echo = try EchoServer(tls: try serverTLS(mutual: true))
        defer { echo.server.shutdown() }
        assertHandshakeFails(echo.address, tls: try clientTLS(nil), .refusedByPeer,
                             says: "requires a client certificate (alert: certificate required): give --tls-cert and --tls-key")
        XCTAssertTrue(eventually { echo.tlsRejections == [.noCertificate] }, "\(echo.tlsRejections)")
    }

    // Proves an expired client certificate (signed by the right CA) is refused, and the server says it expired.
    // (The client's own check at start would refuse it first: its files are checked as of a day and a half ago.)
    func testExpiredClientCertificateIsRefused() throws {
        let echo = try EchoServer(tls: try serverTLS(mutual: true))
        defer { echo.server.shutdown() }
        let tls = try clientTLS("expired", now: Int(time(nil)) - 36 * 3600)
        assertHandshakeFails(echo.address, tls: tls, .refusedByPeer, says: "alert: certificate expired")
        XCTAssertTrue(eventually { echo.tlsRejections == [.expiredCertificate] }, "\(echo.tlsRejections)")
    }

    // Proves a plaintext client is refused by a TLS server at once (no hang), the refusal is reported as not_tls,
    // and the server goes on serving a good client.
    func testPlaintextClientIsRefusedAndTheServerServesOn() throws {
        let echo = try EchoServer(tls: try serverTLS(mutual: true))
        defer { echo.server.shutdown() }
        let start = ContinuousClock.now
        XCTAssertThrowsError(try BlockingClient(address: echo.address, name: "plain")) { error in
            XCTAssertTrue("\(error)".contains("TLS"), "the plaintext client's error should mention TLS: \(error)")
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(TransportLimits.tlsHandshakeSeconds))
        XCTAssertTrue(eventually { echo.tlsRejections == [.notTLS] }, "\(echo.tlsRejections)")
        let good = try BlockingClient(address: echo.address, name: "good", tls: try clientTLS("psctl"))
        defer { good.close() }
        XCTAssertEqual(try good.request(.ack), .ack)
    }

    // Proves a TLS client against a plaintext server fails at once, saying the server does not speak TLS, and
    // the server rejects the client's hello as a TLS record, not an oversized frame.
    func testTLSClientAgainstAPlaintextServer() throws {
        let echo = try EchoServer()
        defer { echo.server.shutdown() }
        assertHandshakeFails(echo.address, tls: try clientTLS("psctl"), .notTLS, says: "the server does not speak TLS")
        XCTAssertTrue(eventually { echo.rejections.count == 1 })
        XCTAssertEqual(echo.rejections.first?.message,
                       "a TLS record, not a frame: the peer uses TLS and this end does not (see --tls-cert, --tls-ca)")
    }

    // Proves a client refuses a server whose certificate another CA signed, or that names neither the host
    // dialled nor --tls-server-name; the server counts the client's refusal. With --tls-server-name naming the
    // certificate's DNS name, the same server is accepted.
    func testClientRefusesAServerItCannotVerify() throws {
        let stranger = try EchoServer(tls: try serverTLS(other, mutual: false))
        defer { stranger.server.shutdown() }
        assertHandshakeFails(stranger.address, tls: try clientTLS(nil), .unknownCA,
                             says: "certificate verify failed (unknown CA")
        XCTAssertTrue(eventually { stranger.tlsRejections == [.refusedByPeer] }, "\(stranger.tlsRejections)")
        let elsewhere = try EchoServer(tls: try serverTLS(try TestCertificates.elsewhere(), mutual: false))
        defer { elsewhere.server.shutdown() }
        assertHandshakeFails(elsewhere.address, tls: try clientTLS(nil), .wrongHost, says: "does not name the host")
        assertHandshakeFails("localhost:\(elsewhere.port)", tls: try clientTLS(nil), .wrongHost, says: "does not name the host")
        let named = try BlockingClient(address: elsewhere.address, name: "t",
                                       tls: try clientTLS(nil, serverName: "elsewhere.example"))
        defer { named.close() }
        XCTAssertEqual(try named.request(.ack), .ack)
    }

    // Proves a peer that connects and never starts a handshake is closed after tlsHandshakeSeconds and counted.
    func testSilentPeerIsClosedAfterTheHandshakeLimit() throws {
        let echo = try EchoServer(tls: try serverTLS(mutual: true))
        defer { echo.server.shutdown() }
        let silent = try RawPeer(address: echo.address)
        XCTAssertTrue(silent.closedByServer(within: TransportLimits.tlsHandshakeSeconds + 2))
        XCTAssertEqual(echo.tlsRejections, [.timeout])
    }

    // Proves a worker whose certificate is refused keeps retrying (each attempt refused and counted) and
    // never reports a connection.
    func testRefusedWorkerRetries() throws {
        let echo = try EchoServer(tls: try serverTLS(mutual: true))
        defer { echo.server.shutdown() }
        let events = Recorder<ReconnectingConnection.Event>()
        let worker = ReconnectingConnection(address: echo.address, hello: Hello(role: .worker, name: "w"),
                                            backoff: Backoff(initialSeconds: 0.02, maxSeconds: 0.1), tls: try clientTLS(nil),
                                            logger: testLogger) { events.append($0) }
        defer { worker.stop() }
        worker.start()
        XCTAssertTrue(eventually { echo.tlsRejections.count >= 3 }, "\(echo.tlsRejections)")
        XCTAssertEqual(Set(echo.tlsRejections), [.noCertificate])
        XCTAssertTrue(events.items.isEmpty, "\(events.items)")
    }
}

/// What a process is told at start about its TLS files: each problem names the option and the file.
final class TLSSetupTests: XCTestCase {
    private var certs: CertificateSet!
    private var scratch: String!

    override func setUpWithError() throws {
        certs = try TestCertificates.main()
        scratch = NSTemporaryDirectory() + "ps-tls-setup-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    private func assertServerRefuses(_ files: TLSFiles, now: Int = Int(time(nil)), _ expected: String, line: UInt = #line) {
        XCTAssertThrowsError(try ServerTLS(files, now: now), line: line) { error in
            XCTAssertEqual("\(error)", expected, line: line)
        }
    }

    /// The notAfter of a certificate as openssl prints it, in our format (2027-12-05T11:15:24Z).
    private func notAfter(_ path: String) throws -> String {
        let out = try run("/usr/bin/openssl", ["x509", "-in", path, "-noout", "-enddate", "-dateopt", "iso_8601"])
        // "notAfter=2027-12-05 11:15:24Z"
        return out.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst("notAfter=".count)
            .replacingOccurrences(of: " ", with: "T")
    }

    private func run(_ path: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return text
    }

    // Proves no TLS option means plaintext, and a file not given on the command line comes from PS_TLS_*.
    func testNoOptionsIsPlaintextAndTheEnvironmentFillsIn() throws {
        XCTAssertNil(try ServerTLS(TLSFiles()))
        XCTAssertNil(try ClientTLS(TLSFiles()))
        let files = TLSFiles(certificate: "/given.pem", key: nil, ca: nil,
                             environment: ["PS_TLS_CERT": "/env.pem", "PS_TLS_KEY": "/env-key.pem", "PS_TLS_CA": "/ca.pem"])
        XCTAssertEqual(files, TLSFiles(certificate: "/given.pem", key: "/env-key.pem", ca: "/ca.pem"))
    }

    // Proves a missing, unreadable or non-PEM file is refused naming the option, the file and the reason.
    func testUnreadableAndNonPEMFilesAreRefused() throws {
        let key = certs.key("server")
        assertServerRefuses(TLSFiles(certificate: "/nonexistent/server.pem", key: key),
                            "--tls-cert /nonexistent/server.pem: cannot read: no such file or directory")
        assertServerRefuses(TLSFiles(certificate: scratch, key: key), "--tls-cert \(scratch!): cannot read: is a directory")
        let text = scratch + "/notes.txt"
        try "not a certificate\n".write(toFile: text, atomically: true, encoding: .utf8)
        assertServerRefuses(TLSFiles(certificate: text, key: key),
                            "--tls-cert \(text): not a PEM certificate (no valid BEGIN CERTIFICATE block)")
        assertServerRefuses(TLSFiles(certificate: certs.certificate("server"), key: text), "--tls-key \(text): not a PEM private key")
        // A certificate given as the key is not a key either.
        assertServerRefuses(TLSFiles(certificate: certs.certificate("server"), key: certs.ca),
                            "--tls-key \(certs.ca): not a PEM private key")
        assertServerRefuses(TLSFiles(certificate: certs.certificate("server"), key: key, ca: text),
                            "--tls-ca \(text): not a PEM certificate (no valid BEGIN CERTIFICATE block)")
    }

    // Proves a key that belongs to another certificate is refused, naming both files.
    func testKeyOfAnotherCertificateIsRefused() {
        assertServerRefuses(TLSFiles(certificate: certs.certificate("server"), key: certs.key("worker")),
                            "--tls-key \(certs.key("worker")): the key does not match the certificate in \(certs.certificate("server"))")
        XCTAssertThrowsError(try ClientTLS(TLSFiles(certificate: certs.certificate("psctl"), key: certs.key("worker"),
                                                    ca: certs.ca))) { error in
            XCTAssertTrue("\(error)".hasPrefix("--tls-key \(certs.key("worker")): the key does not match"), "\(error)")
        }
    }

    // Proves a process refuses to start with an expired certificate of its own, naming the file and its notAfter.
    func testExpiredOwnCertificateIsRefused() throws {
        let expired = certs.certificate("expired")
        assertServerRefuses(TLSFiles(certificate: expired, key: certs.key("expired")),
                            "--tls-cert \(expired): the certificate expired at \(try notAfter(expired)) (notAfter); renew it")
        // A valid certificate, seen from after its end.
        let server = certs.certificate("server")
        assertServerRefuses(TLSFiles(certificate: server, key: certs.key("server")), now: Int(time(nil)) + 10 * 366 * 86400,
                            "--tls-cert \(server): the certificate expired at \(try notAfter(server)) (notAfter); renew it")
        XCTAssertThrowsError(try ClientTLS(TLSFiles(certificate: expired, key: certs.key("expired"), ca: certs.ca))) { error in
            XCTAssertTrue("\(error)".contains("the certificate expired at"), "\(error)")
        }
    }

    // Proves options that do not make a whole setting are refused by name.
    func testIncompleteOptionsAreRefused() {
        assertServerRefuses(TLSFiles(ca: certs.ca),
                            "--tls-cert: missing: a TLS server needs --tls-cert and --tls-key (--tls-ca adds mutual TLS)")
        assertServerRefuses(TLSFiles(certificate: certs.certificate("server")),
                            "--tls-key: missing: a TLS server needs --tls-cert and --tls-key (--tls-ca adds mutual TLS)")
        assertServerRefuses(TLSFiles(certificate: certs.certificate("server"), key: certs.key("server"), serverName: "x"),
                            "--tls-server-name: is a client option (psctl, ps-worker)")
        XCTAssertThrowsError(try ClientTLS(TLSFiles(key: certs.key("psctl"), ca: certs.ca))) { error in
            XCTAssertEqual("\(error)", "--tls-cert: missing: --tls-key needs the certificate it belongs to")
        }
        XCTAssertThrowsError(try ClientTLS(TLSFiles(ca: certs.ca, serverName: "10.0.0.1"))) { error in
            XCTAssertEqual("\(error)",
                           "--tls-server-name 10.0.0.1: must be a DNS name (an IP address is checked against the address dialled)")
        }
    }
}
