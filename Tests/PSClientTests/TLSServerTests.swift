import Foundation
import Logging
import Prometheus
import PSClient
import PSCore
import PSMetrics
import PSServer
import PSStorage
import PSTestSupport
import PSTransport
import PSWorker
import XCTest

/// The coordinator's runtime serving over mutual TLS in this process, with its Prometheus series, and
/// certificates made by deploy/tls/make-certs.sh.
final class TLSServerTests: XCTestCase {
    let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    // Proves a client from another CA, one without a certificate, one with an expired certificate and a
    // plaintext one are each refused with an error that says why, each refusal is counted under its reason in
    // ps_tls_handshake_failures_total, and the server meanwhile trains a job for a worker and a client that
    // have good certificates.
    func testRefusalsAreCountedWhileAJobRuns() throws {
        let certs = try TestCertificates.main(), other = try TestCertificates.other()
        let registry = PrometheusCollectorRegistry()
        let tls = try ServerTLS(TLSFiles(certificate: certs.certificate("server"), key: certs.key("server"), ca: certs.ca))
        let server = ServerRuntime(options: .init(host: "127.0.0.1", port: 0, dataDirectory: "/nonexistent/unused",
                                                  heartbeatIntervalSeconds: 0.2, heartbeatTimeoutSeconds: 2, tls: tls),
                                   logger: quiet, store: MemoryRecordStore())
        ServerMetrics(series: ServerSeries(registry: registry)).attach(to: server)
        try server.start()
        defer { server.stop() }
        /// The expired certificate is checked as of a day and a half ago, when it was valid: else the client's own
        /// check at start refuses it before the server can.
        func client(_ name: String?, from set: CertificateSet) throws -> ClientTLS? {
            try ClientTLS(TLSFiles(certificate: name.map(set.certificate), key: name.map(set.key), ca: certs.ca),
                          now: Int(Date().timeIntervalSince1970) - (name == "expired" ? 36 * 3600 : 0))
        }

        let worker = WorkerRuntime(options: .init(serverAddress: server.address, name: "w1", tls: try client("worker", from: certs)),
                                   logger: quiet)
        worker.start()
        defer { worker.stop() }
        let good = try PSClient(server: server.address, name: "good", tls: try client("psctl", from: certs))
        defer { good.close() }
        let job = smallMNISTJob(name: "tls", seed: 4, validationSplit: 0.2,
                                layers: [LayerSpec(units: 8, activation: .relu), LayerSpec(units: 10, activation: .softmax)],
                                optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1), batchSize: 50, chunks: 2, epochs: 1)
        let jobId = try good.submit(job)

        let refused: [(ClientTLS?, String)] = [
            (try client("psctl", from: other), "the server refused our certificate (alert: unknown ca)"),
            (try client(nil, from: certs), "the server requires a client certificate"),
            (try client("expired", from: certs), "alert: certificate expired"),
            (nil, "TLS"),
        ]
        for (tls, text) in refused {
            XCTAssertThrowsError(try PSClient(server: server.address, name: "bad", tls: tls)) { error in
                XCTAssertTrue("\(error)".hasPrefix("connect on \(server.address): "), "\(error)")
                XCTAssertTrue("\(error)".contains(text), "\(error)")
                XCTAssertFalse((error as? PSClientError)?.isConnectionLost ?? true, "a refused certificate is not worth retrying: \(error)")
            }
        }

        let result = try good.wait(for: jobId)
        XCTAssertEqual(result.state, .completed, result.message)
        let page = registry.emitToString()
        for reason in ["unknown_ca", "no_certificate", "expired_certificate", "not_tls"] {
            XCTAssertTrue(page.contains("ps_tls_handshake_failures_total{reason=\"\(reason)\"} 1\n"), "\(reason) in:\n\(page)")
        }
        XCTAssertTrue(page.contains("ps_tls_handshake_failures_total{reason=\"timeout\"} 0\n"), page)
    }
}
