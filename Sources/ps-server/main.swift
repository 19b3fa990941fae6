import ArgumentParser
import Foundation
import Logging
import PSControl
import PSCore
import PSLifecycle
import PSMath
import PSMetrics
import PSTrain
import PSServer
import PSTransport
import PSWire
import ServiceLifecycle

/// The parameter server and coordinator. Its parts run as services of one `ServiceGroup`; on SIGTERM
/// or SIGINT they stop in order (the server, then the metrics endpoint): a running job is left to resume
/// at the next start, and no file is left half-written.
struct PSServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps-server",
        abstract: "Hold a job's parameters, apply optimizer updates, and coordinate workers.")

    @Option(help: "Address to listen on, HOST:PORT.")
    var listen = "127.0.0.1:7070"

    @Option(help: "Folder for job models and results (jobs/JOB/model.psm, jobs/JOB/result.json).")
    var dataDir = "ps-data"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(help: "Seconds without a heartbeat before a worker is removed and its chunks reassigned.")
    var heartbeatTimeout = 10.0

    @Option(help: ArgumentHelp("Seconds a job's data may take to load before the job fails (a file stuck in a read, a hung network filesystem).",
                               valueName: "seconds"))
    var loadTimeout = CoordinatorLimits.loadSecondsDefault

    @Option(help: ArgumentHelp("Seconds a job may go without a step (with workers connected) before status and the log say why it is stalled.",
                               valueName: "seconds"))
    var stallSeconds = CoordinatorLimits.stallSecondsDefault

    @Option(help: "Key ranges the parameters are split into, each with its own optimizer (results are identical for any count).")
    var shards = 1

    @Option(help: ArgumentHelp(
        "Threads that apply each step's optimizer update while the workers wait (results are identical for any count).",
        valueName: "n"))
    var updateThreads = ServerDefaults.updateThreads

    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics, and the probes /healthz and /readyz (default: no endpoint).")
    var metricsListen: String?

    @Option(help: ArgumentHelp(
        "File holding the cluster's shared secret (default: $PS_AUTH_TOKEN_FILE): every worker and client must prove it holds the same token.",
        valueName: "file"))
    var authTokenFile: String?

    @Flag(help: "Listen on a non-loopback address with neither a token nor mutual TLS (only on a network where every host is trusted).")
    var insecure = false

    @Option(help: ArgumentHelp("PEM certificate (and intermediates): every connection is TLS. Default: $PS_TLS_CERT, else plaintext.",
                               valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("PEM private key of --tls-cert, unencrypted. Default: $PS_TLS_KEY.", valueName: "file"))
    var tlsKey: String?

    @Option(help: ArgumentHelp("PEM CA certificate(s): clients must present a certificate it signed (mutual TLS). Default: $PS_TLS_CA.",
                               valueName: "file"))
    var tlsCa: String?

    @Flag(help: "Serve --metrics-listen over HTTPS with the TLS certificate (with --tls-ca, scrapers need a certificate too).")
    var metricsTls = false

    var tlsFiles: TLSFiles {
        TLSFiles(certificate: tlsCert, key: tlsKey, ca: tlsCa, environment: ProcessInfo.processInfo.environment)
    }

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard heartbeatTimeout >= 0.5 && heartbeatTimeout <= 3600 else {
            throw ValidationError("--heartbeat-timeout must be between 0.5 and 3600 seconds")
        }
        guard loadTimeout >= 0.5 && loadTimeout <= 86_400 else {
            throw ValidationError("--load-timeout must be between 0.5 and 86400 seconds")
        }
        guard stallSeconds >= 0.5 && stallSeconds <= 86_400 else {
            throw ValidationError("--stall-seconds must be between 0.5 and 86400 seconds")
        }
        guard (1...1024).contains(shards) else { throw ValidationError("--shards must be between 1 and 1024") }
        guard (1...256).contains(updateThreads) else { throw ValidationError("--update-threads must be between 1 and 256") }
        do { _ = try parseAddress(listen) } catch { throw ValidationError("--listen: \(error)") }
        if let metricsListen {
            do { _ = try parseAddress(metricsListen) } catch { throw ValidationError("--metrics-listen: \(error)") }
        }
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
        let logger = Logger(label: "ps-server")
        // Before any BLAS call: may start this program again with a better kernel (BLASKernelChoice).
        let kernel = ComputeEnvironment.chooseKernel(program: "ps-server")
        BLAS.setThreads(1)  // the server runs no BLAS; one thread, as its signature shows
        logger.log(level: kernel.warning ? .warning : .info, "\(kernel.line)")
        let openFilesMax = raiseOpenFileLimit()
        if openFilesMax < TransportLimits.connectionsMax + serverFileDescriptorsSpare {
            logger.warning("""
                the open-file limit is below what the connection limits need: at \(openFilesMax) descriptors \
                new connections wait until others close (raise LimitNOFILE or ulimit -n)
                """,
                metadata: ["open_files_max": "\(openFilesMax)", "connectionsMax": "\(TransportLimits.connectionsMax)"])
        }
        let (host, port) = try parseAddress(listen)
        let token: AuthToken?
        let tls: ServerTLS?
        do {
            token = try AuthToken.load(flag: authTokenFile)
            tls = try ServerTLS(tlsFiles)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        // Mutual TLS authenticates clients as a token does; TLS without a CA only encrypts.
        let clientsAuthenticated = token != nil || tls?.requiresClientCertificate == true
        if let refusal = ListenPolicy.refusal(host: host, port: port, authenticated: clientsAuthenticated,
                                              tls: tls?.requiresClientCertificate == true, insecure: insecure) {
            logger.critical("cannot start: \(refusal)")
            throw ExitCode(1)
        }
        if insecure && !ListenPolicy.isLoopback(host) && !clientsAuthenticated {
            logger.warning("listening without authentication (--insecure): anyone who reaches \(listen) controls the cluster")
        }
        let runtime = ServerRuntime(options: .init(host: host, port: port, dataDirectory: dataDir,
                                                   heartbeatIntervalSeconds: min(1, heartbeatTimeout / 4),
                                                   heartbeatTimeoutSeconds: heartbeatTimeout, shardCount: shards,
                                                   updateThreads: updateThreads, authToken: token, tls: tls,
                                                   loadTimeoutSeconds: loadTimeout, stallSeconds: stallSeconds),
                                    logger: logger)
        runtime.observe(EventFileObserver(dataDirectory: dataDir, logger: logger).observe)
        // Stopped in reverse order: the server first, then the metrics endpoint that reports on it, then
        // systemd's notifier, whose watchdog pings go on while the server writes its last records.
        var services = [StopOnSignal { signal in logger.info("stopping", metadata: ["signal": "\(signal)"]) }.configuration]
        do {
            if let notifier = try SystemdNotifier(status: runtime.status, logger: logger, alive: { await runtime.coordinatorTurn() }) {
                services.append(.init(service: notifier))
            }
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        if let metricsListen {
            let registry = MetricsBootstrap.bootstrap()
            ServerMetrics(series: ServerSeries(registry: registry)).attach(to: runtime)
            let (host, port) = try parseAddress(metricsListen)
            do {
                let endpoint = try MetricsEndpoint.start(host: host, port: port, registry: registry, status: runtime.status,
                                                         tls: metricsTls ? tls : nil, logger: logger)
                services.append(.init(service: MetricsEndpointService(endpoint)))
            } catch {
                logger.critical("cannot start", metadata: ["metrics_listen": "\(metricsListen)", "error": "\(error)"])
                throw ExitCode(1)
            }
        }
        services.append(.init(service: runtime))
        do {
            try await ServiceGroup(configuration: .init(services: services, logger: logger)).run()
        } catch {
            logger.critical("cannot start", metadata: ["listen": "\(listen)", "error": "\(error)"])
            throw ExitCode(1)
        }
        logger.info("stopped")
    }
}

BuildTarget.requireSupportedCPU(program: "ps-server")
MemoryTuning.keepLargeBuffers()
// Parsed and run by hand: in main.swift, `await PSServerCommand.main()` resolves to ParsableCommand's
// synchronous main, which never calls the async `run()`.
do {
    let command = try PSServerCommand.parse()
    try await command.run()
} catch {
    PSServerCommand.exit(withError: error)
}

enum ServerDefaults {
    /// The update runs while every worker waits for the next weights: use the machine's cores, up to 4.
    /// Vectors under 2 × Parallel.elementsPerPartMin (262,144) are updated on one thread anyway.
    static let updateThreads = min(4, max(1, ProcessInfo.processInfo.activeProcessorCount))
}
