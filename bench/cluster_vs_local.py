#!/usr/bin/env python3
"""Benchmark: a local cluster (1 ps-server + N ps-workers on 127.0.0.1) against `psctl train --local`
on the same spec, in one run, plus how fast `psctl status` answers while the cluster trains.

Prints samples/s of each (training steps only, as both report them), their ratio, and the status
round-trip times (a whole `psctl status --json` process: start, connect, hello, request, reply).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".build/release")


def psctl(*args, server=None):
    cmd = [os.path.join(BIN, "psctl"), *args] + (["--server", server] if server else [])
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"benchmark: {' '.join(cmd)} failed:\n{out.stderr}")
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--spec", default="examples/mnist-mlp.yaml")
    ap.add_argument("--port", type=int, default=7191)
    args = ap.parse_args()
    overrides = ["--set", f"training.epochs={args.epochs}", "--set", "early_stopping=null"]

    local = json.loads(psctl("train", "--local", args.spec, "--json", "--output", "/dev/null", *overrides).splitlines()[-1])

    directory = os.path.join(ROOT, "runs/bench-cluster")
    server = f"127.0.0.1:{args.port}"
    subprocess.run([os.path.join(ROOT, "deploy/local/cluster.sh"), "start", "--workers", str(args.workers),
                    "--port", str(args.port), "--dir", directory], check=True, cwd=ROOT)
    try:
        job = psctl("submit", args.spec, *overrides, server=server).strip()
        latencies = []
        while True:
            start = time.perf_counter()
            status = json.loads(psctl("status", job, "--json", server=server))
            elapsed = time.perf_counter() - start
            state = status["jobs"][0]["state"]
            if state == "running":
                latencies.append(elapsed)
            if state not in ("submitted", "waiting_for_workers", "running"):
                break
            time.sleep(0.2)
        result = json.loads(psctl("wait", job, "--json", server=server))
    finally:
        subprocess.run([os.path.join(ROOT, "deploy/local/cluster.sh"), "stop", "--dir", directory], cwd=ROOT)

    same = result["weights_sha256"] == local["weights_sha256"]
    print(f"{'run':34} {'samples/s':>10}  weights_sha256")
    print(f"{'psctl train --local':34} {local['samples_per_second']:10,.0f}  {local['weights_sha256'][:16]}…")
    print(f"{f'cluster, {args.workers} workers':34} {result['samples_per_second']:10,.0f}  {result['weights_sha256'][:16]}…")
    print(f"ratio cluster / local: {result['samples_per_second'] / local['samples_per_second']:.2f}; "
          f"weights identical: {same}")
    if latencies:
        print(f"psctl status while training ({len(latencies)} calls, whole process): min {min(latencies) * 1000:.0f} ms, "
              f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    if not same:
        sys.exit("benchmark: the cluster's weights differ from the local trainer's")


if __name__ == "__main__":
    main()
