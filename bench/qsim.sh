#!/usr/bin/env bash
# bench/qsim.sh — the state-vector simulator against this machine's memory
# bandwidth: layer circuit x3 and QFT at 24, 26 and 28 qubits, double and
# single. Builds nothing; arguments go to bench-qsim (NQ ..., --threads N,
# --maxk K, --output json).
#   BUILD  build directory (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$BUILD/bench/bench-qsim" ] || { echo "bench: $BUILD/bench/bench-qsim missing; run make build" >&2; exit 1; }
exec "$BUILD/bench/bench-qsim" "$@"
