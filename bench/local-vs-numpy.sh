#!/usr/bin/env bash
# `make bench`: psctl train --local against numpy, same model and batches. Needs a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q numpy
exec python3 bench/local_vs_numpy.py "$@"
