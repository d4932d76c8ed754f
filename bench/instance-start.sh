#!/usr/bin/env bash
# bench/instance-start.sh — create→running latency of ciel instances beside a
# raw `runc run -d` of the same busybox rootfs on this machine, then 100
# instances on one node. Brings a throw-away region up in a temp dir (3
# agents), removes everything on exit. Needs root and runc.
#   BENCH_COUNT    latency samples (default 50)
#   BENCH_DENSITY  instances started at once on one node (default 100)
#   BUILD          build directory (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
COUNT=${BENCH_COUNT:-50}
DENSITY=${BENCH_DENSITY:-100}
for b in ciel ciel-agent cield bench/bench-instance; do
	[ -x "$BUILD/$b" ] || { echo "bench: $BUILD/$b missing; run make build" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: needs root (runc, namespaces)" >&2; exit 1; }
BUILD=$(cd "$BUILD" && pwd)
tmp=$(mktemp -d /tmp/ciel-bench-inst.XXXXXX)
export HOME=$tmp/home
mkdir -p "$HOME"
ciel() { "$BUILD/ciel" "$@"; }
cleanup() {
	trap - EXIT INT TERM
	for id in $(runc --root "$tmp/rawroot" list -q 2>/dev/null); do
		runc --root "$tmp/rawroot" delete --force "$id" >/dev/null 2>&1 || true
	done
	ciel down --data "$tmp/data" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$((20000 + RANDOM % 40000))
ciel up --data "$tmp/data" --listen "127.0.0.1:$port" >"$tmp/up.log" 2>&1 ||
	{ cat "$tmp/up.log"; exit 1; }
for _ in $(seq 100); do
	[ "$(ciel node list --output json | jq '[.items[]|select(.state=="Ready")]|length')" = 3 ] && break
	sleep 0.1
done
ciel tenant create bench --save-profile bench >/dev/null
ciel quota set --tenant bench --instances $((DENSITY + 10)) --vcpus 64 --memory 64G >/dev/null

# the image: busybox alone
root=$tmp/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/tmp"
cp /bin/busybox "$root/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
tar -C "$root" -cf "$tmp/bb.tar" .
ciel --profile bench image import busybox "$tmp/bb.tar" >/dev/null

# the physical bound: raw runc run -d of the same rootfs, same command
bundle=$tmp/bundle
mkdir -p "$bundle"
cp -a "$root" "$bundle/rootfs"
(cd "$bundle" && runc spec)
jq '.process.terminal=false | .process.args=["sleep","3600"] | .root.readonly=false' \
	"$bundle/config.json" >"$bundle/c.json" && mv "$bundle/c.json" "$bundle/config.json"
# (kept running until all are sampled, then deleted, as bench-instance does)
samples=()
for i in $(seq "$COUNT"); do
	t0=$(date +%s%N)
	runc --root "$tmp/rawroot" run -d --bundle "$bundle" --pid-file "$tmp/raw.pid" "raw-$i" \
		>/dev/null 2>&1 </dev/null
	t1=$(date +%s%N)
	samples+=($(((t1 - t0) / 1000)))
done
for i in $(seq "$COUNT"); do
	runc --root "$tmp/rawroot" delete --force "raw-$i" >/dev/null 2>&1
done
sorted=$(printf '%s\n' "${samples[@]}" | sort -n)
p() { echo "$sorted" | awk -v q="$1" -v n="${#samples[@]}" 'NR==int(q*(n-1)+0.5)+1 {printf "%.1f", $1/1000}'; }
raw50=$(p 0.5); raw99=$(p 0.99)

"$BUILD/bench/bench-instance" --profile bench --count "$COUNT" --density "$DENSITY" \
	--raw-p50-ms "$raw50" --raw-p99-ms "$raw99"
