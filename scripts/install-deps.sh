#!/usr/bin/env bash
# Installs the system packages the project needs, only those missing, so `make demo` and `make test`
# work on a fresh clone. Safe to run repeatedly; prints nothing when everything is present.
set -euo pipefail

packages=(libopenblas-dev libprotobuf-c-dev protobuf-c-compiler pkg-config zlib1g-dev)
# Test-only tools: promtool (Debian's prometheus package) checks our /metrics output; openssl makes the TLS
# tests' certificates (deploy/tls/make-certs.sh) and reads their dates; curl scrapes /metrics over HTTPS.
test_tools=false
if [[ "${1:-}" == "--test" ]]; then
    test_tools=true
    packages+=(prometheus openssl curl)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! pkg-config --exists openblas; then
    echo "install-deps: pkg-config cannot find 'openblas' after installing libopenblas-dev" >&2
    exit 1
fi

# Python readers for our outputs (ONNX models, TensorBoard event files), only for the tests.
if $test_tools; then
    requirements="$(dirname "$0")/../tests/requirements.txt"
    if ! python3 - "$requirements" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, wanted = line.split("==")
        if version(name) != wanted:
            sys.exit(1)
PY
    then
        echo "install-deps: installing Python test tools from tests/requirements.txt" >&2
        python3 -m pip install -q --disable-pip-version-check -r "$requirements" >&2
    fi
fi
