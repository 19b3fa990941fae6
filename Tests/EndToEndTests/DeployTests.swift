import Foundation
import XCTest
import PSTestSupport

/// The files under deploy/ checked by the tools their readers use (systemd-analyze, hadolint,
/// kubernetes-validate, checkov, promtool), each also shown a broken copy so a check that passes
/// everything would fail here. The tools come from `scripts/install-deps.sh --test` (the Python ones
/// in the repository's .venv).
final class DeployTests: XCTestCase {
    private static let deploy = Binaries.repositoryRoot + "/deploy"

    // MARK: systemd

    // Both units, with and without the TLS drop-in, pass `systemd-analyze verify` without a single
    // line of complaint (ExecStart pointing at the built binaries), and stay well hardened
    // (`systemd-analyze security` exposure at most 2.0 of 10); a unit with a misspelt key is caught.
    func testSystemdUnitsVerifyCleanly() throws {
        let units = try scratch("systemd")
        for name in ["ps-server.service", "ps-worker@.service"] {
            let text = try String(contentsOfFile: "\(Self.deploy)/systemd/\(name)", encoding: .utf8)
            let program = name.hasPrefix("ps-server") ? "ps-server" : "ps-worker"
            XCTAssertTrue(text.contains("ExecStart=/usr/local/bin/\(program) "), name)
            try text.replacingOccurrences(of: "/usr/local/bin/\(program)", with: Binaries.buildDirectory + "/" + program)
                .write(toFile: "\(units)/\(name)", atomically: true, encoding: .utf8)
        }
        func verify(_ units: String, _ names: [String]) throws -> Binaries.Output {
            // The scratch folder first, then systemd's own paths (for the targets the units name).
            try Binaries.runSystem("/usr/bin/systemd-analyze", ["verify", "--man=no"] + names,
                                   environment: ["SYSTEMD_UNIT_PATH": units + ":"])
        }
        let names = ["ps-server.service", "ps-worker@w1.service"]
        var out = try verify(units, names)
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertEqual(out.stdout + out.stderr, "", "systemd-analyze verify")

        for unit in ["ps-server.service", "ps-worker@.service"] {
            let security = try Binaries.runSystem("/usr/bin/systemd-analyze",
                                                  ["security", "--offline=true", "--threshold=20", "--no-pager", "\(units)/\(unit)"])
            XCTAssertEqual(security.status, 0, "\(unit) exposure above 2.0:\n\(security.stdout)\(security.stderr)")
        }

        for unit in ["ps-server.service", "ps-worker@.service"] {
            try FileManager.default.createDirectory(atPath: "\(units)/\(unit).d", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: "\(Self.deploy)/systemd/tls.conf", toPath: "\(units)/\(unit).d/tls.conf")
        }
        out = try verify(units, names)
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertEqual(out.stdout + out.stderr, "", "systemd-analyze verify with tls.conf")

        let broken = try String(contentsOfFile: "\(units)/ps-server.service", encoding: .utf8)
            .replacingOccurrences(of: "WatchdogSec=", with: "WatchdogSecs=")
        try broken.write(toFile: "\(units)/ps-server.service", atomically: true, encoding: .utf8)
        XCTAssertTrue(try verify(units, ["ps-server.service"]).stderr.contains("WatchdogSecs"), "a misspelt key passed")
    }

    // MARK: Container

    // The Dockerfile has no hadolint finding at any level (its ignores say why inline), and hadolint
    // does flag a careless one.
    func testDockerfileLintsCleanly() throws {
        let hadolint = try pythonTool("hadolint")
        let out = try Binaries.runSystem(hadolint, ["--failure-threshold", "style", "\(Self.deploy)/container/Dockerfile"])
        XCTAssertEqual(out.status, 0, out.stdout + out.stderr)
        XCTAssertEqual(out.stdout + out.stderr, "", "hadolint")
        for ignore in try lines(of: "\(Self.deploy)/container/Dockerfile", containing: "hadolint ignore=") {
            XCTAssertTrue(ignore.hasPrefix("# hadolint ignore="), "an ignore must be its own comment line: \(ignore)")
        }

        let careless = try scratch("container") + "/Dockerfile"
        try "FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n".write(toFile: careless, atomically: true, encoding: .utf8)
        XCTAssertNotEqual(try Binaries.runSystem(hadolint, ["--failure-threshold", "style", careless]).status, 0)
    }

    // The image's HEALTHCHECK command, run as Docker would run it, succeeds against a real ps-server's
    // /healthz and fails where nothing listens.
    func testContainerHealthCheckProbesHealthz() throws {
        let text = try String(contentsOfFile: "\(Self.deploy)/container/Dockerfile", encoding: .utf8)
        guard let start = text.range(of: "CMD [\"bash\"", range: try XCTUnwrap(text.range(of: "HEALTHCHECK"))
            .upperBound..<text.endIndex) else { return XCTFail("no HEALTHCHECK CMD [\"bash\", …]") }
        let line = text[start.lowerBound...].prefix { $0 != "\n" }.dropFirst("CMD ".count)
        let command = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String])
        XCTAssertTrue(command.joined(separator: " ").contains("/healthz"), "\(command)")

        let cluster = try LocalCluster(extraServerArguments: ["--metrics-listen", "127.0.0.1:0"])
        defer { cluster.stop() }
        var port = ""
        try cluster.waitUntil("the server serves metrics", timeout: 20) {
            guard let range = cluster.log("server").range(of: #"url=http://127\.0\.0\.1:[0-9]+/"#, options: .regularExpression)
            else { return false }
            port = String(cluster.log("server")[range].dropFirst("url=http://127.0.0.1:".count).dropLast())
            return true
        }
        let healthy = try Binaries.runSystem("/usr/bin/env", command, environment: ["PS_METRICS_PORT": port])
        XCTAssertEqual(healthy.status, 0, healthy.stderr)
        cluster.stop()
        let gone = try Binaries.runSystem("/usr/bin/env", command, environment: ["PS_METRICS_PORT": port])
        XCTAssertNotEqual(gone.status, 0, "healthy with no server")
    }

    // MARK: Kubernetes

    // Every manifest is valid against Kubernetes' schemas with no unknown field, and checkov finds
    // nothing; each check skipped by an annotation is explained in the folder's README. A manifest with
    // an unknown field and one with a writable root filesystem are caught.
    func testKubernetesManifestsValidateAndPassCheckov() throws {
        let folder = Self.deploy + "/kubernetes"
        let manifests = try FileManager.default.contentsOfDirectory(atPath: folder)
            .filter { $0.hasSuffix(".yaml") && $0 != "kustomization.yaml" }.sorted()
        XCTAssertEqual(manifests, ["namespace.yaml", "network-policy.yaml", "secrets.yaml", "server.yaml", "submit-job.yaml",
                                   "workers.yaml"])
        let validate = try pythonTool("kubernetes-validate")
        let out = try Binaries.runSystem(validate, ["--strict"] + manifests.map { "\(folder)/\($0)" })
        XCTAssertEqual(out.status, 0, out.stdout + out.stderr)
        XCTAssertFalse((out.stdout + out.stderr).contains("ERROR") || (out.stdout + out.stderr).contains("WARN"), out.stdout + out.stderr)
        // Everything but the example job is in the kustomization.
        let kustomization = try String(contentsOfFile: "\(folder)/kustomization.yaml", encoding: .utf8)
        for manifest in manifests where manifest != "submit-job.yaml" {
            XCTAssertTrue(kustomization.contains("  - \(manifest)\n"), "\(manifest) is not in kustomization.yaml")
        }

        let broken = try scratch("kubernetes")
        for manifest in manifests { try FileManager.default.copyItem(atPath: "\(folder)/\(manifest)", toPath: "\(broken)/\(manifest)") }
        let workers = try String(contentsOfFile: "\(broken)/workers.yaml", encoding: .utf8)
        try workers.replacingOccurrences(of: "  replicas: 2", with: "  replicaz: 2")
            .write(toFile: "\(broken)/typo.yaml", atomically: true, encoding: .utf8)
        XCTAssertNotEqual(try Binaries.runSystem(validate, ["--strict", "\(broken)/typo.yaml"]).status, 0, "an unknown field passed")
        try FileManager.default.removeItem(atPath: "\(broken)/typo.yaml")

        let summary = try checkov(folder)
        XCTAssertEqual(summary.failed, [], "checkov findings")
        XCTAssertGreaterThan(summary.passed, 100, "checkov checked almost nothing")
        XCTAssertEqual(summary.parsingErrors, 0)
        let readme = try String(contentsOfFile: "\(folder)/README.md", encoding: .utf8)
        for manifest in manifests {
            for skip in try lines(of: "\(folder)/\(manifest)", containing: "checkov.io/skip") {
                let check = String(skip.split(separator: " ")[1].prefix { $0 != "=" })
                XCTAssertTrue(readme.contains(check), "\(check), skipped in \(manifest), is not explained in README.md")
            }
        }

        try workers.replacingOccurrences(of: "readOnlyRootFilesystem: true", with: "readOnlyRootFilesystem: false")
            .write(toFile: "\(broken)/workers.yaml", atomically: true, encoding: .utf8)
        XCTAssertEqual(try checkov(broken).failed, ["CKV_K8S_22"], "a writable root filesystem passed")
    }

    // MARK: Prometheus and Grafana

    // Both scrape configurations and their alert rules pass `promtool check config`; a misspelt field fails.
    func testPrometheusConfigsCheck() throws {
        for file in ["prometheus.yml", "prometheus-kubernetes.yml"] {
            let out = try Binaries.runSystem(Promtool.path, ["check", "config", "\(Self.deploy)/prometheus/\(file)"])
            XCTAssertEqual(out.status, 0, out.stdout + out.stderr)
            XCTAssertTrue(out.stdout.contains("SUCCESS: 5 rules found"), "rules not checked: \(out.stdout)")
        }
        let broken = try scratch("prometheus")
        for file in ["prometheus.yml", "ps-cluster.rules.yml"] {
            try FileManager.default.copyItem(atPath: "\(Self.deploy)/prometheus/\(file)", toPath: "\(broken)/\(file)")
        }
        let text = try String(contentsOfFile: "\(broken)/prometheus.yml", encoding: .utf8)
        try text.replacingOccurrences(of: "static_configs", with: "static_config").write(toFile: "\(broken)/prometheus.yml",
                                                                                          atomically: true, encoding: .utf8)
        XCTAssertNotEqual(try Binaries.runSystem(Promtool.path, ["check", "config", "\(broken)/prometheus.yml"]).status, 0)
    }

    // The dashboard is JSON that queries exactly the series the code exports (a renamed or new series
    // must be brought onto it), in PromQL that Prometheus parses.
    func testGrafanaDashboardQueriesTheSeriesTheCodeExports() throws {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: "\(Self.deploy)/grafana/ps-cluster.json"))
        let dashboard = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(dashboard["uid"] as? String, "ps-cluster")
        let panels = try XCTUnwrap(dashboard["panels"] as? [[String: Any]])
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        XCTAssertGreaterThan(expressions.count, 20)
        let variables = ((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? [])
            .compactMap { $0["definition"] as? String }

        let exported = try exportedSeries()
        XCTAssertGreaterThan(exported.count, 20, "series names not found in Sources/PSMetrics")
        var queried = Set<String>()
        for text in expressions + variables {
            for name in seriesNames(in: text) {
                // A histogram is queried through its _bucket, _sum and _count series.
                let base = ["_bucket", "_sum", "_count"].first { name.hasSuffix($0) && exported.contains(String(name.dropLast($0.count))) }
                    .map { String(name.dropLast($0.count)) } ?? name
                XCTAssertTrue(exported.contains(base), "the dashboard queries \(name), which no code exports: \(text)")
                queried.insert(base)
            }
        }
        XCTAssertEqual(exported.subtracting(queried), [], "series the dashboard does not show")

        // Prometheus's parser, through a rules file with one rule per query (Grafana's variables filled in).
        let rules = try scratch("grafana") + "/dashboard.rules.yml"
        let body = expressions.enumerated().map { index, expression in
            let promql = expression.replacingOccurrences(of: "$__rate_interval", with: "5m").replacingOccurrences(of: "$job_id", with: ".*")
            return "      - record: dashboard:query\(index)\n        expr: '\(promql.replacingOccurrences(of: "'", with: "''"))'\n"
        }.joined()
        try ("groups:\n  - name: dashboard\n    rules:\n" + body).write(toFile: rules, atomically: true, encoding: .utf8)
        let out = try Binaries.runSystem(Promtool.path, ["check", "rules", rules])
        XCTAssertEqual(out.status, 0, out.stdout + out.stderr)
    }

    // MARK: Helpers

    /// Every series name written out in Sources/PSMetrics (`"ps_…"`: the code spells names in full).
    private func exportedSeries() throws -> Set<String> {
        let folder = Binaries.repositoryRoot + "/Sources/PSMetrics"
        var names = Set<String>()
        for file in try FileManager.default.contentsOfDirectory(atPath: folder) where file.hasSuffix(".swift") {
            let text = try String(contentsOfFile: "\(folder)/\(file)", encoding: .utf8)
            for match in text.matches(of: #/"(ps_[a-z0-9_]+)"/#) { names.insert(String(match.1)) }
        }
        return names
    }

    private func seriesNames(in promql: String) -> [String] {
        promql.matches(of: #/\bps_[a-z0-9_]+/#).map { String($0.0) }
    }

    /// checkov's verdict on a folder of manifests: the failed checks' ids, the passed count, parse errors.
    /// Offline (`--skip-download`: it would ask its vendor's API for guidelines first).
    private func checkov(_ folder: String) throws -> (failed: [String], passed: Int, parsingErrors: Int) {
        let out = try Binaries.runSystem(try pythonTool("checkov"), ["-d", folder, "--framework", "kubernetes", "--skip-download",
                                                                      "--quiet", "--compact", "--output", "json"])
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any],
                                   "checkov printed no report:\n\(out.stdout)\n\(out.stderr)")
        let summary = try XCTUnwrap(report["summary"] as? [String: Any])
        let failed = ((report["results"] as? [String: Any])?["failed_checks"] as? [[String: Any]] ?? [])
            .compactMap { $0["check_id"] as? String }
        return (failed.sorted(), summary["passed"] as? Int ?? 0, summary["parsing_errors"] as? Int ?? -1)
    }

    /// A linter that `scripts/install-deps.sh --test` installs into the repository's .venv.
    private func pythonTool(_ name: String) throws -> String {
        let path = Binaries.repositoryRoot + "/.venv/bin/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            XCTFail("\(name) is not installed at \(path): run scripts/install-deps.sh --test")
            throw CocoaError(.fileNoSuchFile)
        }
        return path
    }

    /// A fresh folder, removed when the test ends.
    private func scratch(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "ps-deploy-\(name)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func lines(of path: String, containing text: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.contains(text) }
    }
}
