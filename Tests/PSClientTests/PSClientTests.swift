import Foundation
import Logging
import PSClient
import PSCore
import PSServer
import PSStorage
import PSTestSupport
import PSTrain
import PSTransport
import PSWire
import PSWorker
import XCTest

/// `PSClient` against a real coordinator in this process (the server runtime over loopback TCP, with
/// the in-memory store), and real workers where a job has to run.
final class PSClientTests: XCTestCase {
    let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
    private var server: ServerRuntime!
    private var store: MemoryRecordStore!
    private var workers: [WorkerRuntime] = []

    override func setUpWithError() throws {
        store = MemoryRecordStore()
        server = ServerRuntime(options: .init(host: "127.0.0.1", port: 0, dataDirectory: "/nonexistent/unused",
                                              heartbeatIntervalSeconds: 0.2, heartbeatTimeoutSeconds: 2),
                               logger: quiet, store: store)
        try server.start()
    }

    override func tearDown() {
        workers.forEach { $0.stop() }
        server.stop()
    }

    /// One epoch of a tiny network on the small MNIST slices: a second or so.
    func job(name: String = "client") -> JobSpec {
        smallMNISTJob(name: name, seed: 4, validationSplit: 0.2,
                      layers: [LayerSpec(units: 8, activation: .relu), LayerSpec(units: 10, activation: .softmax)],
                      optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1), batchSize: 50, chunks: 2, epochs: 1)
    }

    func connect() throws -> PSClient {
        try PSClient(server: server.address, name: "client-test")
    }

    func startWorker(_ name: String) {
        let worker = WorkerRuntime(options: .init(serverAddress: server.address, name: name), logger: quiet)
        worker.start()
        workers.append(worker)
    }

    func waitFor(_ what: String, timeout: Double = 30, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTFail("timed out waiting until \(what)")
    }

    /// Asserts that `body` fails with a refusal of `request` by this test's server, with `code` and `field`.
    func assertRefused<T>(_ body: @autoclosure () throws -> T, _ request: PSClientError.Request, _ code: ErrorCode,
                          field: String = "", says text: String, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            guard let error = error as? PSClientError else { return XCTFail("not a PSClientError: \(error)", line: line) }
            XCTAssertEqual(error.server, server.address, line: line)
            XCTAssertEqual(error.request, request, line: line)
            XCTAssertEqual(error.refusal?.code, code, "\(error)", line: line)
            XCTAssertEqual(error.refusal?.field, field, line: line)
            XCTAssertTrue(error.refusal?.message.contains(text) ?? false, "\(error)", line: line)
            XCTAssertTrue("\(error)".hasPrefix("\(request) on \(server.address): refused: "), "\(error)", line: line)
        }
    }

    // Submit, status, list, wait and model pull on a job one worker trains: typed answers that agree with
    // each other, and the server keeps the job's model and result in its store.
    func testJobFromSubmitToModel() throws {
        startWorker("w1")
        let client = try connect()
        defer { client.close() }
        XCTAssertEqual(client.serverName, "ps-server@\(server.address)")
        try waitFor("the worker registers") { try client.clusterStatus().workers.count == 1 }
        let cluster = try client.clusterStatus()
        XCTAssertEqual(cluster.serverAddress, server.address)
        XCTAssertEqual(cluster.workers.map(\.name), ["w1"])

        let jobId = try client.submit(job())
        XCTAssertEqual(jobId, "job-1")
        XCTAssertEqual(try client.jobStatus(jobId).name, "client")
        let result = try client.wait(for: jobId, timeoutSeconds: 120)
        XCTAssertEqual(result.jobId, jobId)
        XCTAssertEqual(result.state, .completed, result.message)
        XCTAssertEqual(result.weightsSHA256.count, 64)
        XCTAssertEqual(try client.wait(for: jobId), result, "waiting on a finished job answers at once")

        let status = try client.status(job: jobId)
        XCTAssertEqual(status.jobs.map(\.jobId), [jobId])
        XCTAssertEqual(status.jobs[0].state, .completed)
        XCTAssertEqual(try client.listJobs().map(\.jobId), [jobId])
        XCTAssertEqual(try client.status().jobs.map(\.state), [.completed])

        let model = try client.fetchModel(jobId)
        XCTAssertEqual(weightsSHA256(model.parameters), result.weightsSHA256)
        XCTAssertEqual(model.summary, result.summary)
        try waitFor("the job record is stored") { try store.jobRecord(jobId: jobId) != nil }
        XCTAssertEqual(try store.jobRecord(jobId: jobId), result)
        XCTAssertEqual(try store.model(jobId: jobId), model)
    }

    // Every request about a job the server does not know is refused as unknownJob, naming the job id
    // field, the request and the server; the connection stays usable.
    func testUnknownJobIsRefused() throws {
        let client = try connect()
        defer { client.close() }
        assertRefused(try client.status(job: "job-99"), .status(jobId: "job-99"), .unknownJob, field: "job_id",
                      says: "no job 'job-99'")
        assertRefused(try client.jobStatus("job-99"), .status(jobId: "job-99"), .unknownJob, field: "job_id",
                      says: "no job 'job-99'")
        assertRefused(try client.wait(for: "job-99"), .wait(jobId: "job-99"), .unknownJob, field: "job_id",
                      says: "no job 'job-99'")
        assertRefused(try client.cancel("job-99"), .cancel(jobId: "job-99"), .unknownJob, field: "job_id",
                      says: "no job 'job-99'")
        assertRefused(try client.fetchModel("job-99"), .fetchModel(jobId: "job-99"), .unknownJob, field: "job_id",
                      says: "no job 'job-99'")
        XCTAssertEqual(try client.listJobs(), [])
    }

    // A job cancelled while it waits for workers ends cancelled: its waiter is answered, a second cancel
    // and a model pull are refused, and its record is stored.
    func testCancelWhileWaitingForWorkers() throws {
        let client = try connect()
        defer { client.close() }
        let jobId = try client.submit(job())
        try waitFor("the job waits for workers") { try client.jobStatus(jobId).state == .waitingForWorkers }
        try client.cancel(jobId)
        let result = try client.wait(for: jobId)
        XCTAssertEqual(result.state, .cancelled)
        XCTAssertEqual(result.message, "cancelled by a client")
        XCTAssertNil(result.summary)
        assertRefused(try client.cancel(jobId), .cancel(jobId: jobId), .badRequest, field: "job_id",
                      says: "job \(jobId) has already ended (cancelled)")
        assertRefused(try client.fetchModel(jobId), .fetchModel(jobId: jobId), .badRequest, field: "job_id",
                      says: "job \(jobId) has no model (cancelled)")
        try waitFor("the job record is stored") { try store.jobRecord(jobId: jobId) != nil }
        XCTAssertEqual(try store.jobRecord(jobId: jobId), result)
        XCTAssertNil(try store.model(jobId: jobId))
    }

    // A client waiting when the server stops is not answered (the job is not over: a server restarted
    // on the same data resumes it): its wait fails as closed. Then the server is gone: a request on the
    // old connection fails as closed, and connecting again as unreachable, each naming the server; a
    // wait that reconnects gives up after its time, having said once that it lost the connection.
    func testServerGone() throws {
        let client = try connect()
        defer { client.close() }
        let jobId = try client.submit(job())
        try waitFor("the job waits for workers") { try client.jobStatus(jobId).state == .waitingForWorkers }
        let waiter = Unchecked(try connect())
        defer { waiter.value.close() }
        let answered = expectation(description: "the waiter is answered")
        let outcome = Unchecked<Result<JobResult, PSClientError>?>(nil)
        Thread.detachNewThread {
            outcome.value = Result { () throws(PSClientError) in try waiter.value.wait(for: jobId, timeoutSeconds: 30) }
            answered.fulfill()
        }
        Thread.sleep(forTimeInterval: 0.3)  // the wait request reaches the server
        let address = server.address
        server.stop()
        wait(for: [answered], timeout: 30)
        XCTAssertEqual(outcome.value.flatMap { if case let .failure(e) = $0 { e } else { nil } }, PSClientError(
            server: address, request: .wait(jobId: jobId), reason: .transport(.closed(address: address))))
        XCTAssertNil(try store.jobRecord(jobId: jobId), "the job has no result: it is not over")
        XCTAssertEqual(try store.journal(jobId: jobId)?.state.isFinal, false, "the journal still has it to run")

        XCTAssertThrowsError(try client.listJobs()) { error in
            guard let error = error as? PSClientError, case .transport(.closed) = error.reason else {
                return XCTFail("expected a closed connection, got \(error)")
            }
            XCTAssertEqual(error.server, address)
            XCTAssertEqual(error.request, .list)
            XCTAssertEqual("\(error)", "list jobs on \(address): the server closed the connection")
        }
        let refused = PSClientError(server: address, request: .connect,
                                    reason: .transport(.unreachable(address: address, reason: "connection refused")))
        XCTAssertThrowsError(try PSClient(server: address, name: "late")) { error in
            XCTAssertEqual(error as? PSClientError, refused)
            XCTAssertEqual("\(error)", "connect on \(address): cannot connect: connection refused")
        }
        var events: [PSClient.ReconnectEvent] = []
        let started = Date()
        XCTAssertThrowsError(try client.wait(for: jobId, reconnectSeconds: 1) { events.append($0) }) { error in
            XCTAssertEqual(error as? PSClientError, refused)
        }
        XCTAssertEqual(events, [.lost(PSClientError(server: address, request: .wait(jobId: jobId),
                                                    reason: .transport(.closed(address: address))))])
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 1)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "gave up long after its time")
    }

    // A wait with reconnection outlasts a server restart on the same store and port: it says it lost
    // the connection, reconnects to the new server (which took the job back from its journal), and
    // returns the job's result once a worker trains it. An unknown job is refused at once, not retried.
    func testWaitOutlastsARestart() throws {
        let client = try connect()
        defer { client.close() }
        let jobId = try client.submit(job())
        try waitFor("the job waits for workers") { try client.jobStatus(jobId).state == .waitingForWorkers }
        let started = Date()
        XCTAssertThrowsError(try client.wait(for: "job-99", reconnectSeconds: 600)) { error in
            XCTAssertEqual((error as? PSClientError)?.refusal?.code, .unknownJob)
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 2, "a refusal was retried")

        let waiter = Unchecked(try connect())
        defer { waiter.value.close() }
        let events = Unchecked<[PSClient.ReconnectEvent]>([])
        let lock = NSLock()
        let answered = expectation(description: "the waiter is answered")
        let outcome = Unchecked<Result<JobResult, PSClientError>?>(nil)
        Thread.detachNewThread {
            outcome.value = Result { () throws(PSClientError) in
                try waiter.value.wait(for: jobId, reconnectSeconds: 60) { event in lock.withLock { events.value.append(event) } }
            }
            answered.fulfill()
        }
        Thread.sleep(forTimeInterval: 0.3)  // the wait request reaches the server
        let address = server.address
        let port = try XCTUnwrap(Int(address.split(separator: ":").last ?? ""))
        server.stop()
        try waitFor("the waiter notices") { lock.withLock { !events.value.isEmpty } }
        server = ServerRuntime(options: .init(host: "127.0.0.1", port: port, dataDirectory: "/nonexistent/unused",
                                              heartbeatIntervalSeconds: 0.2, heartbeatTimeoutSeconds: 2),
                               logger: quiet, store: store)
        try server.start()
        try waitFor("the waiter reconnects") { lock.withLock { events.value.count == 2 } }
        startWorker("w1")
        wait(for: [answered], timeout: 120)
        let result = try XCTUnwrap(try outcome.value?.get())
        XCTAssertEqual(result.jobId, jobId)
        XCTAssertEqual(result.state, .completed, result.message)
        XCTAssertEqual(lock.withLock { events.value }, [
            .lost(PSClientError(server: address, request: .wait(jobId: jobId), reason: .transport(.closed(address: address)))),
            .reconnected,
        ])
    }
}

/// Hands a value to another thread where the test orders the accesses itself (an expectation's wait).
final class Unchecked<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// A data directory that refuses journal entries (a full or read-only disk): a submission that cannot be
/// recorded is refused with the reason and never runs.
final class UnrecordableSubmissionTests: XCTestCase {
    /// The in-memory store, except that every journal entry fails to write.
    final class NoJournalStore: RecordStore, @unchecked Sendable {
        let inner = MemoryRecordStore()
        func open() throws(StoreError) {}
        func put(_ bytes: [UInt8], at key: RecordKey) throws(StoreError) {
            if key.kind == .journal { throw StoreError(path: location(of: key), "cannot write: No space left on device") }
            try inner.put(bytes, at: key)
        }
        func get(_ key: RecordKey) throws(StoreError) -> [UInt8]? { try inner.get(key) }
        func list(_ kind: RecordKind) throws(StoreError) -> [String] { try inner.list(kind) }
        func entries(_ kind: RecordKind, of jobId: String) throws(StoreError) -> [String] { try inner.entries(kind, of: jobId) }
        func delete(_ key: RecordKey) throws(StoreError) { try inner.delete(key) }
        func setAside(_ key: RecordKey) throws(StoreError) -> String { try inner.setAside(key) }
        func discardUnfinished(_ kind: RecordKind, of jobId: String) throws(StoreError) {}
        func jobIds() throws(StoreError) -> [String] { try inner.jobIds() }
        func location(of key: RecordKey) -> String { inner.location(of: key) }
    }

    func testSubmissionThatCannotBeJournaledIsRefused() throws {
        let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let server = ServerRuntime(options: .init(host: "127.0.0.1", port: 0, dataDirectory: "/nonexistent/unused"),
                                   logger: quiet, store: NoJournalStore())
        try server.start()
        defer { server.stop() }
        let client = try PSClient(server: server.address, name: "test")
        defer { client.close() }
        let spec = smallMNISTJob(name: "unrecorded", seed: 1, validationSplit: 0.2,
                                 layers: [LayerSpec(units: 10, activation: .softmax)],
                                 optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1), batchSize: 50, chunks: 1, epochs: 1)
        XCTAssertThrowsError(try client.submit(spec)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("could not be recorded") && text.contains("No space left on device"), text)
        }
        let deadline = Date().addingTimeInterval(10)
        var jobs: [JobStatus] = []
        while Date() < deadline {
            jobs = try client.listJobs()
            if jobs.first?.state.isFinal == true { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertEqual(jobs.map(\.state), [.failed], "the job never runs")
        XCTAssertTrue(jobs.first?.message.contains("could not be recorded") == true, jobs.first?.message ?? "")
    }
}
