#!/usr/bin/env python3
"""Where the time goes: `perf record -g` on `psctl train --local` and on a ps-server and a ps-worker
during a 2-worker cluster run, summarised by self time into buckets (compute, optimizer,
element-wise, copies/encode, network/wait, data loading, other), plus the top symbols.

    bench/profile.py [--epochs 3] [--batch 128]      # needs perf and a release build

Prints markdown (the tables in docs/PERFORMANCE.md) and keeps the perf data in runs/bench/perf/.
More epochs than the rate benchmarks so that the training steps outweigh loading the data.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".build/release")
OUT = os.path.join(ROOT, "runs/bench/perf")
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")

# First match wins; patterns are matched against "dso symbol" (symbols demangled, simplified).
BUCKETS = [
    ("compute (sgemm)", r"sgemm|gemm_|_kernel_|blas_|openblas|dgemm"),
    ("optimizer", r"Optimizer|Adam|ParameterStore|\.apply\(|Adagrad|RMSProp|Momentum|adam|GradientMath"),
    ("memory (page faults, zeroing)", r"page_fault|clear_page|memset|handle_mm_fault|do_anonymous_page|"
                                      r"alloc_pages|malloc|free|munmap|mmap|zap_"),
    ("data loading", r"inflate|zlib|libz|crc32|IDX|Idx|PSData|gzip|Preprocess|adler"),
    ("copies/encode", r"memcpy|memmove|protobuf_c|pack|unpack|encodeFrame|Envelope|TensorSlice|"
                      r"withEnvelope|CArena|arrayInit|ContiguousArray|_copyContents|copyMemory|update\(from|"
                      r"ByteBuffer|clear_page|copy_user|copy_page|rep_movs|_copy_to|_copy_from"),
    ("network/wait", r"\[kernel|\[k\]|epoll|futex|tcp_|ip_|sock|NIO|syscall|schedule|__sched|pthread_cond|"
                     r"swapgs|entry_SYSCALL|do_syscall|_raw_spin|sys_|nanosleep|loopback|skb|netif|napi|"
                     r"dispatch|libdispatch"),
    ("element-wise", r"Activation|activation|relu|softmax|lossAndDelta|columnSums|Dropout|gather|forward|"
                     r"gradientSum|Network|exp|log|Vector|sqrt|reduceNode|StepEngine|NodeCollector|add"),
]


def record(name, cmd=None, pids=None, seconds=None):
    data = os.path.join(OUT, f"{name}.data")
    base = ["perf", "record", "-g", "-F", "999", "-o", data, "--quiet"]
    if cmd:
        subprocess.run(base + ["--"] + cmd, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return data
    return subprocess.Popen(base + ["-p", ",".join(map(str, pids))], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), data


def demangle(lines):
    try:
        out = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(lines),
                             capture_output=True, text=True, check=True).stdout.splitlines()
        return out if len(out) == len(lines) else lines
    except Exception:
        return lines


def summarise(data, title, top=12):
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio",
                          "--percent-limit", "0.05", "-g", "none"], capture_output=True, text=True).stdout
    rows = []
    for line in rep.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()))
    syms = demangle([r[3] for r in rows])
    buckets = {b: 0.0 for b, _ in BUCKETS}
    buckets["other"] = 0.0
    labelled = []
    for (pct, dso, kind, _), sym in zip(rows, syms):
        key = f"{dso} {'[kernel] ' if kind == 'k' else ''}{sym}"
        bucket = next((b for b, pat in BUCKETS if re.search(pat, key)), "other")
        buckets[bucket] += pct
        labelled.append((pct, bucket, dso, sym))
    print(f"\n#### {title}\n")
    print("| bucket | self time % |\n| --- | ---: |")
    for b, pct in sorted(buckets.items(), key=lambda kv: -kv[1]):
        print(f"| {b} | {pct:.1f} |")
    print("\n| self % | bucket | object | symbol |\n| ---: | --- | --- | --- |")
    for pct, bucket, dso, sym in labelled[:top]:
        sym = sym.replace("|", "\\|")
        print(f"| {pct:.1f} | {bucket} | {dso} | `{sym[:90]}` |")
    return buckets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--port", type=int, default=7390)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    sets = ["--set", f"training.epochs={args.epochs}", "--set", f"training.batch_size={args.batch}"]

    local = record("local", cmd=[os.path.join(BIN, "psctl"), "train", "--local", "bench/mnist-bench.yaml",
                                 "--output", "/dev/null", *sets])
    summarise(local, f"`psctl train --local`, batch {args.batch}, chunks 4, {args.epochs} epochs")

    cdir = os.path.join(ROOT, "runs/bench/perf-cluster")
    server = f"127.0.0.1:{args.port}"
    subprocess.run([os.path.join(ROOT, "deploy/local/cluster.sh"), "start", "--workers", "2", "--port",
                    str(args.port), "--dir", cdir], cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL)
    try:
        pid = lambda n: int(open(os.path.join(cdir, "pids", f"{n}.pid")).read())
        p_server, d_server = record("server", pids=[pid("server")])
        p_worker, d_worker = record("worker", pids=[pid("worker-1")])
        time.sleep(0.5)
        psctl = os.path.join(BIN, "psctl")
        job = subprocess.run([psctl, "submit", "bench/mnist-bench.yaml", *sets, "--server", server], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run([psctl, "wait", job, "--server", server], cwd=ROOT, stdout=subprocess.DEVNULL)
        for p in (p_server, p_worker):
            p.send_signal(signal.SIGINT)
        for p in (p_server, p_worker):
            p.wait(timeout=60)
    finally:
        subprocess.run([os.path.join(ROOT, "deploy/local/cluster.sh"), "stop", "--dir", cdir], cwd=ROOT,
                       stdout=subprocess.DEVNULL)
    summarise(d_server, f"`ps-server` during a 2-worker cluster job, batch {args.batch}, {args.epochs} epochs")
    summarise(d_worker, f"one `ps-worker` of the same job")


if __name__ == "__main__":
    main()
