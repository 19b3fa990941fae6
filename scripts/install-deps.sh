#!/usr/bin/env bash
# Installs the system packages the project needs, only those missing, so `make demo` and `make test`
# work on a fresh clone. Safe to run repeatedly; prints nothing when everything is present.
set -euo pipefail

packages=(libopenblas-dev libprotobuf-c-dev protobuf-c-compiler pkg-config zlib1g-dev)
# Test-only tools are added here by the features that need them.
if [[ "${1:-}" == "--test" ]]; then
    packages+=()
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
