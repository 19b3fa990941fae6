import Foundation
import Logging
import PSClient
import PSCore
import PSData
import PSServer
import PSTrain
import PSWire
import PSWorker
import PSTestSupport
import XCTest

/// A server runtime and several worker runtimes in this process, talking over loopback TCP: the real
/// transport, coordinator and worker code, without separate processes.
final class InProcessClusterTests: XCTestCase {
    let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    func job(epochs: Int = 2) -> JobSpec {
        smallMNISTJob(name: "in-process", seed: 9, validationSplit: 0.2,
                      layers: [LayerSpec(units: 32, activation: .tanh, dropout: 0.1), LayerSpec(units: 10, activation: .softmax)],
                      optimizer: OptimizerSpec(kind: .momentum, learningRate: 0.05, momentum: 0.9),
                      batchSize: 40, chunks: 5, epochs: epochs)
    }

    func startServer() throws -> (ServerRuntime, String) {
        let dir = NSTemporaryDirectory() + "ps-inprocess-\(UUID().uuidString)"
        let server = ServerRuntime(options: .init(host: "127.0.0.1", port: 0, dataDirectory: dir,
                                                  heartbeatIntervalSeconds: 0.2, heartbeatTimeoutSeconds: 2, shardCount: 2),
                                   logger: quiet)
        try server.start()
        return (server, dir)
    }

    func worker(_ address: String, _ name: String) -> WorkerRuntime {
        let w = WorkerRuntime(options: .init(serverAddress: address, name: name), logger: quiet)
        w.start()
        return w
    }

    func workerCount(_ client: PSClient) throws -> Int {
        try client.clusterStatus().workers.count
    }

    func waitFor(_ what: String, timeout: Double = 30, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.002)
        }
        XCTFail("timed out waiting until \(what)")
    }

    // Three workers train a job to the local trainer's exact weights, and the model file lands in the data directory.
    func testThreeWorkersMatchLocal() throws {
        let spec = job()
        let local = LocalTrainer(spec: spec, data: try DataLoader.load(spec)).run()
        let (server, dir) = try startServer()
        defer { server.stop() }
        let workers = (1...3).map { worker(server.address, "w\($0)") }
        defer { workers.forEach { $0.stop() } }
        let client = try PSClient(server: server.address, name: "test")
        defer { client.close() }
        try waitFor("3 workers") { try workerCount(client) == 3 }
        let jobId = try client.submit(spec)
        let result = try client.wait(for: jobId, timeoutSeconds: 120)
        XCTAssertEqual(result.state, .completed, result.message)
        XCTAssertEqual(result.weightsSHA256, local.weightsSHA256)
        XCTAssertEqual(result.summary?.testAccuracy, local.model.summary.testAccuracy)
        try waitFor("the model file") {
            FileManager.default.fileExists(atPath: ServerRuntime.modelPath(dataDirectory: dir, jobId: jobId))
        }
        let saved = try TrainedModel.read(path: ServerRuntime.modelPath(dataDirectory: dir, jobId: jobId))
        XCTAssertEqual(weightsSHA256(saved.parameters), local.weightsSHA256)
    }

    // Workers leaving cleanly and joining while a job runs, and the job waiting with no worker at all:
    // the result is still the local trainer's, bit for bit.
    func testChurnKeepsTheBits() throws {
        let spec = job(epochs: 25)  // 500 steps: long enough that every change below lands mid-job
        let local = LocalTrainer(spec: spec, data: try DataLoader.load(spec)).run()
        let (server, _) = try startServer()
        defer { server.stop() }
        let client = try PSClient(server: server.address, name: "test")
        defer { client.close() }
        let jobId = try client.submit(spec)
        // No workers yet: the job waits and says so.
        try waitFor("waiting for workers") {
            try client.status(job: jobId).jobs.first?.state == .waitingForWorkers
        }
        var live = [worker(server.address, "a"), worker(server.address, "b")]
        var joined = 2
        func step() throws -> Int {
            let j = try client.status(job: jobId).jobs[0]
            return j.state.isFinal ? Int.max : (j.epoch - 1) * j.stepsPerEpoch + j.step
        }
        for target in [40, 120, 250, 380] {
            try waitFor("step \(target)") { try step() >= target }
            XCTAssertLessThan(try step(), 500, "the job ended before worker change at step \(target)")
            live.removeFirst().stop()
            joined += 1
            live.append(worker(server.address, "w\(joined)"))
        }
        defer { live.forEach { $0.stop() } }
        let result = try client.wait(for: jobId, timeoutSeconds: 120)
        XCTAssertEqual(result.state, .completed, result.message)
        XCTAssertEqual(result.weightsSHA256, local.weightsSHA256)
    }
}
