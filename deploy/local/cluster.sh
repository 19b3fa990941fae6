#!/usr/bin/env bash
# Local cluster launcher: one ps-server and N ps-workers on 127.0.0.1, as background processes.
#
#   deploy/local/cluster.sh start [--workers N] [--port PORT] [--dir DIR] [--tls CERTS]
#                                                         start them, wait until all workers joined
#   deploy/local/cluster.sh stop  [--dir DIR]             SIGTERM every process it started
#
# DIR (default runs/local) holds the pid files, the server's data directory and one log per process.
# --tls CERTS: mutual TLS with the certificates deploy/tls/make-certs.sh made in the folder CERTS (the server
# uses server.pem, the workers worker.pem, psctl psctl.pem; all trust ca.pem). Default: plaintext.
# Binaries come from .build/release (build with `swift build -c release`), or $PS_BIN.
set -euo pipefail
cd "$(dirname "$0")/../.."

command=${1:-}
shift || true
workers=3
port=7070
dir=runs/local
tls=""
while (($#)); do
    case "$1" in
        --workers) workers=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --tls) tls=$2; shift 2 ;;
        *) echo "cluster.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
bin=${PS_BIN:-.build/release}
# The TLS options of each role (none without --tls).
tls_args() { [[ -z "$tls" ]] || echo "--tls-cert $tls/$1.pem --tls-key $tls/$1-key.pem --tls-ca $tls/ca.pem"; }

stop() {
    [[ -d "$dir/pids" ]] || return 0
    for f in "$dir"/pids/*.pid; do
        [[ -e "$f" ]] || continue
        pid=$(cat "$f")
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them a moment to finish cleanly, then make sure.
    for _ in $(seq 50); do
        alive=0
        for f in "$dir"/pids/*.pid; do [[ -e "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for f in "$dir"/pids/*.pid; do
        [[ -e "$f" ]] || continue
        kill -KILL "$(cat "$f")" 2>/dev/null || true  # most have exited already
        rm -f "$f"
    done
}

case "$command" in
    start)
        for b in ps-server ps-worker psctl; do
            [[ -x "$bin/$b" ]] || { echo "cluster.sh: $bin/$b not found; run 'swift build -c release' first" >&2; exit 1; }
        done
        if [[ -n "$tls" ]]; then
            for f in ca server server-key worker worker-key psctl psctl-key; do
                [[ -r "$tls/$f.pem" ]] || { echo "cluster.sh: $tls/$f.pem not found; run deploy/tls/make-certs.sh $tls" >&2; exit 1; }
            done
        fi
        stop
        mkdir -p "$dir/pids" "$dir/logs" "$dir/data"
        # shellcheck disable=SC2046  # tls_args is words (paths without spaces) or nothing
        "$bin/ps-server" --listen "127.0.0.1:$port" --data-dir "$dir/data" $(tls_args server) > "$dir/logs/server.log" 2>&1 &
        echo $! > "$dir/pids/server.pid"
        for i in $(seq "$workers"); do
            # shellcheck disable=SC2046
            "$bin/ps-worker" --server "127.0.0.1:$port" --name "worker-$i" $(tls_args worker) > "$dir/logs/worker-$i.log" 2>&1 &
            echo $! > "$dir/pids/worker-$i.pid"
        done
        # Wait (up to 30 s) until every worker has registered.
        for _ in $(seq 300); do
            # shellcheck disable=SC2046
            joined=$("$bin/psctl" status --server "127.0.0.1:$port" $(tls_args psctl) --json 2>/dev/null \
                     | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["cluster"]["workers"]))' 2>/dev/null || echo 0)
            if [[ "$joined" == "$workers" ]]; then
                echo "cluster up: server 127.0.0.1:$port, $workers workers (logs in $dir/logs)"
                [[ -z "$tls" ]] || echo "mutual TLS: give psctl $(tls_args psctl)"
                # Which BLAS kernel the workers compute with, and why (README, "Exact on every CPU").
                kernel=$(grep -o 'BLAS kernel .*' "$dir/logs/worker-1.log" | head -1 || true)
                [[ -n "$kernel" ]] && echo "worker-1: $kernel"
                exit 0
            fi
            sleep 0.1
        done
        echo "cluster.sh: only $joined of $workers workers joined in 30 s; see $dir/logs" >&2
        stop
        exit 1
        ;;
    stop)
        stop
        ;;
    *)
        echo "usage: deploy/local/cluster.sh start|stop [--workers N] [--port PORT] [--dir DIR] [--tls CERTS]" >&2
        exit 2
        ;;
esac
