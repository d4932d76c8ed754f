# Shared by the integration tests (git t/test-lib.sh style): a private HOME,
# data dir and port per test, the real cield on loopback, and cleanup of every
# process it started, by PID, whatever happens.
set -uo pipefail
: "${CIEL_BIN:?set CIEL_BIN to the build directory}"
: "${CIEL_SRC:?set CIEL_SRC to the source directory}"

T=$(mktemp -d /tmp/ciel-t.XXXXXX)
export HOME=$T/home
mkdir -p "$HOME/.config/ciel"
unset CIEL_ENDPOINT CIEL_KEY_ID CIEL_SECRET CIEL_SCOPE CIEL_CA_FILE CIEL_PROFILE CIEL_CREDENTIALS_FILE
DATA=$T/data
PIDS=()
n_ok=0
n_fail=0

free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo $p; return; fi
	done
	echo 29999
}
PORT=$(free_port)
URL=https://127.0.0.1:$PORT

cleanup() {
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [ "$n_fail" -gt 0 ] && [ -f "$T/cield.log" ]; then
		echo "--- cield.log (tail)"; tail -30 "$T/cield.log"
	fi
	rm -rf "$T"
}
trap cleanup EXIT

ok() { n_ok=$((n_ok + 1)); echo "ok $((n_ok + n_fail)) - $*"; }
not_ok() { n_fail=$((n_fail + 1)); echo "not ok $((n_ok + n_fail)) - $*"; }
check() { # description, command...
	local d=$1; shift
	# its own files: a check often greps the out/err of the expect_exit before it
	if "$@" >"$T/check.out" 2>"$T/check.err"; then ok "$d"; else not_ok "$d"; sed 's/^/#   /' "$T/check.out" "$T/check.err" | tail -15; fi
}
# expect_exit CODE description command...
expect_exit() {
	local want=$1 d=$2 got; shift 2
	"$@" >"$T/out" 2>"$T/err"; got=$?
	if [ "$got" -eq "$want" ]; then ok "$d"; else not_ok "$d (exit $got, want $want)"; sed 's/^/#   /' "$T/out" "$T/err" | tail -15; fi
}
finish() {
	echo "# $n_ok passed, $n_fail failed"
	[ "$n_fail" -eq 0 ]
	exit $?
}

ciel() { "$CIEL_BIN/ciel" "$@"; }
cield() { "$CIEL_BIN/cield" "$@"; }

init_region() { # [extra init flags]
	cield init --data "$DATA" --listen "127.0.0.1:$PORT" "$@" >"$T/init.out" 2>&1 || {
		cat "$T/init.out"; return 1; }
	cp "$DATA/operator.credentials" "$HOME/.config/ciel/credentials"
}

start_cield() { # [extra serve flags]
	# the binary itself, not the cield() function: $! must be cield's own PID
	"$CIEL_BIN/cield" serve --data "$DATA" --listen "127.0.0.1:$PORT" "$@" >>"$T/cield.log" 2>&1 &
	CIELD_PID=$!
	PIDS+=("$CIELD_PID")
	wait_ready
}

wait_ready() {
	for _ in $(seq 400); do
		curl -sf --cacert "$DATA/pki/ca.pem" "$URL/healthz" >/dev/null 2>&1 && return 0
		sleep 0.025
	done
	echo "cield did not become ready"; tail -20 "$T/cield.log"; return 1
}

stop_cield() { # signal
	kill "-${1:-TERM}" "$CIELD_PID" 2>/dev/null
	wait "$CIELD_PID" 2>/dev/null
	return 0
}

# Raw signed request with sigtool: sreq KEY SECRET SCOPE METHOD PATH QUERY BODY_FILE [DATE_OFFSET]
# prints "HTTP_CODE BODY"
sreq() {
	local key=$1 secret=$2 scope=$3 method=$4 path=$5 query=$6 body=$7 off=${8:-0} hdrs=() url
	mapfile -t hdrs < <("$CIEL_BIN/tests/sigtool" "$key" "$secret" "$scope" "$method" "$path" "$query" "127.0.0.1:$PORT" "$body" "$off")
	url="$URL$path"; [ -n "$query" ] && url="$url?$query"
	local bf; bf=$(mktemp "$T/body.XXXXXX") # callers run sreq concurrently
	local args=(-s -o "$bf" -w '%{http_code}' --cacert "$DATA/pki/ca.pem" -X "$method")
	for h in "${hdrs[@]}"; do args+=(-H "$h"); done
	[ "$body" != "-" ] && args+=(--data-binary "@$body" -H 'Content-Type: application/json')
	local code; code=$(curl "${args[@]}" "$url")
	echo "$code $(cat "$bf")"
	rm -f "$bf"
}
# Request reusing the exact headers of the previous sreq (a replay).
cred() { sed -n "s/^$1 *= *//p" "$2" | head -1; }

# A busybox root filesystem as a tarball (the image the instance tests run).
mk_busybox_tar() { # out.tar
	local root=$T/bbroot
	rm -rf "$root"; mkdir -p "$root/bin" "$root/etc" "$root/tmp"
	cp /bin/busybox "$root/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
	done
	echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
	tar -C "$root" -cf "$1" .
}

# Wait until `ciel ... instance show NAME` has .state in the given set (regex).
wait_instance() { # profile name regex [seconds]
	local i st
	for i in $(seq $((${4:-30} * 5))); do
		st=$(ciel --profile "$1" instance show "$2" --output json 2>/dev/null | jq -r .state)
		[[ "$st" =~ ^($3)$ ]] && return 0
		sleep 0.2
	done
	echo "instance $2 state: $st, wanted $3" >&2
	return 1
}
