import Foundation
import XCTest

/// What the server reads of a job's data, with the real binaries: it needs the split counts and the
/// transform, not the samples (the workers compute on those), so preparing the MNIST example must not
/// build its 60,000 × 784 floats. Before `DataLoader.shape` the server's peak resident set reached
/// ~430 MiB (the pixels as floats, the training split gathered into a second array, the test set).
final class ServerPrepareEndToEndTests: XCTestCase {
    /// Peak memory the server may reach while preparing the MNIST example (shape measured ~95 MiB:
    /// the process itself and one inflated file at a time; a full load ~430 MiB).
    private let preparePeakRSSMax = 250 << 20

    func testPreparingMNISTDoesNotBuildTheFeatures() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        let submitted = try cluster.psctl(["submit", "examples/mnist-mlp.yaml"])
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        // Logged once the server has prepared the job (counts known), before any worker is needed.
        _ = try cluster.waitForServerLog("job started")
        XCTAssertTrue(cluster.log("server").contains("steps_per_epoch=422 test=10000 train=54000 validation=6000"),
                      "the counts are the full load's: \(cluster.log("server"))")
        let peak = Binaries.peakRSS(cluster.server.processIdentifier)
        XCTAssertGreaterThan(peak, 0, "the server's /proc status has no VmHWM")
        print("ServerPrepareEndToEndTests: server peak RSS (VmHWM) after preparing MNIST: \(peak >> 20) MiB")
        XCTAssertLessThan(peak, preparePeakRSSMax)
    }
}
