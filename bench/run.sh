#!/usr/bin/env bash
# `make bench`: every performance figure of docs/PERFORMANCE.md, as ratios measured within this run.
# Needs a release build (make bench does it). Prints the table; writes runs/bench/results.json.
# Takes about 7 minutes on 2 cores (the straggler section: 1.5 min now, ~5 once every consistency mode runs); `bench/run.sh --runs 5` for more repetitions, `--skip target` etc.
# PyTorch DDP next to the cluster (P2.b512.ddp, P3.b512.ddp): bench/run.sh --torch (installs torch into .venv-bench once).
# Two builds against each other: `bench/run.sh --baseline OLD/.build/release --skip local,cluster,wide,target,kernels`
# (docs/PERFORMANCE.md, "Comparing two builds"). Arguments go to bench/run.py as given (make bench ARGS="...").
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q numpy
exec python3 bench/run.py "$@"
