import Foundation
import Logging
import PSClient
import PSCore
import PSServer
import PSTestSupport
import PSWire
import PSWorker
import ServiceLifecycle
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The server and a worker as services of one `ServiceGroup`, the way ps-server and ps-worker run
/// them: a graceful shutdown of the group (what SIGTERM starts) stops them in order.
final class ServiceGroupTests: XCTestCase {
    let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    // The worker disconnects, then the server stops: the client waiting on the running job loses its
    // connection without a result (the job resumes at the next start: its journal entry in the data
    // directory has it running, and no result is recorded), `run()` returns, and the port is closed.
    func testGracefulShutdownStopsInOrder() async throws {
        let address = "127.0.0.1:\(try freePort())"
        let (host, port) = (String(address.split(separator: ":")[0]), Int(address.split(separator: ":")[1])!)
        let dir = NSTemporaryDirectory() + "ps-services-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = ServerRuntime(options: .init(host: host, port: port, dataDirectory: dir,
                                                  heartbeatIntervalSeconds: 0.2, heartbeatTimeoutSeconds: 2),
                                   logger: quiet)
        let worker = WorkerRuntime(options: .init(serverAddress: address, name: "w"), logger: quiet)
        let group = ServiceGroup(configuration: .init(services: [server, worker], logger: quiet))
        let running = Task { try await group.run() }

        let client = try await connected(to: address)
        defer { client.value.close() }
        try await until("the worker registers") { try client.value.clusterStatus().workers.count == 1 }
        let spec = smallMNISTJob(name: "services", seed: 9, validationSplit: 0.2,
                                 layers: [LayerSpec(units: 32, activation: .tanh), LayerSpec(units: 10, activation: .softmax)],
                                 optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.05), batchSize: 40, chunks: 5, epochs: 200)
        let jobId = try client.value.submit(spec)
        try await until("the job runs") { try client.value.jobStatus(jobId).state == .running }

        let waiter = Unchecked(try PSClient(server: address, name: "waiter"))
        defer { waiter.value.close() }
        let answer = Task.detached {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JobResult, any Error>) in
                Thread.detachNewThread { continuation.resume(with: Result { try waiter.value.wait(for: jobId, timeoutSeconds: 60) }) }
            }
        }
        try await Task.sleep(for: .milliseconds(300))  // the wait request reaches the server
        await group.triggerGracefulShutdown()
        try await running.value

        do {
            let result = try await answer.value
            XCTFail("the wait was answered: \(result)")
        } catch let error as PSClientError {
            guard case .transport(.closed) = error.reason else { return XCTFail("\(error)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/jobs/\(jobId)/result.json"))
        let journal = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/jobs/\(jobId)/job.json")))
        let states = ((journal as? [String: Any])?["states"] as? [[String: Any]])?.compactMap { $0["state"] as? String }
        XCTAssertEqual(states?.first, "submitted")
        XCTAssertTrue(["running", "waiting_for_workers"].contains(states?.last ?? ""), "\(states ?? [])")
        XCTAssertThrowsError(try PSClient(server: address, name: "late"), "the listener is closed")
    }

    /// Connects once the server listens.
    private func connected(to address: String) async throws -> Unchecked<PSClient> {
        for _ in 0..<500 {
            if let client = try? PSClient(server: address, name: "test") { return Unchecked(client) }
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTFail("the server never listened on \(address)")
        throw POSIXError(.ETIMEDOUT)
    }

    private func until(_ what: String, timeout: Double = 30, _ condition: () throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        XCTFail("timed out waiting until \(what)")
    }

    /// A port nothing listens on right now (bound to port 0 and closed; the server binds with SO_REUSEADDR).
    private func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

/// Hands a value to another task or thread where the test orders the accesses itself.
final class Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
