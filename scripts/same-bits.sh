#!/usr/bin/env bash
# Prints the MNIST example's weights_sha256 from `psctl train --local` and from a 3-worker cluster on
# 127.0.0.1, for the binaries in DIR (default .build/release). Run it with the binaries before and
# after a change that should not change the math: all four hashes must be equal on one machine.
#   scripts/same-bits.sh [DIR] [SPEC]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${1:-.build/release}" && pwd)
spec=${2:-examples/mnist-mlp.yaml}
port=${PS_SAME_BITS_PORT:-7391}
dir=$(mktemp -d /tmp/same-bits.XXXXXX)
trap 'PS_BIN="$bin" deploy/local/cluster.sh stop --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
sha() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["weights_sha256"])'; }
local_sha=$("$bin/psctl" train --local "$spec" --json --output "$dir/local.model" | sha)
echo "train --local      $local_sha"
PS_BIN="$bin" deploy/local/cluster.sh start --workers 3 --port "$port" --dir "$dir" >/dev/null
job=$("$bin/psctl" submit "$spec" --server "127.0.0.1:$port")
cluster_sha=$("$bin/psctl" wait "$job" --json --server "127.0.0.1:$port" | sha)
echo "cluster, 3 workers $cluster_sha"
[[ "$local_sha" == "$cluster_sha" ]] || { echo "same-bits: cluster and local differ" >&2; exit 1; }
