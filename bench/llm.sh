#!/usr/bin/env bash
# bench/llm.sh — the LLM engine against this machine's memory bandwidth:
# prefill and decode tok/s of random weights in TinyLlama-1.1B's shape (q8_0
# and q4_0, 1 and 2 threads) beside the read-bandwidth bound, then 1, 4 and 8
# concurrent streams through `ciel-llm serve`. Builds nothing; the model
# files are generated once (about a minute each) and kept under
# $BUILD/bench-models. Arguments go to bench-llm (--types, --threads,
# --streams, --no-serve, --output json, ...).
#   BUILD  build directory (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
for b in ciel-llm bench/bench-llm; do
	[ -x "$BUILD/$b" ] || { echo "bench: $BUILD/$b missing; run make build" >&2; exit 1; }
done
mkdir -p "$BUILD/bench-models"
exec "$BUILD/bench/bench-llm" --models "$BUILD/bench-models" --ciel-llm "$BUILD/ciel-llm" "$@"
