// Micro-benchmarks for bench/run.py (`make bench`). Each subcommand prints one JSON object on stdout.
//
//   ps-bench gemm  --batch 128 --chunks 4 --layers 784,256,128,10
//       times cblas_sgemm on exactly the shapes of one training step (Network.gradientSum + forward),
//       one BLAS thread, and prints the samples/s the GEMMs alone allow: the compute bound.
//   ps-bench sgemm --size 1024
//       square sgemm GFLOP/s, one BLAS thread: the machine's reference.
//   ps-bench wire  --floats 1000000
//       encodeFrame of a pushGradient carrying N floats + Envelope(payload:) of the frame, against a
//       memcpy of the same bytes.
//   ps-bench update --parameters 235146 --threads 2
//       one server-side update (ParameterStore.apply: batch mean + Adam) of N parameters with 1 and
//       with --threads threads, and the speed-up (the bits are the same for any thread count).
//
// Every timing is taken over --reps repetitions of a loop that runs at least --min-seconds; we print
// the minimum and the median per-iteration time.
import ArgumentParser
import CBLAS
import Foundation
import PSCore
import PSMath
import PSTrain
import PSWire

@inline(__always) func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Per-iteration seconds of `body` for each of `reps` repetitions; each repetition runs the body until
/// `minSeconds` has passed (at least 3 times), after one untimed warm-up call.
func timeIt(reps: Int, minSeconds: Double, _ body: () -> Void) -> [Double] {
    body()
    var out: [Double] = []
    for _ in 0..<reps {
        var iterations = 0
        let start = now()
        var elapsed = 0.0
        repeat {
            body()
            iterations += 1
            elapsed = now() - start
        } while elapsed < minSeconds || iterations < 3
        out.append(elapsed / Double(iterations))
    }
    return out
}

func printJSON(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

/// A buffer of small pseudo-random floats (no denormals, no NaNs), never freed: the process is short.
func filled(_ count: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
    var s = seed | 1
    for i in 0..<count {
        s = s &* 6364136223846793005 &+ 1442695040888963407
        p[i] = (Float(Int(s >> 40) & 0xFFFF) / 65536 - 0.5) * 0.1
    }
    return p
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps-bench", abstract: "Micro-benchmarks: step GEMMs, square sgemm, wire encode/decode, optimizer update.",
        subcommands: [Gemm.self, Sgemm.self, Wire.self, Update.self, Signature.self])
}

/// What this process computes with, for the benchmark's environment section.
struct Signature: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The compute signature and the BLAS kernel choice (kernel, reason, the CPU's best kernel).")
    @Option(help: "BLAS threads, part of the signature (workers and train --local use 1 by default).") var threads = 1

    func validate() throws {
        guard (1...256).contains(threads) else { throw ValidationError("--threads must be between 1 and 256") }
    }

    func run() throws {
        BLAS.setThreads(threads)
        let signature = ComputeEnvironment.signature
        printJSON([
            "compute_signature": signature.description, "blas_kernel": signature.blasKernel,
            "blas_version": signature.blasVersion, "math_target": signature.mathTarget, "libc": signature.libc,
            "blas_threads": signature.blasThreads,
            "openblas_config": BLAS.configuration, "kernel_reason": kernelReport.reason,
            "cpu_best_kernel": BuildTarget.cpuFlags().flatMap(BLASKernelChoice.bestKernel(cpuFlags:)) ?? "none",
        ])
    }
}

struct Common: ParsableArguments {
    @Option(help: "Repetitions (min and median are reported).") var reps = 5
    @Option(help: "Seconds each repetition runs at least.") var minSeconds = 0.4
}

struct Gemm: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "cblas_sgemm on one training step's shapes; samples/s the GEMMs alone allow.")
    @Option var batch = 128
    @Option var chunks = 4
    @Option(help: "Layer widths, inputs first.") var layers = "784,256,128,10"
    @Option(help: "OpenBLAS threads.") var threads = 1
    @OptionGroup var common: Common

    func run() throws {
        openblas_set_num_threads(Int32(threads))
        let widths = layers.split(separator: ",").map { Int($0)! }
        precondition(widths.count >= 2, "--layers needs at least inputs and outputs")
        // Chunk sizes as ChunkPlan.ranges makes them: as equal as possible, earlier chunks first.
        let chunkSizes = (0..<chunks).map { batch / chunks + ($0 < batch % chunks ? 1 : 0) }.filter { $0 > 0 }
        let cap = chunkSizes.max()!
        let maxWidth = widths.max()!
        let weights = (0..<(widths.count - 1)).map { filled(widths[$0 + 1] * widths[$0], seed: UInt64($0 + 1)) }
        let grads = (0..<(widths.count - 1)).map { filled(widths[$0 + 1] * widths[$0], seed: UInt64($0 + 11)) }
        // acts[0] = X [n × inputs], acts[l + 1] = Z_l [n × units_l]; deltas alternate like the workspace's.
        let acts = widths.enumerated().map { filled(cap * $0.element, seed: UInt64($0.offset + 21)) }
        let deltaA = filled(cap * maxWidth, seed: 31), deltaB = filled(cap * maxWidth, seed: 32)
        var flopsPerStep = 0.0
        for n in chunkSizes {
            for l in 0..<(widths.count - 1) {
                let (fanIn, units) = (Double(widths[l]), Double(widths[l + 1]))
                flopsPerStep += 2 * Double(n) * fanIn * units * (l > 0 ? 3 : 2)
            }
        }

        let step = {
            for n in chunkSizes {
                let n32 = Int32(n)
                // Forward: Z[n × units] += X[n × fanIn] · Wᵀ  (NoTrans, Trans, beta 1)
                for l in 0..<(widths.count - 1) {
                    let (fanIn, units) = (Int32(widths[l]), Int32(widths[l + 1]))
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n32, units, fanIn, 1,
                                acts[l], fanIn, weights[l], fanIn, 1, acts[l + 1], units)
                }
                // Backward, last layer first.
                var current = deltaA, spare = deltaB
                for l in stride(from: widths.count - 2, through: 0, by: -1) {
                    let (fanIn, units) = (Int32(widths[l]), Int32(widths[l + 1]))
                    // dW[units × fanIn] = dZᵀ · X  (Trans, NoTrans, beta 0)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, units, fanIn, n32, 1,
                                current, units, acts[l], fanIn, 0, grads[l], fanIn)
                    if l > 0 {
                        // dX[n × fanIn] = dZ · W  (NoTrans, NoTrans, beta 0)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n32, fanIn, units, 1,
                                    current, units, weights[l], fanIn, 0, spare, fanIn)
                        swap(&current, &spare)
                    }
                }
            }
        }
        let times = timeIt(reps: common.reps, minSeconds: common.minSeconds, step)
        let (best, mid) = (times.min()!, median(times))
        printJSON([
            "what": "gemm", "batch": batch, "chunks": chunks, "chunk_sizes": chunkSizes, "layers": widths,
            "threads": threads, "gemms_per_step": chunkSizes.count * (2 * (widths.count - 1) + widths.count - 2),
            "flops_per_step": flopsPerStep, "flops_per_sample": flopsPerStep / Double(batch),
            "step_seconds_min": best, "step_seconds_median": mid,
            "samples_per_second_max": Double(batch) / best, "samples_per_second_median": Double(batch) / mid,
            "gflops_best": flopsPerStep / best / 1e9, "gflops_median": flopsPerStep / mid / 1e9,
            "samples_per_second_per_rep": times.map { Double(batch) / $0 }, "reps": times.count,
        ])
    }
}

struct Sgemm: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Square sgemm GFLOP/s.")
    @Option var size = 1024
    @Option(help: "OpenBLAS threads.") var threads = 1
    @OptionGroup var common: Common

    func run() throws {
        openblas_set_num_threads(Int32(threads))
        let n = size, n32 = Int32(size)
        let a = filled(n * n, seed: 1), b = filled(n * n, seed: 2), c = filled(n * n, seed: 3)
        let times = timeIt(reps: common.reps, minSeconds: common.minSeconds) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n32, n32, n32, 1, a, n32, b, n32, 0, c, n32)
        }
        let flops = 2 * Double(n) * Double(n) * Double(n)
        printJSON([
            "what": "sgemm", "size": n, "threads": threads, "openblas_core": BLAS.kernel,
            "openblas_config": BLAS.configuration, "compute_signature": ComputeEnvironment.signature.description,
            "seconds_min": times.min()!, "seconds_median": median(times),
            "gflops_best": flops / times.min()! / 1e9, "gflops_median": flops / median(times) / 1e9,
            "gflops_per_rep": times.map { flops / $0 / 1e9 }, "reps": times.count,
        ])
    }
}

struct Update: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "ParameterStore.apply (batch mean + Adam) with 1 thread and with --threads threads.")
    @Option var parameters = 235_146
    @Option var threads = 2
    @Flag(help: "Time applyChecked (training.on_non_finite fail/stop: keep the old parameters, check the new) instead.")
    var checked = false
    @OptionGroup var common: Common

    func run() throws {
        let initial = Array(UnsafeBufferPointer(start: filled(parameters, seed: 3), count: parameters))
        let gradient = FloatData(Array(UnsafeBufferPointer(start: filled(parameters, seed: 4), count: parameters)))
        let optimizer = OptimizerSpec(kind: .adam, learningRate: 1e-3)
        func measure(_ threads: Int) -> (times: [Double], result: [Float]) {
            var store = ParameterStore(parameters: initial, optimizer: optimizer, updateThreads: threads)
            let times = timeIt(reps: common.reps, minSeconds: common.minSeconds) {
                if checked {
                    precondition(store.applyChecked(gradientSum: gradient, batchCount: 128) == nil, "a finite step was refused")
                } else {
                    store.apply(gradientSum: gradient, batchCount: 128)
                }
            }
            // Same number of steps from the same start for the bit check.
            var check = ParameterStore(parameters: initial, optimizer: optimizer, updateThreads: threads)
            for _ in 0..<3 { check.apply(gradientSum: gradient, batchCount: 128) }
            return (times, check.parameters)
        }
        let one = measure(1), many = measure(threads)
        guard one.result.elementsEqual(many.result, by: { $0.bitPattern == $1.bitPattern }) else {
            throw ValidationError("\(threads) threads changed the bits of the update")
        }
        printJSON([
            "what": checked ? "update_checked" : "update", "parameters": parameters, "threads": threads,
            "seconds_min_1": one.times.min()!, "seconds_min_n": many.times.min()!,
            "seconds_median_1": median(one.times), "seconds_median_n": median(many.times),
            "speedup_of_min_times": one.times.min()! / many.times.min()!,
        ])
    }
}

struct Wire: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "encodeFrame + Envelope(payload:) of a pushGradient against memcpy of the same bytes.")
    @Option var floats = 1_000_000
    @OptionGroup var common: Common

    func run() throws {
        let values = (0..<floats).map { Float($0 % 1000) * 0.001 - 0.5 }
        let message = Message.pushGradient(PushGradient(
            jobId: "job-1", step: 12345, subtree: ChunkRange(firstChunk: 0, chunkCount: 4),
            gradient: TensorSlice(offset: 0, values: values), lossSum: 1.5, correct: 100, samples: 128))
        let frame = try encodeFrame(requestId: 7, message: message)
        let header = 4
        // Check the round trip once, outside the timing.
        let decoded = try Envelope(payload: frame[header...])
        guard case .pushGradient(let push) = decoded.message, push.gradient.values == values else {
            throw ValidationError("wire round trip changed the message")
        }
        // Decoding hands out a view of the frame (what the server sums from); a consumer that needs an
        // array of its own (a worker's parameters) copies once, outside this measurement.
        guard push.gradient.data.isView else { throw ValidationError("the decoded tensor is a copy, not a view of the frame") }

        var sink = 0
        let encodeTimes = timeIt(reps: common.reps, minSeconds: common.minSeconds) {
            let f = try! encodeFrame(requestId: 7, message: message)
            sink &+= Int(f[f.count - 1])
        }
        let decodeTimes = timeIt(reps: common.reps, minSeconds: common.minSeconds) {
            let e = try! Envelope(payload: frame[header...])
            if case .pushGradient(let p) = e.message { sink &+= p.gradient.count }
        }
        let roundTimes = timeIt(reps: common.reps, minSeconds: common.minSeconds) {
            let f = try! encodeFrame(requestId: 7, message: message)
            let e = try! Envelope(payload: f[header...])
            if case .pushGradient(let p) = e.message { sink &+= p.gradient.count }
        }
        let bytes = floats * MemoryLayout<Float>.stride
        let src = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let dst = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        values.withUnsafeBytes { src.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        memset(dst, 0, bytes)
        let copyTimes = timeIt(reps: common.reps, minSeconds: common.minSeconds) {
            memcpy(dst, src, bytes)
            sink &+= Int(dst.load(fromByteOffset: bytes - 1, as: UInt8.self))
        }
        let memcpyMin = copyTimes.min()!, memcpyMedian = median(copyTimes)
        printJSON([
            "what": "wire", "floats": floats, "payload_bytes": bytes, "frame_bytes": frame.count,
            "encode_seconds_min": encodeTimes.min()!, "encode_seconds_median": median(encodeTimes),
            "decode_seconds_min": decodeTimes.min()!, "decode_seconds_median": median(decodeTimes),
            "roundtrip_seconds_min": roundTimes.min()!, "roundtrip_seconds_median": median(roundTimes),
            "memcpy_seconds_min": memcpyMin, "memcpy_seconds_median": memcpyMedian,
            "memcpy_gb_per_second": Double(bytes) / memcpyMin / 1e9,
            "encode_gb_per_second": Double(bytes) / encodeTimes.min()! / 1e9,
            "decode_gb_per_second": Double(bytes) / decodeTimes.min()! / 1e9,
            // P4: memcpy time ÷ (encode + decode time) of the same bytes; 1.0 = as fast as one memcpy.
            "ratio_of_min_times": memcpyMin / roundTimes.min()!, "ratio_of_median_times": memcpyMedian / median(roundTimes),
            "ratio_per_rep": zip(copyTimes, roundTimes).map { $0 / $1 },
            "reps": copyTimes.count, "sink": sink % 2,
        ])
    }
}

// The same allocator setting as ps-server, ps-worker and psctl, so P4 measures what they do.
BuildTarget.requireSupportedCPU(program: "ps-bench")
MemoryTuning.keepLargeBuffers()
// Before any BLAS call: may start ps-bench again with a better kernel. Figures for another kernel are
// taken with OPENBLAS_CORETYPE set, which the choice always respects.
nonisolated(unsafe) let kernelReport = ComputeEnvironment.chooseKernel(program: "ps-bench")
if kernelReport.warning { FileHandle.standardError.write(Data("ps-bench: warning: \(kernelReport.line)\n".utf8)) }
Bench.main()
