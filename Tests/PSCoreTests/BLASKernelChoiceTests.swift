import XCTest
@testable import PSCore

/// The start-up choice of OpenBLAS kernel (`BLASKernelChoice.decide`), rule by rule, and the compute
/// signature's text form.
final class BLASKernelChoiceTests: XCTestCase {
    /// /proc/cpuinfo flags of the CPUs that matter, trimmed to what the choice reads.
    static let emeraldRapids: Set<String> = ["sse2", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq",
                                             "avx512vl", "avx512_bf16", "amx_tile"]  // Intel family 6 model 207
    static let skylakeServer: Set<String> = ["sse2", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
    static let haswell: Set<String> = ["sse2", "avx", "avx2", "fma"]
    static let sandyBridge: Set<String> = ["sse2", "avx"]

    func testBestKernelFollowsTheFlags() {
        XCTAssertEqual(BLASKernelChoice.bestKernel(cpuFlags: Self.emeraldRapids), "Cooperlake")
        XCTAssertEqual(BLASKernelChoice.bestKernel(cpuFlags: Self.skylakeServer), "SkylakeX")
        XCTAssertEqual(BLASKernelChoice.bestKernel(cpuFlags: Self.haswell), "Haswell")
        XCTAssertNil(BLASKernelChoice.bestKernel(cpuFlags: Self.sandyBridge))
        // AVX-512 F alone is not enough for OpenBLAS's SkylakeX kernels.
        XCTAssertEqual(BLASKernelChoice.bestKernel(cpuFlags: Self.haswell.union(["avx512f"])), "Haswell")
    }

    // The case the issue was filed for: Prescott on a new Xeon, nothing set → restart with Cooperlake.
    func testFallbackOnANewCPURestartsWithTheBestKernel() {
        let d = BLASKernelChoice.decide(picked: "Prescott", cpuFlags: Self.emeraldRapids, environment: [:])
        guard case let .restart(kernel, marker, reason) = d else { return XCTFail("\(d)") }
        XCTAssertEqual(kernel, "Cooperlake")
        XCTAssertEqual(marker, "Prescott>Cooperlake")
        XCTAssertTrue(reason.contains("Prescott") && reason.contains("OPENBLAS_CORETYPE=Cooperlake"), reason)
        for fallback in ["Nehalem", "Core2", "Sandybridge", "Barcelona"] {
            guard case .restart(kernel: "Haswell", _, _) = BLASKernelChoice.decide(picked: fallback, cpuFlags: Self.haswell, environment: [:])
            else { return XCTFail("\(fallback) on a Haswell CPU is not replaced") }
        }
    }

    // The restarted process sees its own marker: it keeps the kernel and says why; if OpenBLAS did not take it, a warning.
    func testRestartedProcessReportsTheChoice() {
        let env = ["OPENBLAS_CORETYPE": "Cooperlake", "PS_BLAS_KERNEL_CHOSEN": "Prescott>Cooperlake"]
        guard case let .keep(kernel, reason, warning) = BLASKernelChoice.decide(picked: "Cooperlake", cpuFlags: Self.emeraldRapids, environment: env)
        else { return XCTFail() }
        XCTAssertEqual(kernel, "Cooperlake")
        XCTAssertFalse(warning)
        XCTAssertTrue(reason.hasPrefix("chosen at start-up") && reason.contains("Prescott"), reason)
        guard case let .keep(_, refused, loud) = BLASKernelChoice.decide(picked: "Prescott", cpuFlags: Self.emeraldRapids, environment: env)
        else { return XCTFail() }
        XCTAssertTrue(loud)
        XCTAssertTrue(refused.contains("runs Prescott"), refused)
    }

    // A user's OPENBLAS_CORETYPE always wins, even a slow one, and is never replaced; a name OpenBLAS ignored is a warning.
    func testUsersCoretypeIsRespected() {
        let d = BLASKernelChoice.decide(picked: "Prescott", cpuFlags: Self.emeraldRapids, environment: ["OPENBLAS_CORETYPE": "Prescott"])
        XCTAssertEqual(d, .keep(kernel: "Prescott", reason: "OPENBLAS_CORETYPE=Prescott set in the environment", warning: false))
        // A marker for another kernel (inherited from elsewhere) does not make the user's value ours.
        let inherited = BLASKernelChoice.decide(picked: "Haswell", cpuFlags: Self.emeraldRapids,
                                                environment: ["OPENBLAS_CORETYPE": "Haswell", "PS_BLAS_KERNEL_CHOSEN": "Prescott>Cooperlake"])
        XCTAssertEqual(inherited, .keep(kernel: "Haswell", reason: "OPENBLAS_CORETYPE=Haswell set in the environment", warning: false))
        guard case let .keep(_, _, warning) = BLASKernelChoice.decide(picked: "Prescott", cpuFlags: Self.emeraldRapids,
                                                                       environment: ["OPENBLAS_CORETYPE": "NoSuchCore"]) else { return XCTFail() }
        XCTAssertTrue(warning)
    }

    // PS_BLAS_KERNEL_CHOICE=off (any case) keeps the fallback with a warning naming the faster kernel;
    // empty means auto; a bad value is refused, but only where the switch matters (not under a user's
    // OPENBLAS_CORETYPE).
    func testSwitchOffAndBadValues() {
        guard case .keep(kernel: "Prescott", _, warning: true) = BLASKernelChoice.decide(
            picked: "Prescott", cpuFlags: Self.emeraldRapids, environment: ["PS_BLAS_KERNEL_CHOICE": "OFF"]) else { return XCTFail() }
        guard case .restart = BLASKernelChoice.decide(picked: "Prescott", cpuFlags: Self.emeraldRapids,
                                                      environment: ["PS_BLAS_KERNEL_CHOICE": ""]) else { return XCTFail() }
        guard case .keep(kernel: "Haswell", _, warning: false) = BLASKernelChoice.decide(
            picked: "Haswell", cpuFlags: Self.haswell, environment: ["PS_BLAS_KERNEL_CHOICE": "yes", "OPENBLAS_CORETYPE": "Haswell"])
        else { return XCTFail() }
        guard case let .keep(kernel, reason, warning) = BLASKernelChoice.decide(
            picked: "Prescott", cpuFlags: Self.emeraldRapids, environment: ["PS_BLAS_KERNEL_CHOICE": "off"]) else { return XCTFail() }
        XCTAssertEqual(kernel, "Prescott")
        XCTAssertTrue(warning)
        XCTAssertTrue(reason.contains("Cooperlake") && reason.contains("PS_BLAS_KERNEL_CHOICE=off"), reason)
        XCTAssertEqual(BLASKernelChoice.decide(picked: "Haswell", cpuFlags: Self.haswell, environment: ["PS_BLAS_KERNEL_CHOICE": "yes"]),
                       .invalid("PS_BLAS_KERNEL_CHOICE='yes' is not 'auto' or 'off'"))
    }

    // A kernel OpenBLAS picked that fits the CPU stays; so does a fallback on a CPU without AVX2, or where /proc/cpuinfo is unreadable.
    func testGoodPicksAndOldCPUsAreLeftAlone() {
        for (picked, flags) in [("Haswell", Self.haswell), ("Zen", Self.haswell), ("SkylakeX", Self.emeraldRapids),
                                ("Cooperlake", Self.emeraldRapids)] {
            guard case .keep(kernel: picked, _, warning: false) = BLASKernelChoice.decide(picked: picked, cpuFlags: flags, environment: [:])
            else { return XCTFail("\(picked) was replaced") }
        }
        guard case let .keep(_, reason, false) = BLASKernelChoice.decide(picked: "Sandybridge", cpuFlags: Self.sandyBridge, environment: [:])
        else { return XCTFail() }
        XCTAssertTrue(reason.contains("no AVX2"), reason)
        guard case .keep(kernel: "Prescott", _, _) = BLASKernelChoice.decide(picked: "Prescott", cpuFlags: nil, environment: [:])
        else { return XCTFail() }
    }

    // The test hook makes a good pick look like a fallback (so the restart can be exercised here) and says so in the reason.
    func testSimulatedPickIsLabelled() {
        guard case .restart(kernel: "Cooperlake", marker: "Prescott>Cooperlake", _) = BLASKernelChoice.decide(
            picked: "Cooperlake", cpuFlags: Self.emeraldRapids, environment: ["PS_BLAS_TEST_PICKED": "Prescott"]) else { return XCTFail() }
        guard case let .keep(_, reason, _) = BLASKernelChoice.decide(
            picked: "Cooperlake", cpuFlags: Self.emeraldRapids,
            environment: ["PS_BLAS_TEST_PICKED": "Prescott", "OPENBLAS_CORETYPE": "Cooperlake", "PS_BLAS_KERNEL_CHOSEN": "Prescott>Cooperlake"])
        else { return XCTFail() }
        XCTAssertTrue(reason.contains("simulated"), reason)
    }

    // Only what the server computes with (PSMath's target, the C library) makes its signature matter.
    func testServerDifferenceIgnoresBLAS() throws {
        let workers = try ComputeSignature.parse("openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-1").get()
        let sameMath = try ComputeSignature.parse("openblas-0.3.21/Prescott/avx2/glibc-2.36/threads-2").get()
        XCTAssertNil(ComputeSignature.serverDifference(server: sameMath, workers: workers))
        let other = try ComputeSignature.parse("openblas-0.3.21/Haswell/portable/glibc-2.41/threads-1").get()
        XCTAssertEqual(ComputeSignature.serverDifference(server: other, workers: workers),
                       "PSMath portable ≠ avx2, glibc-2.41 ≠ glibc-2.36")
    }

    func testSignatureTextRoundTripsAndBadTextIsNamed() throws {
        let s = ComputeSignature(blasKernel: "SkylakeX", blasVersion: "0.3.21", mathTarget: "avx2", libc: "glibc-2.36", blasThreads: 1)
        XCTAssertEqual(s.description, "openblas-0.3.21/SkylakeX/avx2/glibc-2.36/threads-1")
        XCTAssertEqual(try ComputeSignature.parse(s.description).get(), s)
        for bad in ["", "Haswell", "blas-0.3.21/Haswell/avx2/glibc-2.36/threads-1", "openblas-0.3.21/Has well/avx2/glibc-2.36/threads-1",
                    "openblas-0.3.21//avx2/glibc-2.36/threads-1", "openblas-0.3.21/Haswell/avx512/glibc-2.36/threads-1", "a/b/c/d/e",
                    "openblas-0.3.21/Haswell/avx2/glibc-2.36", "openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-0",
                    "openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-x", "openblas-0.3.21/Has\u{1B}[2J/avx2/glibc-2.36/threads-1",
                    "openblas-0.3.21/" + String(repeating: "H", count: 65) + "/avx2/glibc-2.36/threads-1",
                    String(repeating: "x", count: 1_000_000)] {
            guard case .failure = ComputeSignature.parse(bad) else { return XCTFail("accepted '\(bad)'") }
        }
    }
}
