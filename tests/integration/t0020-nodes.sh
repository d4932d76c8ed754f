#!/usr/bin/env bash
# Nodes: an agent joins its zone with a one-use token, heartbeats, shows Ready;
# a silent agent turns NotReady; a restarted agent comes back with its saved
# credentials; a used token cannot join a second node.
. "$(dirname "$0")/lib.sh"

init_region || exit 1
start_cield --node-timeout-s 2 || exit 1
CRED=$DATA/operator.credentials
OK=$(cred key_id "$CRED"); OS=$(cred secret "$CRED")
body() { sreq "$@" | cut -d' ' -f2-; }
state() { body "$OK" "$OS" region GET /v1/nodes "" - | jq -r ".items[]|select(.name==\"$1\")|.state"; }
wait_state() { # node state seconds
	for _ in $(seq $((${3} * 10))); do [ "$(state "$1")" = "$2" ] && return 0; sleep 0.1; done
	echo "node $1 is '$(state "$1")', want $2"; return 1
}
agent() { # zone token
	"$CIEL_BIN/ciel-agent" --endpoint "$URL" --ca-file "$DATA/pki/ca.pem" --zone "$1" \
		--name "node-$1" --state "$T/agent-$1" --token "$2" --heartbeat-s 1 >>"$T/agent-$1.log" 2>&1 &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
}

echo '{"zone":"az2"}' >"$T/tok.json"
TOKEN=$(body "$OK" "$OS" region POST /v1/nodes/tokens "" "$T/tok.json" | jq -r .token)
check "operator creates a join token" test -n "$TOKEN" -a "$TOKEN" != null
echo '{"zone":"az9"}' >"$T/bad.json"
check "a token for an unknown zone is refused (400 zone)" test "$(body "$OK" "$OS" region POST /v1/nodes/tokens "" "$T/bad.json" | jq -r .error.field)" = zone

agent az2 "$TOKEN"
check "the agent joins and is Ready" wait_state node-az2 Ready 10
check "its capacity is reported" test "$(body "$OK" "$OS" region GET /v1/nodes "" - | jq '.items[0].capacity.cpu_millis > 0 and .items[0].capacity.memory_bytes > 0')" = true
check "zone az2 counts one ready node" test "$(body "$OK" "$OS" region GET /v1/zones "" - | jq -r '.items[]|select(.name=="az2")|.ready_nodes')" = 1
check "node credentials are saved 0600" test "$(stat -c %a "$T/agent-az2/node.credentials" 2>/dev/null)" = 600

kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "a silent node turns NotReady" wait_state node-az2 NotReady 10
agent az2 "$TOKEN"
check "the restarted agent is Ready again with its saved key" wait_state node-az2 Ready 10
kill -TERM "$AGENT_PID"; wait "$AGENT_PID"; rc=$?
check "the agent exits 0 on SIGTERM" test "$rc" -eq 0

printf '{"token":"%s","name":"intruder","zone":"az2"}' "$TOKEN" >"$T/join.json"
r=$(curl -s --cacert "$DATA/pki/ca.pem" --data-binary "@$T/join.json" "$URL/v1/nodes:join")
check "a used token cannot join another node (401)" test "$(jq -r .error.code <<<"$r")" = unauthenticated
NK=$(cred key_id "$T/agent-az2/node.credentials"); NS=$(cred secret "$T/agent-az2/node.credentials")
check "a node key cannot list tenants (403)" test "$(sreq "$NK" "$NS" region GET /v1/tenants "" - | cut -d' ' -f1)" = 403
echo '{}' >"$T/hb.json"
check "a node cannot heartbeat for another node (403)" test "$(sreq "$NK" "$NS" region POST /v1/nodes/node-az1:heartbeat "" "$T/hb.json" | cut -d' ' -f1)" = 403
check "joins and heartbeats are in the region chain" test "$(body "$OK" "$OS" region GET /v1/audit "action=node.&limit=1000" - | jq '[.items[]|select(.action=="node.join" and .status==201)]|length')" -ge 1
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
PIDS=()
for d in "$T"/agent-*/; do
	z=$(basename "$d"); z=${z#agent-}
	[ -f "$d/node.credentials" ] || continue
	check "teardown of node-$z removes what it made" "$CIEL_BIN/ciel-agent" teardown --state "$d" --name "node-$z"
done
finish
