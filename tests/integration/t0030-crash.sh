#!/usr/bin/env bash
# Durability: SIGKILL cield at random moments under concurrent signed writes,
# restart it, and check that every acknowledged write is there, that writes
# and their audit events committed together (as many keys as 201 key.create
# events), and that both chains still verify.
. "$(dirname "$0")/lib.sh"

ROUNDS=${CRASH_ROUNDS:-4}
WRITERS=4
init_region || exit 1
start_cield || exit 1
CRED=$DATA/operator.credentials
OK=$(cred key_id "$CRED"); OS=$(cred secret "$CRED")
echo '{"name":"acme"}' >"$T/acme.json"
r=$(sreq "$OK" "$OS" region POST /v1/tenants "" "$T/acme.json")
AK=$(jq -r .key.id <<<"${r#* }"); AS=$(jq -r .key.secret <<<"${r#* }")
: >"$T/acked"

writer() { # id
	local i=0 r
	while [ ! -f "$T/stop" ]; do
		i=$((i + 1))
		printf '{"principal":"w%s-%s-%s","role":"reader"}' "$1" "$round" "$i" >"$T/w$1.json"
		r=$(sreq "$AK" "$AS" acme POST /v1/keys "" "$T/w$1.json" 2>/dev/null)
		# only a 201 is an acknowledgement; anything else (connection refused) is not
		[ "${r%% *}" = 201 ] && jq -r .id <<<"${r#* }" >>"$T/acked.$1"
	done
}

for round in $(seq "$ROUNDS"); do
	rm -f "$T/stop"
	wp=()
	for w in $(seq $WRITERS); do writer "$w" & wp+=($!); PIDS+=($!); done
	sleep "$((1 + RANDOM % 2)).$((RANDOM % 10))" # a random moment, 1-3 s into the load
	kill -9 "$CIELD_PID"; wait "$CIELD_PID" 2>/dev/null
	touch "$T/stop"
	for p in "${wp[@]}"; do wait "$p" 2>/dev/null; done
	start_cield || { not_ok "cield restarts after kill -9 (round $round)"; finish; }
done
cat "$T"/acked.* >"$T/acked" 2>/dev/null
n_acked=$(wc -l <"$T/acked")
check "writes were acknowledged before the kills ($n_acked)" test "$n_acked" -ge "$ROUNDS"

body() { sreq "$@" | cut -d' ' -f2-; }
body "$OK" "$OS" region GET /v1/keys "tenant=acme" - | jq -r '.items[].id' | sort >"$T/present"
missing=$(sort "$T/acked" | comm -23 - "$T/present" | wc -l)
check "every acknowledged key survived kill -9 (missing: $missing)" test "$missing" -eq 0

# events and keys commit together: one 201 key.create event per key that exists
n_keys=$(($(wc -l <"$T/present") - 1)) # minus the admin key made with the tenant
n_events=0 after=0
while :; do
	page=$(body "$AK" "$AS" acme GET /v1/audit "action=key.create&after=$after&limit=1000" -)
	c=$(jq '[.items[]|select(.status==201)]|length' <<<"$page")
	n_events=$((n_events + c))
	[ "$(jq '.items|length' <<<"$page")" -lt 1000 ] && break
	after=$(jq .next_after <<<"$page")
done
check "as many keys ($n_keys) as 201 key.create events ($n_events)" test "$n_keys" -eq "$n_events"
check "acme's chain verifies after the crashes" test "$(body "$AK" "$AS" acme POST /v1/audit:verify "" - | jq -r .ok)" = true
check "region chain verifies after the crashes" test "$(body "$OK" "$OS" region POST /v1/audit:verify "" - | jq -r .ok)" = true
finish
