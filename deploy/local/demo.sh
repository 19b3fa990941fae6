#!/usr/bin/env bash
# `make demo`: one ps-server and three ps-workers on 127.0.0.1 train the bundled MNIST job
# (examples/mnist-mlp.yaml) with live progress, then print the test accuracy and stop everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${PS_BIN:-.build/release}
port=${PS_DEMO_PORT:-7070}
dir=runs/demo
server="127.0.0.1:$port"

trap 'deploy/local/cluster.sh stop --dir "$dir"' EXIT
deploy/local/cluster.sh start --workers 3 --port "$port" --dir "$dir"

job=$("$bin/psctl" submit examples/mnist-mlp.yaml --server "$server")
echo "submitted $job: MNIST 784-256-128-10, Adam, batch 128 in 4 chunks, up to 10 epochs"

# Live progress: one status line per second until the job ends.
while :; do
    line=$("$bin/psctl" status "$job" --server "$server" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
def f(x, fmt): return "-" if x is None else fmt % x
bar_n = 0 if not j["steps_per_epoch"] else int(30 * min(1, ((max(j["epoch"], 1) - 1) + j["step"] / j["steps_per_epoch"]) / j["epochs"]))
print("%s %-9s epoch %d/%d [%s%s] loss %s val_loss %s val_acc %s %s samples/s eta %s" % (
    j["job_id"], j["state"], j["epoch"], j["epochs"], "#" * bar_n, "." * (30 - bar_n),
    f(j["train_loss"], "%.4f"), f(j["val_loss"], "%.4f"), f(j["val_accuracy"], "%.4f"),
    "%.0f" % j["samples_per_second"], f(j["eta_seconds"], "%.0fs")))
print(j["state"], file=sys.stderr)
' 2>"$dir/state")
    state=$(cat "$dir/state")
    if [[ -t 1 ]]; then printf '\r\033[K%s' "$line"; else echo "$line"; fi
    case "$state" in completed|stopped_early|failed|cancelled|interrupted) break ;; esac
    sleep 1
done
[[ -t 1 ]] && echo
"$bin/psctl" wait "$job" --server "$server"
"$bin/psctl" model pull "$job" --server "$server" -o "$dir/mnist-mlp.model" > /dev/null
echo "model: $dir/mnist-mlp.model"
