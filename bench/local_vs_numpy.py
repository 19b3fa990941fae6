#!/usr/bin/env python3
"""Benchmark: `psctl train --local` against numpy on the same model, batches and optimizer.

Runs each trainer --runs times, alternating them so that drift on a shared machine hits both, and
prints samples/s (min and median) and the ratio psctl / numpy. Both use one BLAS thread and the
machine's environment as it is. Writes the table as JSON to --json-out as well.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env):
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"benchmark: {' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--psctl", default=os.path.join(ROOT, ".build/release/psctl"))
    ap.add_argument("--json-out", default=os.path.join(ROOT, ".build/bench-local-vs-numpy.json"))
    args = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    spec = os.path.join(ROOT, "bench/mnist-bench.yaml")
    variants = {
        "numpy (batch 128)": [sys.executable, "bench/numpy_mlp.py", "--epochs", str(args.epochs), "--optimizer", "adam"],
        "psctl --local, chunks 4": [args.psctl, "train", "--local", spec, "--json", "--output", "/dev/null",
                                    "--set", f"training.epochs={args.epochs}"],
        "psctl --local, chunks 1": [args.psctl, "train", "--local", spec, "--json", "--output", "/dev/null",
                                    "--set", f"training.epochs={args.epochs}", "--set", "training.chunks=1"],
    }
    rates = {k: [] for k in variants}
    for r in range(args.runs):
        for name, cmd in variants.items():
            rates[name].append(run(cmd, env)["samples_per_second"])
            print(f"run {r + 1}/{args.runs} {name}: {rates[name][-1]:,.0f} samples/s", file=sys.stderr)
    base = rates["numpy (batch 128)"]
    rows = []
    print(f"{'trainer':28} {'min samples/s':>14} {'median':>10} {'ratio to numpy (min, median)':>30}")
    for name, xs in rates.items():
        ratio_min = min(xs) / min(base)
        ratio_med = statistics.median(xs) / statistics.median(base)
        rows.append({"trainer": name, "min": min(xs), "median": statistics.median(xs),
                     "ratio_min": ratio_min, "ratio_median": ratio_med, "runs": xs})
        print(f"{name:28} {min(xs):14,.0f} {statistics.median(xs):10,.0f} {ratio_min:14.2f} {ratio_med:14.2f}")
    os.makedirs(os.path.dirname(args.json_out), exist_ok=True)
    with open(args.json_out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
