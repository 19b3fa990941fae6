import Foundation
import PSCore
import XCTest

/// Fast and exact on every CPU, with the real binaries: the start-up kernel choice, the numeric tests
/// under every kernel this CPU runs, and a cluster whose workers compute with different kernels.
final class ComputeSignatureEndToEndTests: XCTestCase {
    /// An `OPENBLAS_CORETYPE` the machine sets: never overridden in tests (older OpenBLAS computes
    /// wrong results with some kernels on some CPUs, which is why machines set it).
    static var machineCoretype: String? {
        ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The kernels this CPU runs that matter: OpenBLAS's fallback (Prescott), Haswell, and the best
    /// kernel the start-up choice would pick (SkylakeX too when the best is Cooperlake). Only the
    /// machine's own when it sets `OPENBLAS_CORETYPE`.
    static var kernels: [String] {
        if let machineCoretype { return [machineCoretype] }
        let flags = BuildTarget.cpuFlags() ?? []
        guard let best = BLASKernelChoice.bestKernel(cpuFlags: flags) else { return ["Prescott"] }
        var list = ["Prescott", "Haswell"]
        if best == "Cooperlake" { list.append("SkylakeX") }
        if !list.contains(best) { list.append(best) }
        return list
    }

    /// A kernel other than the one our binaries use here, for "a worker on another host": Prescott,
    /// the generic SSE3 kernel every x86-64 CPU runs correctly (Haswell where Prescott is ours).
    func otherKernel() throws -> String {
        let ours = try XCTUnwrap(try Binaries.signature()["blas_kernel"] as? String)
        guard ours.lowercased() == "prescott" else { return "Prescott" }
        try XCTSkipIf(BLASKernelChoice.bestKernel(cpuFlags: BuildTarget.cpuFlags() ?? []) == nil,
                      "this CPU runs only the Prescott kernel: no second signature to start a worker with")
        return "Haswell"
    }

    // The gradient checks, the optimizer formulas and the local trainer's determinism (including the
    // split across workers) pass under every kernel this CPU runs: a kernel that computes wrong
    // results is caught. Each kernel runs the tests in a child test process with OPENBLAS_CORETYPE set,
    // since OpenBLAS reads it only when the library loads.
    func testNumericTestsPassUnderEveryKernel() throws {
        let suites = ["PSMathTests.GradientCheckTests", "PSMathTests.OptimizerTests", "PSTrainTests.TrainerTests",
                      "PSControlTests.CoordinatorExactnessTests/testSameBitsAsLocalForOneTwoThreeWorkers"]
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        if let machineCoretype = Self.machineCoretype {
            print("OPENBLAS_CORETYPE=\(machineCoretype) is set on this machine: only that kernel is tested, never another")
        }
        for kernel in Self.kernels {
            let out = try Binaries.runSystem(bundle, [suites.joined(separator: ",")], environment: ["OPENBLAS_CORETYPE": kernel])
            let summary = out.stdout.split(separator: "\n").last { $0.contains("Executed") } ?? "no summary"
            print("kernel \(kernel): \(summary.trimmingCharacters(in: .whitespaces))")
            XCTAssertEqual(out.status, 0, "kernel \(kernel):\n\(out.stdout.suffix(3000))\n\(out.stderr.suffix(2000))")
            XCTAssertTrue(summary.contains("with 0 failures") && !summary.contains("Executed 0 tests"), "kernel \(kernel): \(summary)")
        }
    }

    // A fallback pick on a CPU with AVX2 or AVX-512 restarts psctl with the best kernel (the pick is
    // simulated here: OpenBLAS knows this CPU), logged with its reason; the weights equal those of a
    // run where the user set that kernel; the user's own OPENBLAS_CORETYPE is kept; the switch turns
    // the choice off with a warning; the model records the signature it was computed with.
    func testStartUpKernelChoice() throws {
        let spec = "examples/mnist-small-sgd.yaml"
        if let machineCoretype = Self.machineCoretype {
            // The machine's variable is the user's: respected even when a fallback pick is simulated.
            let out = try Binaries.run("psctl", ["train", "--local", spec, "--output", "/dev/null"],
                                       environment: ["PS_BLAS_TEST_PICKED": "Prescott"])
            XCTAssertEqual(out.status, 0, out.stderr)
            XCTAssertTrue(out.stderr.contains("(OPENBLAS_CORETYPE=\(machineCoretype) set in the environment"), out.stderr)
            throw XCTSkip("OPENBLAS_CORETYPE=\(machineCoretype) is set on this machine: checked that it is kept; the restart is not exercised")
        }
        let best = try XCTUnwrap(try Binaries.signature()["cpu_best_kernel"] as? String)
        try XCTSkipIf(best == "none", "this CPU has no AVX2: OpenBLAS's pick always stays")
        func train(_ env: [String: String]) throws -> (json: [String: Any], stderr: String) {
            let out = try Binaries.run("psctl", ["train", "--local", spec, "--json", "--output", "/dev/null"], environment: env)
            XCTAssertEqual(out.status, 0, out.stderr)
            return (try Binaries.json(out), out.stderr)
        }
        let chosen = try train(["PS_BLAS_TEST_PICKED": "Prescott"])
        XCTAssertTrue(chosen.stderr.contains("psctl: BLAS kernel \(best) (chosen at start-up: OpenBLAS picked its Prescott fallback"),
                      chosen.stderr)
        let signatures = try XCTUnwrap(chosen.json["compute_signatures"] as? [String])
        XCTAssertEqual(signatures.count, 1)
        XCTAssertTrue(signatures[0].contains("/\(best)/"), "\(signatures)")
        XCTAssertEqual(chosen.json["bitwise_reproducible"] as? Bool, true)

        let user = try train(["OPENBLAS_CORETYPE": best])
        XCTAssertTrue(user.stderr.contains("BLAS kernel \(best) (OPENBLAS_CORETYPE=\(best) set in the environment)"), user.stderr)
        XCTAssertEqual(chosen.json["weights_sha256"] as? String, user.json["weights_sha256"] as? String)

        let slow = try train(["OPENBLAS_CORETYPE": "Prescott", "PS_BLAS_TEST_PICKED": "Prescott"])
        XCTAssertTrue(slow.stderr.contains("BLAS kernel Prescott (OPENBLAS_CORETYPE=Prescott set in the environment)"), slow.stderr)
        XCTAssertTrue((slow.json["compute_signatures"] as? [String])?.first?.contains("/Prescott/") ?? false)

        let off = try train(["PS_BLAS_TEST_PICKED": "Prescott", "PS_BLAS_KERNEL_CHOICE": "off"])
        XCTAssertTrue(off.stderr.contains("psctl: warning: BLAS kernel") && off.stderr.contains("PS_BLAS_KERNEL_CHOICE=off"), off.stderr)

        // train --local, the cluster's reference, says when it cannot reproduce a spec's named signature.
        let other = "openblas-0.3.21/Haswell/portable/glibc-1.0/threads-1"
        let named = try Binaries.run("psctl", ["train", "--local", spec, "--output", "/dev/null",
                                               "--set", "training.compute_signature=\(other)"])
        XCTAssertEqual(named.status, 0, named.stderr)
        XCTAssertTrue(named.stderr.contains("psctl: warning: the spec's training.compute_signature is \(other), this process computes with "),
                      named.stderr)

        let bad = try Binaries.run("psctl", ["train", "--local", spec, "--output", "/dev/null"], environment: ["PS_BLAS_KERNEL_CHOICE": "maybe"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("PS_BLAS_KERNEL_CHOICE='maybe' is not 'auto' or 'off'"), bad.stderr)
    }

    // A 2-worker bitwise job where the second worker runs another kernel: that worker gets no chunks,
    // is told why, status says so (job and worker), the daemons log their kernel, and the weights equal
    // the local trainer's. With allow_mixed_signatures both compute, the job completes and its result
    // lists both signatures as not bitwise-reproducible.
    func testWorkerWithAnotherKernel() throws {
        let other = try otherKernel()
        let overrides = ["training.epochs=1"]
        let local = try Reference.localSHA("examples/mnist-mlp.yaml", overrides)
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("same")
        try cluster.startWorker("odd", environment: ["OPENBLAS_CORETYPE": other])
        let submit = try cluster.psctl(["submit", "examples/mnist-mlp.yaml", "--set", overrides[0]])
        XCTAssertEqual(submit.status, 0, submit.stderr)
        let job = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try cluster.waitUntil("the job leaves the odd worker idle", timeout: 60) {
            (try cluster.jobStatus(job)["excluded_workers"] as? Int) == 1
        }
        let status = try cluster.status()
        let workers = try XCTUnwrap((status["cluster"] as? [String: Any])?["workers"] as? [[String: Any]])
        let odd = try XCTUnwrap(workers.first { $0["name"] as? String == "odd" })
        XCTAssertTrue((odd["compute_signature"] as? String)?.contains("/\(other)/") ?? false, "\(odd)")
        XCTAssertTrue((odd["excluded_reason"] as? String)?.contains("computes bitwise only on workers with compute signature") ?? false, "\(odd)")
        let table = try cluster.psctl(["status"])
        XCTAssertTrue(table.stdout.contains("excluded") && table.stdout.contains("idle:"), table.stdout)
        let wait = try cluster.psctl(["wait", job, "--json"])
        XCTAssertEqual(wait.status, 0, wait.stderr)
        let result = try Binaries.json(wait)
        XCTAssertEqual(result["weights_sha256"] as? String, local)
        XCTAssertEqual((result["compute_signatures"] as? [String])?.count, 1)
        XCTAssertEqual(result["bitwise_reproducible"] as? Bool, true)
        XCTAssertTrue(cluster.log("odd").contains("signatureMismatch"), cluster.log("odd").suffix(2000).description)
        XCTAssertTrue(cluster.log("odd").contains("BLAS kernel \(other) (OPENBLAS_CORETYPE=\(other)"), cluster.log("odd").prefix(2000).description)
        XCTAssertTrue(cluster.log("server").contains("BLAS kernel"))

        // A named signature no connected worker has: submit says so at once; the job waits (cancelled here).
        let nobody = "openblas-0.3.21/Nehalem/avx2/glibc-1.0/threads-1"
        let waiting = try cluster.psctl(["submit", "examples/mnist-mlp.yaml", "--set", "training.compute_signature=\(nobody)"])
        XCTAssertEqual(waiting.status, 0, waiting.stderr)
        XCTAssertTrue(waiting.stderr.contains("note: no connected worker has training.compute_signature \(nobody)"), waiting.stderr)
        let waitingJob = waiting.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try cluster.waitUntil("the job says what it waits for", timeout: 60) {
            (try cluster.jobStatus(waitingJob)["message"] as? String)?.contains("waiting for a worker with compute signature \(nobody); 2 connected workers have another") ?? false
        }
        XCTAssertEqual(try cluster.psctl(["cancel", waitingJob]).status, 0)

        let mixed = try cluster.psctl(["submit", "examples/mnist-mlp.yaml", "--set", overrides[0],
                                       "--set", "training.allow_mixed_signatures=true", "--wait", "--json"])
        XCTAssertEqual(mixed.status, 0, mixed.stderr)
        let marked = try Binaries.json(mixed)
        XCTAssertEqual((marked["compute_signatures"] as? [String])?.count, 2, "\(marked)")
        XCTAssertEqual(marked["bitwise_reproducible"] as? Bool, false)
        let jobId = try XCTUnwrap(marked["job_id"] as? String)
        let model = cluster.directory + "/mixed.model"
        XCTAssertEqual(try cluster.psctl(["model", "pull", jobId, "-o", model]).status, 0)
        let info = try Binaries.run("psctl", ["model", "info", model])
        XCTAssertTrue(info.stdout.contains("(mixed: not bitwise-reproducible)"), info.stdout)
    }
}
