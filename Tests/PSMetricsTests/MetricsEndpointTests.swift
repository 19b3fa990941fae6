import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import NIOHTTP1
import Prometheus
import PSLifecycle
import PSMetrics
import PSTransport
import XCTest
import PSTestSupport

/// The /metrics endpoint over a real loopback socket, and the names and shapes of our series.
final class MetricsEndpointTests: XCTestCase {
    // GET /metrics answers 200 with the Prometheus text type and exactly the registry's text.
    func testServesTheRegistryText() throws {
        let registry = PrometheusCollectorRegistry()
        let things = MetricNameDescriptor(metricName: "ps_test_things", unitName: "total", helpText: "Things.")
        registry.makeCounter(descriptor: things).increment(by: Int64(3))
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "ps_test_level", unitName: "", helpText: "A level."),
                           labels: [("job_id", "job-1")]).set(to: 0.5)
        let endpoint = try MetricsEndpoint.start(host: "127.0.0.1", port: 0, registry: registry, status: ServiceStatus(),
                                                 logger: Logger(label: "test"))
        defer { endpoint.shutdown() }
        XCTAssertNotEqual(endpoint.port, 0)
        XCTAssertEqual(endpoint.localAddress, "127.0.0.1:\(endpoint.port)")

        let response = try HTTP.request("http://\(endpoint.localAddress)/metrics")
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertEqual(Set(response.body.split(separator: "\n")), Set(registry.emitToString().split(separator: "\n")))
        XCTAssertTrue(response.body.contains("ps_test_things_total 3\n"), response.body)
        XCTAssertTrue(response.body.contains(#"ps_test_level{job_id="job-1"} 0.5"#), response.body)

        // Values are read at each scrape, and a query string does not change the path.
        registry.makeCounter(descriptor: things).increment()
        XCTAssertTrue(try HTTP.request("http://\(endpoint.localAddress)/metrics?x=1").body.contains("ps_test_things_total 4\n"))
    }

    // Other paths are 404 and other methods 405 (with Allow: GET); the endpoint keeps serving afterwards.
    func testOtherPathsAndMethodsAreRefused() throws {
        let registry = PrometheusCollectorRegistry()
        let endpoint = try MetricsEndpoint.start(host: "127.0.0.1", port: 0, registry: registry, status: ServiceStatus(),
                                                 logger: Logger(label: "test"))
        defer { endpoint.shutdown() }
        let base = "http://\(endpoint.localAddress)"
        XCTAssertEqual(try HTTP.request(base + "/").status, 404)
        XCTAssertEqual(try HTTP.request(base + "/metricsx").status, 404)
        let post = try HTTP.request(base + "/metrics", method: "POST", body: "x")
        XCTAssertEqual(post.status, 405)
        XCTAssertEqual(post.headers["allow"], "GET")
        XCTAssertEqual(try HTTP.request(base + "/metrics", method: "DELETE").status, 405)
        XCTAssertEqual(try HTTP.request(base + "/metrics").status, 200)
    }

    // With TLS the endpoint is HTTPS: a scraper trusting the CA and presenting a certificate it signed gets the
    // page; one without a certificate, or speaking plain HTTP, gets nothing, and the endpoint serves on.
    func testServesHTTPSWithClientCertificates() throws {
        let certs = try TestCertificates.main()
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "ps_test_things", unitName: "total", helpText: "Things."))
            .increment()
        let tls = try ServerTLS(TLSFiles(certificate: certs.certificate("server"), key: certs.key("server"), ca: certs.ca))
        let endpoint = try MetricsEndpoint.start(host: "127.0.0.1", port: 0, registry: registry, status: ServiceStatus(), tls: tls,
                                                 logger: Logger(label: "test"))
        defer { endpoint.shutdown() }
        let url = "https://localhost:\(endpoint.port)/metrics"
        func curl(_ arguments: [String]) throws -> (status: Int32, out: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            process.arguments = ["--silent", "--show-error", "--max-time", "10"] + arguments
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, text)
        }
        let scraper = ["--cacert", certs.ca, "--cert", certs.certificate("psctl"), "--key", certs.key("psctl")]
        let page = try curl(scraper + [url])
        XCTAssertEqual(page.status, 0, page.out)
        XCTAssertTrue(page.out.contains("ps_test_things_total 1\n"), page.out)
        XCTAssertNotEqual(try curl(["--cacert", certs.ca, url]).status, 0, "no client certificate")
        XCTAssertNotEqual(try curl(["http://127.0.0.1:\(endpoint.port)/metrics"]).status, 0, "plain HTTP")
        XCTAssertEqual(try curl(scraper + [url]).status, 0)
    }

    // Every path × method × state: the scrape, the two probes, 405 on their paths, 404 elsewhere; the
    // registry is rendered for a scrape only.
    func testRoutesForEveryPathMethodAndState() {
        let states: [ServiceState] = [.starting, .ready, .unavailable(reason: "reconnecting to h:1"), .stopping]
        let paths = ["/metrics", "/healthz", "/readyz", "/", "/healthz/", "/readyzz", "/metrics/x", ""]
        for state in states {
            for method in [HTTPMethod.GET, .POST, .HEAD, .DELETE] {
                for path in paths {
                    for query in ["", "?verbose=1"] {
                        var rendered = false
                        let route = EndpointRoute.respond(method: method, uri: path + query, state: state) {
                            rendered = true
                            return Array("page".utf8)
                        }
                        let body = String(decoding: route.body, as: UTF8.self)
                        let what = "\(method) \(path)\(query) while \(state)"
                        XCTAssertEqual(rendered, method == .GET && path == "/metrics", what)
                        switch (path, method) {
                        case ("/metrics", .GET):
                            XCTAssertEqual(route.status, .ok, what)
                            XCTAssertEqual(route.contentType, MetricsEndpoint.contentType, what)
                            XCTAssertEqual(body, "page", what)
                        case ("/healthz", .GET):
                            XCTAssertEqual(route.status, .ok, what)
                            XCTAssertEqual(body, "ok\n", what)
                        case ("/readyz", .GET):
                            XCTAssertEqual(route.status, state == .ready ? .ok : .serviceUnavailable, what)
                            XCTAssertEqual(body, state.line + "\n", what)
                        case ("/metrics", _), ("/healthz", _), ("/readyz", _):
                            XCTAssertEqual(route.status, .methodNotAllowed, what)
                            XCTAssertEqual(route.allow, "GET", what)
                        default:
                            XCTAssertEqual(route.status, .notFound, what)
                            XCTAssertEqual(body, "not found; served: /metrics, /healthz, /readyz\n", what)
                        }
                        if route.status != .methodNotAllowed { XCTAssertNil(route.allow, what) }
                    }
                }
            }
        }
        XCTAssertEqual(ServiceState.unavailable(reason: "reconnecting to h:1").line, "not ready: reconnecting to h:1")
    }

    // Over a real socket the probes follow the status as it changes: /readyz is 503 while starting,
    // 200 once ready, 503 again when stopping; /healthz is 200 throughout.
    func testProbesFollowTheStatus() throws {
        let status = ServiceStatus()
        let endpoint = try MetricsEndpoint.start(host: "127.0.0.1", port: 0, registry: PrometheusCollectorRegistry(),
                                                 status: status, logger: Logger(label: "test"))
        defer { endpoint.shutdown() }
        let base = "http://\(endpoint.localAddress)"
        func probes() throws -> (health: Int, ready: Int, readyBody: String) {
            let health = try HTTP.request(base + "/healthz")
            XCTAssertEqual(health.body, "ok\n")
            let ready = try HTTP.request(base + "/readyz")
            return (health.status, ready.status, ready.body)
        }
        var now = try probes()
        XCTAssertEqual([now.health, now.ready], [200, 503])
        XCTAssertEqual(now.readyBody, "starting\n")
        status.enter(.ready)
        now = try probes()
        XCTAssertEqual([now.health, now.ready], [200, 200])
        XCTAssertEqual(now.readyBody, "ready\n")
        status.enter(.stopping)
        now = try probes()
        XCTAssertEqual([now.health, now.ready], [200, 503])
        XCTAssertEqual(now.readyBody, "stopping\n")
        XCTAssertEqual(try HTTP.request(base + "/readyz", method: "POST").status, 405)
        XCTAssertEqual(try HTTP.request(base + "/healthz/x").status, 404)
    }

    // A port already taken is an error naming the address, not a crash.
    func testBindFailureIsATypedError() throws {
        let registry = PrometheusCollectorRegistry()
        let first = try MetricsEndpoint.start(host: "127.0.0.1", port: 0, registry: registry, status: ServiceStatus(),
                                                 logger: Logger(label: "test"))
        defer { first.shutdown() }
        XCTAssertThrowsError(try MetricsEndpoint.start(host: "127.0.0.1", port: first.port, registry: registry,
                                                       status: ServiceStatus(), logger: Logger(label: "test"))) { error in
            XCTAssertTrue("\(error)".contains("127.0.0.1:\(first.port)"), "\(error)")
        }
    }

    // The worker's series carry the documented names, labels and buckets, and promtool accepts them.
    func testWorkerSeries() throws {
        let registry = PrometheusCollectorRegistry()
        let metrics = WorkerMetrics(registry: registry)
        metrics.setConnected(true)
        metrics.weightsReceived(bytes: 400)
        metrics.computed(.train, duration: .milliseconds(3))
        metrics.pushed(samples: 64, bytes: 400)
        metrics.pushAcknowledged(after: .microseconds(700))
        let text = registry.emitToString()
        for line in ["ps_worker_connected 1.0", "ps_worker_pull_bytes_total 400", "ps_worker_push_bytes_total 400",
                     "ps_worker_steps_total 1", "ps_worker_samples_total 64",
                     #"ps_worker_compute_seconds_bucket{kind="train",le="0.0025"} 0"#,
                     #"ps_worker_compute_seconds_bucket{kind="train",le="0.005"} 1"#,
                     #"ps_worker_compute_seconds_count{kind="train"} 1"#,
                     #"ps_worker_compute_seconds_count{kind="validate"} 0"#,
                     #"ps_worker_push_seconds_bucket{le="0.00001"} 0"#,
                     #"ps_worker_push_seconds_bucket{le="0.001"} 1"#, "ps_worker_push_seconds_count 1",
                     "# TYPE ps_worker_compute_seconds histogram", "# TYPE ps_worker_steps_total counter"] {
            XCTAssertTrue(text.contains(line + "\n"), "missing \(line) in\n\(text)")
        }
        try Promtool.check(text)
    }

    // The server's series: per-job ones carry job_id, counts by state cover every state given, a
    // forgotten job's series disappear, and promtool accepts the page.
    func testServerSeries() throws {
        let registry = PrometheusCollectorRegistry()
        let series = ServerSeries(registry: registry)
        series.setJobs([("running", 1), ("completed", 0)])
        series.setWorkers([("idle", 2), ("working", 1)])
        series.addJob("job-1")
        series.stepCompleted(jobId: "job-1", samples: 64, batchLoss: 0.25, applyDuration: .microseconds(80))
        series.stepCompleted(jobId: "job-1", samples: 36, batchLoss: 0.5, applyDuration: .milliseconds(20))
        series.epochCompleted(jobId: "job-1", validationLoss: 0.3, validationAccuracy: 0.9)
        series.pushAccepted(bytes: 100, duplicate: false)
        series.pushAccepted(bytes: 100, duplicate: true)
        series.workerJoined()
        series.workerLeft(.heartbeatTimeout)
        series.heartbeatMissed()
        series.frameRejected()
        series.tlsHandshakeFailed(.unknownCA)
        var text = registry.emitToString()
        for line in [#"ps_steps_total{job_id="job-1"} 2"#, #"ps_samples_total{job_id="job-1"} 100"#,
                     #"ps_train_loss{job_id="job-1"} 0.5"#, #"ps_validation_loss{job_id="job-1"} 0.3"#,
                     #"ps_validation_accuracy{job_id="job-1"} 0.9"#,
                     #"ps_jobs{state="running"} 1.0"#, #"ps_jobs{state="completed"} 0.0"#,
                     #"ps_workers{state="idle"} 2.0"#, #"ps_workers{state="working"} 1.0"#,
                     "ps_push_bytes_total 200", #"ps_pushes_total{duplicate="false"} 1"#, #"ps_pushes_total{duplicate="true"} 1"#,
                     #"ps_step_apply_seconds_bucket{le="0.0001"} 1"#, "ps_step_apply_seconds_count 2",
                     "ps_workers_joined_total 1", #"ps_workers_left_total{reason="heartbeat_timeout"} 1"#,
                     #"ps_workers_left_total{reason="disconnected"} 0"#,
                     "ps_heartbeat_misses_total 1", "ps_rejected_frames_total 1",
                     #"ps_tls_handshake_failures_total{reason="unknown_ca"} 1"#,
                     #"ps_tls_handshake_failures_total{reason="not_tls"} 0"#] {
            XCTAssertTrue(text.contains(line + "\n"), "missing \(line) in\n\(text)")
        }
        XCTAssertFalse(text.contains(#"job=""#), "the job label is Prometheus's own; ours is job_id")
        try Promtool.check(text)

        series.forgetJob("job-1")
        text = registry.emitToString()
        XCTAssertFalse(text.contains("job-1"), text)
        XCTAssertTrue(text.contains("ps_step_apply_seconds_count 2\n"), "series without job_id stay")
    }
}

/// A blocking HTTP request through URLSession.
enum HTTP {
    struct Response {
        var status: Int
        /// Lower-cased names.
        var headers: [String: String]
        var body: String
    }

    static func request(_ url: String, method: String = "GET", body: String? = nil) throws -> Response {
        var request = URLRequest(url: URL(string: url)!, timeoutInterval: 10)
        request.httpMethod = method
        request.httpBody = body.map { Data($0.utf8) }
        final class Box: @unchecked Sendable { var result: Result<Response, Error>? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let http = response as? HTTPURLResponse {
                var headers: [String: String] = [:]
                for (name, value) in http.allHeaderFields { headers["\(name)".lowercased()] = "\(value)" }
                box.result = .success(Response(status: http.statusCode, headers: headers,
                                               body: String(decoding: data ?? Data(), as: UTF8.self)))
            } else {
                box.result = .failure(error ?? URLError(.badServerResponse))
            }
            done.signal()
        }.resume()
        done.wait()
        return try box.result!.get()
    }
}
