#!/usr/bin/env bash
# The MNIST example's test accuracy in each consistency mode, RUNS times each on a fresh 127.0.0.1
# cluster of WORKERS workers: what ssp and async (not reproducible: their weights depend on timing)
# reach from run to run, next to delayed and sync (reproducible: the same weights every run).
#   scripts/mode-accuracy.sh [RUNS=3] [WORKERS=2] [MODES="ssp async"]   (release binaries in .build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; workers=${2:-2}; modes=${3:-ssp async}
bin=$(cd "${PS_BIN:-.build/release}" && pwd)
port=${PS_MODE_ACCURACY_PORT:-7393}
for mode in $modes; do
    results=()
    for run in $(seq 1 "$runs"); do
        dir=$(mktemp -d /tmp/mode-accuracy.XXXXXX)
        PS_BIN="$bin" deploy/local/cluster.sh start --workers "$workers" --port "$port" --dir "$dir" >/dev/null
        job=$("$bin/psctl" submit examples/mnist-mlp.yaml --set "training.consistency=$mode" --server "127.0.0.1:$port")
        line=$("$bin/psctl" wait "$job" --json --server "127.0.0.1:$port" | tail -1)
        PS_BIN="$bin" deploy/local/cluster.sh stop --dir "$dir" >/dev/null
        rm -rf "$dir"
        results+=("$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["test_accuracy"], d["epochs_run"], round(d["samples_per_second"]), d["weights_sha256"][:12])' "$line")")
        echo "$mode run $run: test_accuracy epochs samples/s sha: ${results[-1]}"
    done
    printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
acc = [float(l.split()[0]) for l in sys.stdin if l.strip()]
print(f"'"$mode"': test accuracy min {min(acc):.4f} median {statistics.median(acc):.4f} max {max(acc):.4f} over {len(acc)} runs")'
done
