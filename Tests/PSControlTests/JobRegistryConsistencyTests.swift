import XCTest
import PSCore
@testable import PSControl
import PSWire
import PSTestSupport

/// What the registry reports of a job's consistency mode in its status.
final class JobRegistryConsistencyTests: XCTestCase {
    func testStatusCarriesTheModeAndTheStalenessCounts() {
        // Proves status names the spec's mode as Consistency.description writes it, and carries the
        // staleness counts the step code records on the job (none until it does).
        var registry = JobRegistry(firstJobNumber: 1)
        for consistency in [Consistency.sync, .delayed(2), .ssp(3), .async] {
            var spec = smallMNISTJob(name: "c", seed: 1, validationSplit: 0.1,
                                     layers: [LayerSpec(units: 10, activation: .softmax)],
                                     optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1),
                                     batchSize: 10, chunks: 1, epochs: 1)
            spec.training.consistency = consistency
            let id = registry.add(spec)
            let status = registry.status(of: id, workers: 0, now: 0)
            XCTAssertEqual(status.consistency, consistency.description)
            XCTAssertEqual(status.stalenessCounts, [])
            registry.jobs[id]!.stalenessCounts = [4, 1]
            XCTAssertEqual(registry.status(of: id, workers: 0, now: 0).stalenessCounts, [4, 1])
        }
    }
}
