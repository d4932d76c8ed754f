#!/usr/bin/env bash
# make bench: start a throw-away region in a temp dir, run bench-api against
# it, stop the region and remove the dir, whatever happens (trap on exit).
# The region's HOME is a temp dir too, so nothing under the real ~ is touched.
#   BENCH_SECONDS  seconds per phase (default 5)
#   BENCH_CONNS    connection counts (default 1,16,64)
#   BENCH_TMPDIR   where the region lives; the fsync floor is measured there,
#                  so point it at the disk you mean to measure (default $TMPDIR or /tmp)
#   BENCH_LISTEN   API address (default: a free random loopback port, so a
#                  region already up on 7443 is neither hit nor in the way)
#   BUILD          build directory holding ciel and bench-api (default build)
# Extra arguments go to bench-api (e.g. --output json).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECONDS_PER_PHASE=${BENCH_SECONDS:-5}
CONNS=${BENCH_CONNS:-1,16,64}

for b in ciel bench/bench-api; do
	if [ ! -x "$BUILD/$b" ]; then
		echo "bench: $BUILD/$b missing; run make build (or set BUILD)" >&2
		exit 1
	fi
done

tmp=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/ciel-bench.XXXXXX")
up=0
stage=setup
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "$up" = 1 ]; then
		HOME="$tmp/home" "$BUILD/ciel" down --data "$tmp/data" >/dev/null 2>&1 ||
			echo "bench: ciel down failed (see $tmp/up.log)" >&2
	fi
	if [ "$rc" -ne 0 ] && [ "$stage" = up ] && [ -f "$tmp/up.log" ]; then
		echo "bench: --- ciel up log (tail) ---" >&2
		tail -20 "$tmp/up.log" >&2
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/home" "$tmp/data"
listen=${BENCH_LISTEN:-}
if [ -z "$listen" ]; then
	for _ in $(seq 1 50); do
		port=$((20000 + RANDOM % 40000))
		# a refused connection means nobody listens there
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			listen=127.0.0.1:$port
			break
		fi
	done
	[ -n "$listen" ] || { echo "bench: no free port found" >&2; exit 1; }
fi
echo "bench: region in $tmp/data, listening on $listen" >&2
up=1
stage=up
HOME="$tmp/home" "$BUILD/ciel" up --data "$tmp/data" --no-agents --listen "$listen" \
	>"$tmp/up.log" 2>&1

# `ciel up` returns once /healthz answers; make sure it left the credentials
for _ in $(seq 1 100); do
	[ -s "$tmp/data/operator.credentials" ] && break
	sleep 0.1
done
if [ ! -s "$tmp/data/operator.credentials" ]; then
	echo "bench: no $tmp/data/operator.credentials after ciel up" >&2
	exit 1
fi

stage=bench
HOME="$tmp/home" "$BUILD/bench/bench-api" --credentials "$tmp/data/operator.credentials" \
	--data "$tmp/data" --seconds "$SECONDS_PER_PHASE" --conns "$CONNS" "$@"
