#!/usr/bin/env bash
# What survives what: an agent killed with -9 and restarted adopts its running
# container (same process, no duplicate, no orphan); a cield killed with -9
# and restarted loses no instance; a node that stops heartbeating turns
# NotReady and its restart=always instance is re-placed on another node, and
# when that node comes back it removes the stale copy.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v runc >/dev/null; then
	echo "# SKIP: needs root and runc (scripts/deps.sh installs runc)"; exit 0
fi
UP=$T/up
down() { ciel down --data "$UP" >/dev/null 2>&1; }
trap 'down; cleanup' EXIT
A() { ciel --profile acme "$@"; }
export -f ciel A
# runc's view of one node: the containers its agent's runtime holds
containers() { runc --root "$UP/agents/$1/runtime" list -q 2>/dev/null | sort; }
init_pid() { jq -r .pid "$UP/agents/$1/instances/acme/$2/status.json" 2>/dev/null; }
agent_pid() { cat "$UP/agents/$1/agent.pid"; }

expect_exit 0 "ciel up" ciel up --data "$UP" --listen "127.0.0.1:$PORT"
ciel tenant create acme --save-profile acme >/dev/null 2>&1
mk_busybox_tar "$T/bb.tar"
A image import busybox "$T/bb.tar" >/dev/null 2>&1
expect_exit 0 "run keep on az1" A instance run busybox --name keep --zone az1 --cpu 0.1 --wait \
	-- sh -c 'echo started; while true; do sleep 1; done'
expect_exit 0 "run phoenix (restart always) on az2" A instance run busybox --name phoenix --zone az2 \
	--cpu 0.1 --restart always --wait -- sh -c 'while true; do sleep 1; done'
pid0=$(init_pid az1 keep)
check "keep has a container process" kill -0 "$pid0"

# the agent of az1 dies hard and comes back
kill -9 "$(agent_pid az1)"
sleep 0.5
check "the container outlives its agent" kill -0 "$pid0"
expect_exit 0 "ciel up restarts the missing agent" ciel up --data "$UP" --listen "127.0.0.1:$PORT"
sleep 3
check "keep is still running" wait_instance acme keep running 10
check "with the same process (adopted, not restarted)" test "$(init_pid az1 keep)" = "$pid0"
check "and one container, not two" test "$(containers az1)" = "acme-keep"
check "its log says started once" test "$(A instance logs keep | grep -c started)" = 1

# cield dies hard and comes back
kill -9 "$(cat "$UP/cield.pid")"
sleep 0.5
expect_exit 0 "ciel up restarts cield" ciel up --data "$UP" --listen "127.0.0.1:$PORT"
expect_exit 0 "instance list after the restart" A instance list --output json
check "both instances are still there and running" test "$(jq '[.items[]|select(.state=="running")]|length' "$T/out")" = 2
check "keep still has the same process" test "$(init_pid az1 keep)" = "$pid0"

# the node of az2 goes silent: phoenix moves
az2=$(agent_pid az2)
kill -STOP "$az2"
moved=0
for _ in $(seq 150); do
	z=$(A instance show phoenix --output json 2>/dev/null | jq -r 'select(.state=="running")|.zone')
	[ -n "$z" ] && [ "$z" != az2 ] && { moved=1; break; }
	sleep 0.2
done
check "phoenix was re-placed off the silent node and runs" test "$moved" = 1
check "the move is in acme's audit trail" bash -c "ciel --profile acme audit list --action instance.replace --output json | jq -e '.items|length>=1'"
check "keep (restart no) stayed where it was" test "$(A instance show keep --output json | jq -r .zone)" = az1
kill -CONT "$az2"
gone=0
for _ in $(seq 50); do [ -z "$(containers az2)" ] && { gone=1; break; }; sleep 0.2; done
check "the node that came back removed its stale copy" test "$gone" = 1
check "phoenix runs once, on its new node" test "$(A instance list --output json | jq '[.items[]|select(.name=="phoenix" and .state=="running")]|length')" = 1

for n in keep phoenix; do A instance delete "$n" --wait >/dev/null 2>&1; done
finish
