#!/usr/bin/env bash
# Regenerates Sources/PSWireC from proto/ with protoc-c. With --check, generates into a temporary
# folder and fails if the committed copy differs (CI runs this so the two never drift apart).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "gen-proto: not yet written" >&2
