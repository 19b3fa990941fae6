import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest
import PSTestSupport

/// `--metrics-listen` on the real binaries: what a Prometheus server scraping them would see.
final class MetricsEndToEndTests: XCTestCase {
    // A ps-server and a ps-worker serve /metrics before, during and after a small job; afterwards the
    // key series agree with the job's own figures and with each other, and promtool accepts every page.
    func testServerAndWorkerMetricsFollowAJob() throws {
        let metricsFlag = ["--metrics-listen", "127.0.0.1:0"]
        let cluster = try LocalCluster(extraServerArguments: metricsFlag)
        defer { cluster.stop() }
        let serverURL = try cluster.metricsURL(log: "server")
        try cluster.startWorker("w1", extraArguments: metricsFlag)
        let workerURL = try cluster.metricsURL(log: "w1")

        // Before any job: the worker is known, every job state is at zero, and the pages are valid.
        var server = try scrape(serverURL)
        XCTAssertEqual(server["ps_workers_joined_total"], 1)
        XCTAssertEqual(server[#"ps_jobs{state="running"}"#], 0)
        XCTAssertEqual(try scrape(workerURL)["ps_worker_connected"], 1)

        // While it trains (more epochs than the example, so the run outlasts several scrapes), both
        // endpoints keep answering; promtool checks a page of each taken mid-job afterwards.
        let epochs = 30
        let submit = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml", "--set", "training.epochs=\(epochs)"])
        XCTAssertEqual(submit.status, 0, submit.stderr)
        let job = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var pagesWhileRunning: [String] = []
        try cluster.waitUntil("\(job) ends") {
            let text = try pageText(serverURL)
            let workerText = try pageText(workerURL)
            let page = parse(text)
            if page[#"ps_jobs{state="running"}"#] == 1, pagesWhileRunning.isEmpty { pagesWhileRunning = [text, workerText] }
            return page[#"ps_jobs{state="completed"}"#] == 1 || page[#"ps_jobs{state="failed"}"#] == 1
        }
        XCTAssertFalse(pagesWhileRunning.isEmpty, "no scrape answered while the job was running")
        for text in pagesWhileRunning { try Promtool.check(text) }

        let wait = try cluster.psctl(["wait", job, "--json"])
        XCTAssertEqual(wait.status, 0, wait.stderr)
        let result = try Binaries.json(wait)
        let status = try cluster.jobStatus(job)
        let stepsPerEpoch = try XCTUnwrap(status["steps_per_epoch"] as? Int)
        let epochsRun = try XCTUnwrap(result["epochs_run"] as? Int)
        XCTAssertEqual(epochsRun, epochs)
        let steps = Double(epochsRun * stepsPerEpoch)
        let batchSize = 64.0

        // The worker-state gauges are refreshed once a second.
        try cluster.waitUntil("worker states refreshed", timeout: 10) {
            let page = try scrape(serverURL)
            return ["idle", "working", "suspect"].compactMap { page[#"ps_workers{state="\#($0)"}"#] }.reduce(0, +) == 1
        }
        server = try scrape(serverURL)
        let worker = try scrape(workerURL)
        let jobLabel = #"{job_id="\#(job)"}"#
        XCTAssertEqual(server["ps_steps_total" + jobLabel], steps, "server steps")
        XCTAssertEqual(server["ps_step_apply_seconds_count"], steps, "one apply time per step")
        XCTAssertGreaterThan(try XCTUnwrap(server["ps_step_apply_seconds_sum"]), 0)
        let samples = try XCTUnwrap(server["ps_samples_total" + jobLabel])
        XCTAssertLessThanOrEqual(samples, steps * batchSize)
        XCTAssertGreaterThan(samples, (steps - Double(epochsRun)) * batchSize, "only an epoch's last batch may be short")
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(server[#"ps_pushes_total{duplicate="false"}"#]), steps)
        XCTAssertGreaterThan(try XCTUnwrap(server["ps_train_loss" + jobLabel]), 0)
        XCTAssertGreaterThan(try XCTUnwrap(server["ps_validation_loss" + jobLabel]), 0)
        XCTAssertEqual(try XCTUnwrap(server["ps_validation_accuracy" + jobLabel]),
                       try XCTUnwrap(result["val_accuracy"] as? Double), accuracy: 1e-9)
        XCTAssertEqual(server[#"ps_jobs{state="completed"}"#], 1)
        XCTAssertEqual(server[#"ps_jobs{state="running"}"#], 0)
        XCTAssertEqual(server["ps_heartbeat_misses_total"], 0)
        XCTAssertEqual(server["ps_rejected_frames_total"], 0)
        XCTAssertEqual(server[#"ps_workers_left_total{reason="disconnected"}"#], 0)

        // One worker computed every step, so its counts are the server's.
        XCTAssertEqual(worker["ps_worker_steps_total"], steps, "worker steps")
        XCTAssertEqual(worker["ps_worker_samples_total"], samples)
        XCTAssertEqual(worker[#"ps_worker_compute_seconds_count{kind="train"}"#], steps)
        XCTAssertEqual(worker[#"ps_worker_compute_seconds_count{kind="validate"}"#], Double(epochsRun))
        // The example's model is one push range (ParameterLayout.pushRanges), so one push per step.
        XCTAssertEqual(worker["ps_worker_push_seconds_count"], steps, "every push acknowledged")
        XCTAssertEqual(server[#"ps_pushes_total{duplicate="false"}"#], steps)
        XCTAssertEqual(worker["ps_worker_push_bytes_total"], server["ps_push_bytes_total"])
        XCTAssertGreaterThan(try XCTUnwrap(worker["ps_worker_pull_bytes_total"]), 0)
        XCTAssertEqual(worker["ps_worker_connected"], 1)

        // A job's label is job_id: Prometheus sets `job` itself, to the scrape job's name.
        XCTAssertFalse(try pageText(serverURL).contains(#"{job=""#))
    }

    // Other paths and methods are refused by the real binary too.
    func testEndpointRefusesOtherPathsAndMethods() throws {
        let cluster = try LocalCluster(extraServerArguments: ["--metrics-listen", "127.0.0.1:0"])
        defer { cluster.stop() }
        let url = try cluster.metricsURL(log: "server")
        XCTAssertEqual(try get(url.replacingOccurrences(of: "/metrics", with: "/")).status, 404)
        XCTAssertEqual(try get(url, method: "POST").status, 405)
    }

    // The probes on the real binaries: the server is live and ready once it listens; a worker is ready
    // once registered, not ready (503, saying why) while its server is gone, and ready again when it
    // comes back and the worker re-registers; other paths stay 404.
    func testProbesFollowTheServerAndTheWorker() throws {
        let metricsFlag = ["--metrics-listen", "127.0.0.1:0"]
        let cluster = try LocalCluster(extraServerArguments: metricsFlag)
        defer { cluster.stop() }
        let server = try cluster.metricsURL(log: "server").replacingOccurrences(of: "/metrics", with: "")
        try cluster.waitUntil("the server is ready", timeout: 20) { try get(server + "/readyz").status == 200 }
        XCTAssertEqual(try get(server + "/readyz").body, "ready\n")
        XCTAssertEqual(try get(server + "/healthz").status, 200)
        XCTAssertEqual(try get(server + "/healthz").body, "ok\n")
        XCTAssertEqual(try get(server + "/livez").status, 404)

        try cluster.startWorker("w1", extraArguments: metricsFlag)
        let worker = try cluster.metricsURL(log: "w1").replacingOccurrences(of: "/metrics", with: "")
        try cluster.waitUntil("the worker is ready", timeout: 20) { try get(worker + "/readyz").status == 200 }

        cluster.killServer()
        try cluster.waitUntil("the worker reports it is not ready", timeout: 20) { try get(worker + "/readyz").status == 503 }
        XCTAssertEqual(try get(worker + "/readyz").body, "not ready: reconnecting to \(cluster.address)\n")
        XCTAssertEqual(try get(worker + "/healthz").status, 200, "a reconnecting worker is alive")

        try cluster.restartServer(log: "server-2")
        try cluster.waitUntil("the worker is ready again", timeout: 30) { try get(worker + "/readyz").status == 200 }
    }

    // A model large enough to be pushed in two parts (784-64, then 64-4096-10 with more than 262,144
    // parameters): each of two workers sends its node's last layers while layer 0 is still in
    // backward, and the server applies them and streams their weights back before the step ends. The
    // server counts two pushes per worker per step, and the weights are still the local trainer's.
    func testModelPushedInPartsMatchesLocal() throws {
        let overrides = ["model.layers=[{units: 64, activation: relu}, {units: 4096, activation: relu}, {units: 10, activation: softmax}]",
                         "training.epochs=1"]
        let local = try Reference.localSHA("examples/mnist-small-sgd.yaml", overrides)
        let cluster = try LocalCluster(extraServerArguments: ["--metrics-listen", "127.0.0.1:0"])
        defer { cluster.stop() }
        let url = try cluster.metricsURL(log: "server")
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        try cluster.waitUntil("both workers registered") { try cluster.workerCount() == 2 }
        let out = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml"] + overrides.flatMap { ["--set", $0] } + ["--wait", "--json"])
        XCTAssertEqual(out.status, 0, out.stderr + "\n" + cluster.log("server").suffix(2000))
        let result = try Binaries.json(out)
        XCTAssertEqual(result["weights_sha256"] as? String, local)
        let status = try cluster.jobStatus(try XCTUnwrap(result["job_id"] as? String))
        let steps = Double(try XCTUnwrap(status["steps_per_epoch"] as? Int))
        // chunks: 2, so each worker holds one node a step, pushed in two parts.
        XCTAssertEqual(try scrape(url)[#"ps_pushes_total{duplicate="false"}"#], steps * 2 * 2)
    }

    // MARK: Helpers

    /// Scrapes `url`, checks the page with promtool, and returns its samples.
    private func scrape(_ url: String) throws -> [String: Double] {
        let text = try pageText(url)
        try Promtool.check(text)
        return parse(text)
    }

    /// Each sample of an exposition page by its series (`name{labels}` exactly as written).
    private func parse(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                XCTFail("unparsable sample line: \(line)")
                continue
            }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    private func pageText(_ url: String) throws -> String {
        let response = try get(url)
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.contentType, "text/plain; version=0.0.4; charset=utf-8")
        return response.body
    }

    private func get(_ url: String, method: String = "GET") throws -> (status: Int, contentType: String?, body: String) {
        var request = URLRequest(url: URL(string: url)!, timeoutInterval: 10)
        request.httpMethod = method
        final class Box: @unchecked Sendable { var result: Result<(Int, String?, String), Error>? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let http = response as? HTTPURLResponse {
                box.result = .success((http.statusCode, http.value(forHTTPHeaderField: "Content-Type"),
                                       String(decoding: data ?? Data(), as: UTF8.self)))
            } else {
                box.result = .failure(error ?? URLError(.badServerResponse))
            }
            done.signal()
        }.resume()
        done.wait()
        let (status, contentType, body) = try box.result!.get()
        return (status, contentType, body)
    }
}
