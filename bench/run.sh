#!/usr/bin/env bash
# `make bench`: every performance figure of docs/PERFORMANCE.md, as ratios measured within this run.
# Needs a release build (make bench does it). Prints the table; writes runs/bench/results.json.
# Takes about 5-6 minutes on 2 cores; `bench/run.sh --runs 5` for more repetitions, `--skip target` etc.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q numpy
exec python3 bench/run.py "$@"
