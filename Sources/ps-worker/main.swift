import ArgumentParser
import Foundation
import Logging
import PSCore
import PSData
import PSLifecycle
import PSMath
import PSMetrics
import PSTrain
import PSTransport
import PSWire
import PSWorker
import ServiceLifecycle

/// A stateless worker: computes the gradients of the chunks it is assigned. Start or kill any number
/// at any time; the server reassigns their work. Its parts run as services of one `ServiceGroup`; on
/// SIGTERM or SIGINT the worker disconnects cleanly, then the metrics endpoint closes.
struct PSWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps-worker",
        abstract: "Compute gradients for a ps-server cluster.")

    @Option(help: "Coordinator address, HOST:PORT.")
    var server = ProcessInfo.processInfo.environment["PS_SERVER"] ?? "127.0.0.1:7070"

    @Option(help: "Name shown in status (default: HOST-PID).")
    var name = "\(ProcessInfo.processInfo.hostName)-\(getpid())"

    @Option(help: "OpenBLAS threads. 1 (the default) keeps results independent of thread scheduling.")
    var threads = 1

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics, and the probes /healthz and /readyz (default: no endpoint).")
    var metricsListen: String?

    @Option(help: ArgumentHelp("File holding the cluster's shared secret (default: $PS_AUTH_TOKEN_FILE).", valueName: "file"))
    var authTokenFile: String?

    @Option(help: ArgumentHelp(
        "A folder job data may be read from (repeatable); a job whose data files resolve outside every one is refused. Default: anywhere.",
        valueName: "dir"))
    var dataRoot: [String] = []

    @Option(help: ArgumentHelp("PEM certificate (and intermediates) to present to a server that requires one. Default: $PS_TLS_CERT.",
                               valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("PEM private key of --tls-cert, unencrypted. Default: $PS_TLS_KEY.", valueName: "file"))
    var tlsKey: String?

    @Option(help: ArgumentHelp("PEM CA certificate(s) the server's certificate must chain to. Any --tls option makes the connection TLS. Default: $PS_TLS_CA.",
                               valueName: "file"))
    var tlsCa: String?

    @Option(help: ArgumentHelp("DNS name to check the server's certificate for, instead of the host in --server.", valueName: "name"))
    var tlsServerName: String?

    @Flag(help: "Serve --metrics-listen over HTTPS with --tls-cert (which must then be valid as a server certificate).")
    var metricsTls = false

    var tlsFiles: TLSFiles {
        TLSFiles(certificate: tlsCert, key: tlsKey, ca: tlsCa, serverName: tlsServerName,
                 environment: ProcessInfo.processInfo.environment)
    }

    func validate() throws {
        guard (1...256).contains(threads) else { throw ValidationError("--threads must be between 1 and 256") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        do { _ = try parseAddress(server) } catch { throw ValidationError("--server: \(error)") }
        if let metricsListen {
            do { _ = try parseAddress(metricsListen) } catch { throw ValidationError("--metrics-listen: \(error)") }
        }
        guard !name.isEmpty && name.count <= 128 else { throw ValidationError("--name must be 1 to 128 characters") }
        if metricsTls && (metricsListen == nil || tlsFiles.certificate == nil) {
            throw ValidationError("--metrics-tls needs --metrics-listen and --tls-cert")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var named = Logger(label: "ps-worker")
        named[metadataKey: "name"] = "\(name)"
        let logger = named
        // Before any BLAS call: may start this program again with a better kernel (BLASKernelChoice).
        let kernel = ComputeEnvironment.chooseKernel(program: "ps-worker")
        BLAS.setThreads(threads)  // before the line: the thread count is part of the signature
        logger.log(level: kernel.warning ? .warning : .info, "\(kernel.line)")
        let token: AuthToken?
        let tls: ClientTLS?, metricsTLS: ServerTLS?
        let roots: DataRoots
        do {
            token = try AuthToken.load(flag: authTokenFile)
            tls = try ClientTLS(tlsFiles)
            var served = tlsFiles
            served.serverName = nil
            metricsTLS = metricsTls ? try ServerTLS(served) : nil
            roots = try DataRoots(dataRoot)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        if !roots.roots.isEmpty { logger.info("job data only from \(roots.roots.joined(separator: ", "))") }
        let registry = metricsListen.map { _ in MetricsBootstrap.bootstrap() }
        let runtime = WorkerRuntime(options: .init(serverAddress: server, name: name, threads: threads, authToken: token,
                                                   dataRoots: roots, tls: tls),
                                    logger: logger, metrics: registry.map { WorkerMetrics(registry: $0) })
        // Stopped in reverse order: the worker first, then the metrics endpoint that reports on it, then
        // systemd's notifier.
        var services = [StopOnSignal { _ in logger.info("stopping") }.configuration]
        do {
            if let notifier = try SystemdNotifier(status: runtime.status, logger: logger, alive: { await runtime.controlTurn() }) {
                services.append(.init(service: notifier))
            }
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        if let metricsListen, let registry {
            let (host, port) = try parseAddress(metricsListen)
            do {
                let endpoint = try MetricsEndpoint.start(host: host, port: port, registry: registry, status: runtime.status,
                                                         tls: metricsTLS,
                                                         logger: logger)
                services.append(.init(service: MetricsEndpointService(endpoint)))
            } catch {
                logger.critical("cannot start", metadata: ["metrics_listen": "\(metricsListen)", "error": "\(error)"])
                throw ExitCode(1)
            }
        }
        services.append(.init(service: runtime))
        try await ServiceGroup(configuration: .init(services: services, logger: logger)).run()
    }
}

BuildTarget.requireSupportedCPU(program: "ps-worker")
MemoryTuning.keepLargeBuffers()
// Parsed and run by hand: in main.swift, `await PSWorkerCommand.main()` resolves to ParsableCommand's
// synchronous main, which never calls the async `run()`.
do {
    let command = try PSWorkerCommand.parse()
    try await command.run()
} catch {
    PSWorkerCommand.exit(withError: error)
}
