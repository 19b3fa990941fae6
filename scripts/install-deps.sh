#!/usr/bin/env bash
# Installs the system packages the project needs, only those missing, so `make demo` and `make test`
# work on a fresh clone. Safe to run repeatedly; prints nothing when everything is present.
set -euo pipefail

packages=(libopenblas-dev libprotobuf-c-dev protobuf-c-compiler pkg-config zlib1g-dev)
# Test-only tools: promtool (Debian's prometheus package) checks our /metrics output and the
# Prometheus files in deploy/; systemd-analyze (Debian's systemd package) checks deploy/systemd's units;
# openssl makes the TLS tests' certificates (deploy/tls/make-certs.sh) and reads their dates; curl
# scrapes /metrics over HTTPS; iproute2 builds the network-namespace hosts (deploy/netns/hosts.sh).
test_tools=false
if [[ "${1:-}" == "--test" ]]; then
    test_tools=true
    packages+=(prometheus systemd openssl curl iproute2)
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

# Whether PYTHON has every pin of REQUIREMENTS installed at its version.
has_pins() {
    "$1" - "$2" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, wanted = line.split("==")
        if version(name) != wanted:
            sys.exit(1)
PY
}

if $test_tools; then
    tests="$(dirname "$0")/../tests"
    # Python readers for our outputs (ONNX models, TensorBoard event files), for python3 itself.
    if ! has_pins python3 "$tests/requirements.txt"; then
        echo "install-deps: installing Python test tools from tests/requirements.txt" >&2
        python3 -m pip install -q --disable-pip-version-check -r "$tests/requirements.txt" >&2
    fi
    # Linters for deploy/ (hadolint, kubernetes-validate, checkov) in their own environment, .venv:
    # checkov pins dozens of packages (boto3, packaging, …) that would replace the machine's own.
    venv="$(dirname "$0")/../.venv"
    if ! has_pins "$venv/bin/python3" "$tests/deploy-requirements.txt"; then
        echo "install-deps: installing the deploy linters from tests/deploy-requirements.txt into .venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/python3" -m pip install -q --disable-pip-version-check -r "$tests/deploy-requirements.txt" >&2
    fi
fi
