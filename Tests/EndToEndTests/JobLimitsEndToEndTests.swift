import Foundation
import PSCore
import PSTestSupport
import PSWire
import XCTest

/// Jobs at the edges of what a server keeps and sends: a model too large for one frame is refused at
/// submit (by psctl and by the server itself), and `model pull` serves any completed job whose model is
/// on disk, however many jobs ran after it.
final class JobLimitsEndToEndTests: XCTestCase {
    // A 784-20000-10 model (15.9 M parameters, over Limits.parametersMax) would validate against the old
    // 268 M limit and then never be sendable. psctl refuses it naming the field, the count and the limit;
    // a raw client that skips psctl's checks gets the same refusal from the server, which stays healthy.
    func testModelTooLargeForAFrameIsRefusedAtSubmit() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        let out = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml", "--set", "model.layers[0].units=20000"])
        XCTAssertEqual(out.status, 1, out.stderr)
        for part in ["model", "15900010 parameters", "at most \(Limits.parametersMax)", "64 MiB frame"] {
            XCTAssertTrue(out.stderr.contains(part), "'\(part)' missing from: \(out.stderr)")
        }

        let spec = smallMNISTJob(name: "too-large", seed: 1, validationSplit: 0.2,
                                 layers: [LayerSpec(units: 20_000, activation: .relu), LayerSpec(units: 10, activation: .softmax)],
                                 optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1), batchSize: 64, chunks: 2, epochs: 1)
        let peer = try RawPeer(address: cluster.address)
        try peer.send(.hello(Hello(role: .client, name: "raw")))
        XCTAssertNotNil(peer.read(until: { if case .helloOk = $0 { return true }; return false }))
        try peer.send(.submitJob(spec), requestId: 2)
        let refusal = try XCTUnwrap(peer.readError(), "the server accepted a model it cannot send")
        XCTAssertEqual(refusal.code, .invalidSpec)
        XCTAssertTrue(refusal.message.contains("at most \(Limits.parametersMax)"), refusal.message)
        XCTAssertEqual(refusal.field, "model")

        let list = try cluster.psctl(["list", "--json"])
        XCTAssertEqual(list.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "[]", "nothing was queued")
        XCTAssertFalse(cluster.log("server").contains("cannot encode message"))
    }

    // 18 one-epoch jobs in a row: the server keeps the newest 16 models in memory, yet `model pull` of
    // the first (read from the data directory) gives the same model `psctl wait` reported.
    func testModelPullServesAnOldJobFromDisk() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("w")
        let jobCount = 16 + 2
        var first: (id: String, sha: String)?
        for i in 0..<jobCount {
            let out = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml", "--set", "training.epochs=1",
                                         "--set", "seed=\(i + 1)", "--wait", "--json"])
            XCTAssertEqual(out.status, 0, out.stderr)
            if first == nil {
                let result = try Binaries.json(out)
                first = (try XCTUnwrap(result["job_id"] as? String), try XCTUnwrap(result["weights_sha256"] as? String))
            }
        }
        let (job, sha) = try XCTUnwrap(first)
        let model = cluster.directory + "/first.model"
        let pull = try cluster.psctl(["model", "pull", job, "-o", model])
        XCTAssertEqual(pull.status, 0, pull.stderr)
        let info = try Binaries.run("psctl", ["model", "info", model, "--json"])
        XCTAssertEqual(try Binaries.json(info)["weights_sha256"] as? String, sha)
        // And a job that never existed is named in the error.
        let missing = try cluster.psctl(["model", "pull", "job-999", "-o", cluster.directory + "/none.model"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("job-999"), missing.stderr)
    }
}
