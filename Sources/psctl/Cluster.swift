import ArgumentParser
import Foundation
import PSClient
import PSCore
import PSData
import PSSpec
import PSTrain
import PSTransport
import PSWire

/// `--server HOST:PORT` and the TLS options, shared by every command that talks to the coordinator.
struct ServerOptions: ParsableArguments {
    @Option(help: "Coordinator address HOST:PORT (default: $PS_SERVER, else 127.0.0.1:7070).")
    var server = ProcessInfo.processInfo.environment["PS_SERVER"] ?? "127.0.0.1:7070"

    @Option(help: ArgumentHelp("File holding the cluster's shared secret (default: $PS_AUTH_TOKEN_FILE).", valueName: "file"))
    var authTokenFile: String?

    @Option(help: ArgumentHelp("PEM certificate to present to a server that requires one (mutual TLS). Default: $PS_TLS_CERT.",
                               valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("PEM private key of --tls-cert, unencrypted. Default: $PS_TLS_KEY.", valueName: "file"))
    var tlsKey: String?

    @Option(help: ArgumentHelp("PEM CA certificate(s) the server's certificate must chain to. Any --tls option makes the connection TLS. Default: $PS_TLS_CA.",
                               valueName: "file"))
    var tlsCa: String?

    @Option(help: ArgumentHelp("DNS name to check the server's certificate for, instead of the host in --server.", valueName: "name"))
    var tlsServerName: String?

    func validate() throws {
        do { _ = try parseAddress(server) } catch { throw ValidationError("--server: \(error)") }
    }

    func connect() throws -> PSClient {
        let files = TLSFiles(certificate: tlsCert, key: tlsKey, ca: tlsCa, serverName: tlsServerName,
                             environment: ProcessInfo.processInfo.environment)
        let token: AuthToken?
        let tls: ClientTLS?
        do {
            token = try AuthToken.load(flag: authTokenFile)
            tls = try ClientTLS(files)
        } catch {
            throw OperatingError("\(error)")
        }
        return try request {
            try PSClient(server: server, name: "psctl-\(getpid())", authToken: token, connectTimeoutSeconds: 5, tls: tls)
        }
    }
}

extension ServerOptions {
    /// A finished job's model, from the coordinator.
    func fetchModel(_ jobId: String) throws -> TrainedModel {
        let client = try connect()
        defer { client.close() }
        return try request { try client.fetchModel(jobId) }
    }
}

/// `--reconnect-seconds`, for the commands that wait for a job's end.
struct ReconnectOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "While waiting, how long to keep reconnecting to a server that went away (a restarted server resumes "
            + "its jobs); 0 fails at once. Default: \(Int(PSClient.reconnectSecondsDefault)).",
        valueName: "seconds"))
    var reconnectSeconds: Double?

    var seconds: Double { reconnectSeconds ?? PSClient.reconnectSecondsDefault }

    func validate() throws {
        // As long as a wait itself may take.
        guard (0...PSClient.waitTimeoutSeconds).contains(seconds) else {
            throw ValidationError("--reconnect-seconds must be between 0 and \(Int(PSClient.waitTimeoutSeconds))")
        }
    }
}

extension OperatingError {
    /// The one line psctl prints for a failed request: the server's refusal ("job_id: no job 'job-9'"),
    /// the transport's own message ("cannot connect to 127.0.0.1:7070: connection refused"), or that the
    /// reply made no sense.
    init(_ error: PSClientError) {
        switch (error.request, error.reason) {
        case let (.connect, .refused(reply)):
            self.init("\(ClientError.remote(reply))")
        case let (_, .refused(reply)):
            self.init(reply.field.isEmpty ? reply.message : "\(reply.field): \(reply.message)")
        case let (_, .transport(transportError)):
            self.init("\(transportError)")
        case let (request, .unexpectedReply):
            self.init("unexpected reply to \(request.verb)")
        }
    }
}

extension PSClientError.Request {
    /// The psctl command that sends this request.
    fileprivate var verb: String {
        switch self {
        case .connect: "connect"
        case .submit: "submit"
        case .status: "status"
        case .list: "list"
        case .wait: "wait"
        case .cancel: "cancel"
        case .fetchModel: "a model request"
        }
    }
}

/// Runs client calls, turning a client failure into psctl's one-line operating error.
func request<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as PSClientError {
        throw OperatingError(error)
    }
}

struct Submit: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a job spec and queue it on the cluster; prints the job id.")

    @OptionGroup var options: ServerOptions

    @Argument(help: "Job spec (YAML or JSON). Relative data paths are resolved against its folder.")
    var spec: String

    @Option(name: .customLong("set"), help: "Override a spec field, e.g. --set training.epochs=3 (repeatable).")
    var overrides: [String] = []

    @Flag(help: "Wait for the job to end and print its result (as `psctl wait`).")
    var wait = false

    @Flag(help: "With --wait: print the result as one JSON object.")
    var json = false

    @OptionGroup var reconnect: ReconnectOptions

    func validate() throws {
        if reconnect.reconnectSeconds != nil && !wait { throw ValidationError("--reconnect-seconds needs --wait") }
    }

    func run() throws {
        // Everything is checked before anything is sent: the spec, then that every data file is a regular
        // file (a FIFO or device would leave the job loading forever; `stat` tells without opening it) that
        // can be read here.
        let job = try JobSpec.load(path: spec, overrides: overrides)
        if let refusal = try! DataRoots([]).refusal(job) { throw OperatingError(refusal) }  // no roots: any folder
        for (field, path) in job.dataPaths where !FileManager.default.isReadableFile(atPath: path) {
            throw OperatingError("\(field): cannot read '\(path)'")
        }
        let client = try options.connect()
        defer { client.close() }
        let jobId = try request { try client.submit(job) }
        // A step is shared by at most `chunks` workers: say so when workers would sit idle, since the
        // chunk count (not the cluster) fixes the job's result and cannot be raised behind its back.
        let status = try? client.status(job: jobId)
        if let status, status.cluster.workers.count > job.training.chunks {
            printError("note: training.chunks is \(job.training.chunks), so at most \(job.training.chunks) of the "
                       + "\(status.cluster.workers.count) connected workers compute each step; set training.chunks "
                       + "to use more (results depend on chunks, never on the number of workers)")
        }
        // A named signature no connected worker has (a typo, another host's) makes the job wait: say so now.
        if let status, let named = job.training.computeSignature, !status.cluster.workers.isEmpty,
           !status.cluster.workers.contains(where: { $0.computeSignature == named }) {
            let seen = Set(status.cluster.workers.map(\.computeSignature)).sorted().joined(separator: ", ")
            printError("note: no connected worker has training.compute_signature \(named) (they have \(seen)); "
                       + "the job waits for one")
        }
        if !wait {
            print(jobId)
            return
        }
        if !json { printError("submitted \(jobId)") }
        try waitAndReport(client: client, jobId: jobId, json: json, reconnectSeconds: reconnect.seconds)
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the cluster (workers) and jobs.")

    @OptionGroup var options: ServerOptions

    @Argument(help: "Only this job.")
    var job: String?

    @Flag(help: "Print the status as one JSON object.")
    var json = false

    @Flag(help: "Refresh about once a second (in place on a terminal, one line per job otherwise); with a JOB, stop when it ends.")
    var watch = false

    @Option(help: "Seconds between refreshes with --watch.")
    var interval = 1.0

    func validate() throws {
        guard interval >= 0.1 && interval <= 3600 else { throw ValidationError("--interval must be between 0.1 and 3600 seconds") }
    }

    func run() throws {
        let client = try options.connect()
        defer { client.close() }
        func fetch() throws -> StatusReply {
            try request { try client.status(job: job) }
        }
        guard watch else {
            let status = try fetch()
            print(json ? status.json : status.table)
            return
        }
        var view = WatchView(terminal: isatty(STDOUT_FILENO) == 1 && !json)
        while true {
            let status = try fetch()
            if json {
                print(status.json)
            } else {
                print(view.render(status), terminator: "")
            }
            fflush(nil)  // every stream: stdout is a shared global Swift 6 will not touch
            if let job, let j = status.jobs.first(where: { $0.jobId == job }), j.state.isFinal { return }
            Thread.sleep(forTimeInterval: interval)
        }
    }
}

/// `status --watch`: on a terminal the whole view is redrawn in place with sparklines of recent loss
/// and validation accuracy; elsewhere one plain line per job per refresh, with no escape codes.
struct WatchView {
    let terminal: Bool
    /// Recent values per job, oldest first, for the sparklines.
    var losses: [String: [Double]] = [:]
    var accuracies: [String: [(epoch: Int, value: Double)]] = [:]
    static let history = 40

    init(terminal: Bool) { self.terminal = terminal }

    mutating func render(_ status: StatusReply) -> String {
        for j in status.jobs where j.state == .running {
            if let l = j.trainLoss {
                losses[j.jobId, default: []].append(l)
                losses[j.jobId] = Array(losses[j.jobId]!.suffix(Self.history))
            }
            if let a = j.validationAccuracy, accuracies[j.jobId]?.last?.epoch != j.epoch {
                accuracies[j.jobId, default: []].append((j.epoch, a))
                accuracies[j.jobId] = Array(accuracies[j.jobId]!.suffix(Self.history))
            }
        }
        guard terminal else {
            let stamp = ISO8601DateFormatter().string(from: Date())
            return status.jobs.map { j in
                var line = "\(stamp) \(j.jobId) \(j.state.rawValue) epoch \(j.epoch)/\(j.epochs) step \(j.step)/\(j.stepsPerEpoch)"
                line += String(format: " %.0f%%", j.progress * 100)
                if let l = j.trainLoss { line += String(format: " loss %.4f", l) }
                if let a = j.validationAccuracy { line += String(format: " val_acc %.4f", a) }
                if j.samplesPerSecond > 0 { line += " \(compact(j.samplesPerSecond)) samples/s" }
                if let eta = j.etaSeconds { line += " eta \(duration(eta))" }
                if !j.stallReason.isEmpty { line += " stalled: \(j.stallReason)" }
                if let note = j.consistencyNote { line += " \(note)" }
                return line + " workers \(status.cluster.workers.count)\n"
            }.joined()
        }
        var lines = ["\u{1B}[H\u{1B}[2J" + status.table.split(separator: "\n", omittingEmptySubsequences: false).first!]
        lines += status.table.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().map(String.init)
        for j in status.jobs where losses[j.jobId] != nil || accuracies[j.jobId] != nil {
            lines.append("")
            lines.append("\(j.jobId) loss    \(sparkline(losses[j.jobId] ?? []))  \(j.trainLoss.map { String(format: "%.4f", $0) } ?? "-")")
            lines.append("\(j.jobId) val_acc \(sparkline((accuracies[j.jobId] ?? []).map(\.value)))  \(j.validationAccuracy.map { String(format: "%.4f", $0) } ?? "-")")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Eight-level bars scaled between the values' minimum and maximum.
func sparkline(_ values: [Double]) -> String {
    let bars = Array("▁▂▃▄▅▆▇█")
    guard let lo = values.min(), let hi = values.max() else { return "" }
    return String(values.map { v in hi > lo ? bars[min(7, Int((v - lo) / (hi - lo) * 7.999))] : bars[3] })
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List jobs, oldest first.")

    @OptionGroup var options: ServerOptions

    @Flag(help: "Print the jobs as a JSON array.")
    var json = false

    func run() throws {
        let client = try options.connect()
        defer { client.close() }
        let jobs = try request { try client.listJobs() }
        print(json ? "[" + jobs.map(\.json).joined(separator: ", ") + "]" : JobStatus.table(jobs))
    }
}

struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a queued or running job.")

    @OptionGroup var options: ServerOptions

    @Argument(help: "Job id, e.g. job-3.")
    var job: String

    func run() throws {
        let client = try options.connect()
        defer { client.close() }
        try request { try client.cancel(job) }
        print("\(job) cancelled")
    }
}

struct Wait: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Block until a job ends; exit 0 if it completed (or stopped early), 1 otherwise.",
        discussion: "A server that goes away while it waits (restarted, crashed) is reconnected to for up to "
            + "--reconnect-seconds; the first connection is not retried.")

    @OptionGroup var options: ServerOptions

    @Argument(help: "Job id, e.g. job-3.")
    var job: String

    @Flag(help: "Print one JSON object with the same fields as `train --local --json`.")
    var json = false

    @OptionGroup var reconnect: ReconnectOptions

    func run() throws {
        let client = try options.connect()
        defer { client.close() }
        try waitAndReport(client: client, jobId: job, json: json, reconnectSeconds: reconnect.seconds)
    }
}

/// Waits for the job's result and prints it; throws (exit 1) unless the job completed or stopped early.
/// A lost connection is reconnected for up to `reconnectSeconds`, saying so on stderr.
func waitAndReport(client: PSClient, jobId: String, json: Bool, reconnectSeconds: Double) throws {
    // Training can take days; the server answers when the job ends.
    let result: JobResult
    do throws(PSClientError) {
        result = try client.wait(for: jobId, reconnectSeconds: reconnectSeconds) { event in
            switch event {
            case let .lost(error):
                printError("psctl: lost the connection to \(client.server) while waiting for \(jobId) "
                           + "(\(error.reasonText)); reconnecting")
            case .reconnected:
                printError("psctl: reconnected to \(client.server); waiting for \(jobId)")
            }
        }
    } catch where error.isConnectionLost && reconnectSeconds > 0 {
        // Only a failure that outlasted `reconnectSeconds` gets here (a first one is always retried).
        throw OperatingError("gave up waiting for \(jobId): no connection to \(client.server) for "
                             + "\(duration(reconnectSeconds)) (last: \(OperatingError(error))); the job goes on "
                             + "if the server comes back: `psctl wait \(jobId)` again then")
    } catch {
        throw OperatingError(error)
    }
    if let s = result.summary {
        if json {
            print(s.json(name: jobId, weightsSHA256: result.weightsSHA256) { o in
                o.set("job_id", jobId)
                o.set("state", result.state.rawValue)
                if !result.message.isEmpty { o.set("message", result.message) }
            }.text)
        } else {
            print(s.line(title: "\(jobId) \(result.state.rawValue)"))
            // A job that ended well may carry a note (it stopped on a non-finite step); a failure's
            // message is the error below.
            if !result.message.isEmpty, result.state == .completed || result.state == .stoppedEarly { print(result.message) }
            print("weights_sha256: \(result.weightsSHA256)")
        }
    } else if json {
        var o = JSONObject()
        o.set("job_id", jobId)
        o.set("state", result.state.rawValue)
        o.set("message", result.message)
        print(o.text)
    }
    guard result.state == .completed || result.state == .stoppedEarly else {
        throw OperatingError("\(jobId) \(result.state.rawValue)\(result.message.isEmpty ? "" : ": \(result.message)")")
    }
}

extension Model {
    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fetch a finished job's model from the cluster.")

        @OptionGroup var options: ServerOptions

        @Argument(help: "Job id, e.g. job-3.")
        var job: String

        @Option(name: .shortAndLong, help: "Where to write the model file.")
        var output: String

        func run() throws {
            let model = try options.fetchModel(job)
            do {
                try model.write(to: output)
            } catch {
                throw OperatingError("cannot write model to '\(output)': \(error)")
            }
            print("\(output)  weights_sha256: \(weightsSHA256(model.parameters))")
        }
    }
}

// MARK: Rendering

extension StatusReply {
    var table: String {
        var lines: [String] = []
        let c = cluster
        lines.append("cluster \(c.serverAddress)  up \(duration(c.uptimeSeconds))  \(c.workers.count) worker\(c.workers.count == 1 ? "" : "s")"
                     + (c.serverComputeSignature.isEmpty ? "" : "  server \(c.serverComputeSignature)"))
        if !c.workers.isEmpty {
            var rows = [["WORKER", "NAME", "ADDRESS", "STATE", "HEARTBEAT", "STEPS", "SAMPLES/S", "CHUNKS", "COMPUTE SIGNATURE"]]
            for w in c.workers {
                rows.append(["\(w.workerId)", w.name, w.address, w.excludedReason.isEmpty ? w.state.rawValue : "excluded",
                             String(format: "%.1fs ago", w.lastHeartbeatAgeSeconds), "\(w.stepsDone)",
                             compact(w.samplesPerSecond), "\(w.chunksHeld)", w.computeSignature])
            }
            lines.append(columns(rows))
            for w in c.workers where !w.excludedReason.isEmpty { lines.append("worker \(w.workerId) idle: \(w.excludedReason)") }
        }
        lines.append("")
        lines.append(JobStatus.table(jobs))
        lines += serverSignatureNotes
        return lines.joined(separator: "\n")
    }

    /// The server applies the updates with PSMath and the C library's `pow`: where its build
    /// target or C library differs from a running job's workers', `train --local` on a worker's host
    /// may not reproduce the job's bits. Say so under the job.
    var serverSignatureNotes: [String] {
        guard case let .success(server) = ComputeSignature.parse(cluster.serverComputeSignature) else { return [] }
        return jobs.filter { !$0.state.isFinal }.compactMap { j in
            guard case let .success(job) = ComputeSignature.parse(j.computeSignature),
                  let difference = ComputeSignature.serverDifference(server: server, workers: job) else { return nil }
            return "\(j.jobId): note: the server and the job's workers differ in what the updates compute with "
                + "(server \(difference)); the server applies them, so train --local on a worker's host may not give this job's bits"
        }
    }

    var json: String {
        var cluster = JSONObject()
        cluster.set("server_address", self.cluster.serverAddress)
        cluster.set("uptime_seconds", self.cluster.uptimeSeconds)
        cluster.set("server_compute_signature", self.cluster.serverComputeSignature)
        cluster.set("workers", raw: "[" + self.cluster.workers.map { w in
            var o = JSONObject()
            o.set("worker_id", Int(w.workerId))
            o.set("name", w.name)
            o.set("address", w.address)
            o.set("state", w.state.rawValue)
            o.set("threads", w.threads)
            o.set("last_heartbeat_age_seconds", w.lastHeartbeatAgeSeconds)
            o.set("samples_per_second", w.samplesPerSecond)
            o.set("job_id", w.jobId)
            o.set("steps_done", w.stepsDone)
            o.set("chunks_held", w.chunksHeld)
            o.set("compute_signature", w.computeSignature)
            o.set("excluded_reason", w.excludedReason)
            return o.text
        }.joined(separator: ", ") + "]")
        var o = JSONObject()
        o.set("cluster", raw: cluster.text)
        o.set("jobs", raw: "[" + jobs.map(\.json).joined(separator: ", ") + "]")
        return o.text
    }
}

extension JobStatus {
    var json: String {
        var o = JSONObject()
        o.set("job_id", jobId)
        o.set("name", name)
        o.set("state", state.rawValue)
        o.set("epoch", epoch)
        o.set("epochs", epochs)
        o.set("step", step)
        o.set("steps_per_epoch", stepsPerEpoch)
        o.set("train_loss", trainLoss)
        o.set("val_loss", validationLoss)
        o.set("val_accuracy", validationAccuracy)
        o.set("best_epoch", bestEpoch)
        o.set("samples_per_second", samplesPerSecond)
        o.set("eta_seconds", etaSeconds)
        o.set("workers", workers)
        o.set("message", message)
        o.set("compute_signature", computeSignature)
        o.set("excluded_workers", excludedWorkers)
        o.set("allow_mixed_signatures", allowMixedSignatures)
        o.set("checkpoint_step", checkpointStep)
        o.set("checkpoint_age_seconds", checkpointAgeSeconds)
        o.set("checkpoint_error", checkpointError)
        o.set("stall_reason", stallReason)
        o.set("consistency", consistency)
        o.set("staleness_counts", raw: "[" + stalenessCounts.map(String.init).joined(separator: ", ") + "]")
        return o.text
    }

    /// The notes on a job's newest checkpoint and on the last one that could not be written, if any.
    var checkpointNotes: [String] {
        var notes: [String] = []
        if let step = checkpointStep {
            notes.append("checkpoint: step \(step)" + (checkpointAgeSeconds.map { ", \(duration($0)) ago" } ?? ""))
        }
        if !checkpointError.isEmpty {
            // The server keeps training and keeps the newest checkpoint it did write.
            notes.append("checkpoint failed: \(checkpointError) (training goes on; "
                         + (checkpointStep == nil ? "there is no earlier checkpoint)" : "the previous checkpoint is kept)"))
        }
        return notes
    }

    /// Overall progress in [0, 1].
    var progress: Double {
        guard epochs > 0, stepsPerEpoch > 0 else { return state.isFinal && state != .failed ? 1 : 0 }
        if state == .completed || state == .stoppedEarly { return 1 }
        return min(1, (Double(max(epoch - 1, 0)) + Double(step) / Double(stepsPerEpoch)) / Double(epochs))
    }

    static func table(_ jobs: [JobStatus]) -> String {
        guard !jobs.isEmpty else { return "no jobs" }
        var rows = [["JOB", "NAME", "STATE", "EPOCH", "STEP", "PROGRESS", "LOSS", "VAL_LOSS", "VAL_ACC", "BEST", "SAMPLES/S", "ETA"]]
        for j in jobs {
            let width = 20
            let filled = Int(j.progress * Double(width))
            let bar = "[" + String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled) + "]"
            rows.append([j.jobId, j.name, j.state.rawValue, "\(j.epoch)/\(j.epochs)", "\(j.step)/\(j.stepsPerEpoch)",
                         bar + String(format: " %3.0f%%", j.progress * 100),
                         j.trainLoss.map { String(format: "%.4f", $0) } ?? "-",
                         j.validationLoss.map { String(format: "%.4f", $0) } ?? "-",
                         j.validationAccuracy.map { String(format: "%.4f", $0) } ?? "-",
                         j.bestEpoch > 0 ? "\(j.bestEpoch)" : "-",
                         j.samplesPerSecond > 0 ? compact(j.samplesPerSecond) : "-",
                         j.etaSeconds.map(duration) ?? "-"])
        }
        var text = columns(rows)
        for j in jobs where !j.message.isEmpty { text += "\n\(j.jobId): \(j.message)" }
        for j in jobs where !j.stallReason.isEmpty { text += "\n\(j.jobId): stalled: \(j.stallReason)" }
        for j in jobs { if let note = j.consistencyNote { text += "\n\(j.jobId): \(note)" } }
        for j in jobs where !j.state.isFinal {
            for note in j.checkpointNotes { text += "\n\(j.jobId): \(note)" }
            if j.allowMixedSignatures {
                text += "\n\(j.jobId): accepts workers of any compute signature; its result is not bitwise-reproducible"
            } else if !j.computeSignature.isEmpty {
                let idle = j.excludedWorkers > 0 ? "; \(j.excludedWorkers) worker\(j.excludedWorkers == 1 ? "" : "s") with another signature left idle" : ""
                text += "\n\(j.jobId): computes only on compute signature \(j.computeSignature)\(idle)"
            }
        }
        return text
    }
}

/// Left-aligned columns separated by two spaces (widths by character count).
func columns(_ rows: [[String]]) -> String {
    let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max()! }
    return rows.map { row in
        row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}

/// 3725 → "1h02m05s".
func duration(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
