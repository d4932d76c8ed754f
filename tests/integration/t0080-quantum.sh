#!/usr/bin/env bash
# Issue 5's "done when": after `ciel up`, a tenant runs a Bell circuit on the
# superconducting profile and sees its noise (some 01/10), on the ideal one
# only 00/11. Then the service's edges: bad QASM and unknown profiles are 400s
# naming line/column and the profiles, quotas are 403s naming the quota,
# another tenant sees nothing (404), a long job is cancelled and its worker
# is gone, two jobs on one node run on disjoint CPUs while a third waits for a
# core, every job's events are in the tenant's audit chain, and `ciel down`
# leaves no worker behind.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v runc >/dev/null; then
	echo "# SKIP: needs root and runc (scripts/deps.sh installs runc)"; exit 0
fi
UP=$T/up
DATA=$UP # for sreq
down() { ciel down --data "$UP" >/dev/null 2>&1; }
trap 'down; cleanup' EXIT

# one node: the CPU checks below need the jobs side by side
expect_exit 0 "ciel up starts a one-node region" ciel up --data "$UP" --listen "127.0.0.1:$PORT" --zones 1
ready=0
for _ in $(seq 100); do
	ready=$(ciel node list --output json 2>/dev/null | jq '[.items[]|select(.state=="Ready")]|length')
	[ "$ready" = 1 ] && break; sleep 0.1
done
check "the node is Ready" test "$ready" = 1
ncpu=$(ciel node list --output json | jq '.items[0].capacity.cpu_millis/1000|floor')
ciel tenant create acme --save-profile acme >/dev/null 2>&1
ciel tenant create beta --save-profile beta >/dev/null 2>&1
A() { ciel --profile acme "$@"; }
B() { ciel --profile beta "$@"; }
export -f ciel A B

cat >"$T/bell.qasm" <<'EOF'
OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0], q[1];
measure q -> c;
EOF
# a circuit that runs long: a measurement first makes every shot a simulation of its own
long_qasm() { # qubits layers
	local n=$1 l=$2 i k
	printf 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[%d];\ncreg c[%d];\nmeasure q[0] -> c[0];\n' "$n" "$n"
	for ((k = 0; k < l; k++)); do
		echo "h q;"
		for ((i = 0; i + 1 < n; i++)); do echo "cx q[$i], q[$((i + 1))];"; done
		echo "rz(0.3) q;"
	done
	echo "measure q -> c;"
}
job_state() { A quantum result "$1" --output json 2>/dev/null | jq -r .state; }
wait_job_state() { # id regex seconds
	local st
	for _ in $(seq $(($3 * 5))); do
		st=$(job_state "$1"); [[ "$st" =~ ^($2)$ ]] && return 0; sleep 0.2
	done
	echo "job $1 is $st, wanted $2" >&2; return 1
}
worker_alive() { pgrep -f "^ciel-qsim job acme/$1 " >/dev/null; }
worker_uid() { ps -o uid= -p "$(pgrep -f "^ciel-qsim job $1/$2 " | head -1)" | tr -d ' '; }
jqe() { test -s "$2" && jq -e "$1" "$2" >/dev/null; } # filter file: true on a non-empty file only

# profiles
expect_exit 0 "quantum profiles" A quantum profiles --output json
check "the four profiles are listed" jqe '[.items[].name] as $n | all(("ideal","superconducting","neutral-atom","photonic"); . as $p | $n|index($p))' "$T/out"
expect_exit 0 "quantum profiles as a table" A quantum profiles
check "the table names superconducting" grep -q superconducting "$T/out"

# the Bell pair: noise on the superconducting profile, none on ideal
expect_exit 0 "bell on superconducting --wait" A quantum run "$T/bell.qasm" --shots 1000 --profile superconducting --wait --output json
cp "$T/out" "$T/sc.json"
check "it completed" test "$(jq -r .state "$T/sc.json")" = completed
check "all 1000 shots are counted" test "$(jq '[.result.counts[]]|add' "$T/sc.json")" = 1000
check "the device's noise shows: some 01 or 10" test "$(jq '(.result.counts["01"] // 0) + (.result.counts["10"] // 0)' "$T/sc.json")" -gt 0
check "but 00 and 11 dominate" test "$(jq '(.result.counts["00"] // 0) + (.result.counts["11"] // 0)' "$T/sc.json")" -gt 800
check "the transpiled circuit has a depth and native gate counts" jqe ".result.depth > 0 and (.result.gate_counts|length > 0) and .duration_s >= 0" "$T/sc.json"
check "the job ran on some cpus" jqe ".cpus|length >= 1" "$T/sc.json"
check "the seed was chosen and shown" jqe ".seed|type == \"number\"" "$T/sc.json"
check "state changes were shown on stderr" bash -c "grep -qE ': (queued|running)' '$T/err' && grep -q ': completed' '$T/err'"
SC=$(jq -r .id "$T/sc.json")
expect_exit 0 "bell on ideal --wait (table)" A quantum run "$T/bell.qasm" --shots 1000 --device ideal --seed 11 --wait
check "the table shows counts, shots and the profile" bash -c "grep -qE '^(00|11) ' '$T/out' && grep -q 'shots: 1000' '$T/out' && grep -q 'profile: ideal' '$T/out'"
check "the table has bars" grep -q '####' "$T/out"
expect_exit 0 "bell on ideal --wait (json)" A quantum run "$T/bell.qasm" --shots 1000 --profile ideal --seed 11 --wait --output json
check "ideal: only 00 and 11" jqe '.result.counts|keys - ["00","11"] | length == 0' "$T/out"
check "ideal: both 00 and 11 appear" jqe '.result.counts["00"] > 300 and .result.counts["11"] > 300' "$T/out"
c1=$(jq -c .result.counts "$T/out")
A quantum run "$T/bell.qasm" --shots 1000 --profile ideal --seed 11 --wait --output json >"$T/again.json" 2>/dev/null
check "the same seed gives the same counts" test "$(jq -c .result.counts "$T/again.json")" = "$c1"

# list and result
expect_exit 0 "quantum jobs" A quantum jobs --output json
check "the jobs are listed" test "$(jq '.items|length' "$T/out")" -ge 3
check "the list carries neither qasm nor counts" jqe 'all(.items[]; (has("qasm")|not) and ((.result // {})|has("counts")|not))' "$T/out"
expect_exit 0 "quantum jobs as a table" A quantum jobs
check "the table shows the job" grep -q "$SC" "$T/out"
expect_exit 0 "quantum result" A quantum result "$SC" --output json
check "the result has counts and the qasm" jqe '.result.counts and (.qasm|test("OPENQASM"))' "$T/out"

# refusals before anything is stored
printf 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nfoo q[0];\n' >"$T/bad.qasm"
expect_exit 1 "bad QASM is refused" A quantum run "$T/bad.qasm"
check "with its line and column" bash -c "grep -q 'line 4' '$T/err' && grep -q 'column' '$T/err' && grep -q invalid_argument '$T/err'"
expect_exit 1 "an unknown profile is refused" A quantum run "$T/bell.qasm" --profile nosuch
check "listing the profiles" bash -c "grep -q 'field: profile' '$T/err' && grep -q superconducting '$T/err' && grep -q photonic '$T/err'"
expect_exit 1 "too many shots for the quota" A quantum run "$T/bell.qasm" --shots 200000
check "the refusal names quantum_max_shots" bash -c "grep -q quota_exceeded '$T/err' && grep -q quantum_max_shots '$T/err'"
printf 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[29];\ncreg c[29];\nh q;\nmeasure q -> c;\n' >"$T/wide.qasm"
expect_exit 1 "too many qubits for the quota" A quantum run "$T/wide.qasm" --shots 10
check "the refusal names quantum_max_qubits" grep -q quantum_max_qubits "$T/err"
expect_exit 2 "bad --shots is a usage error" A quantum run "$T/bell.qasm" --shots lots
expect_exit 2 "bad --precision is a usage error" A quantum run "$T/bell.qasm" --precision half
check "nothing refused was stored" test "$(A quantum jobs --output json | jq '.items|length')" = 4

# a job that fails on its node: its result would not fit an API body
printf 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[20];\ncreg c[20];\nh q;\nmeasure q -> c;\n' >"$T/big.qasm"
expect_exit 1 "a job whose result is over 1 MiB fails" A quantum run "$T/big.qasm" --shots 100000 --wait
check "saying why" bash -c "grep -q 'result over 1 MiB' '$T/err' && grep -q 'failed' '$T/err'"

# tenant isolation: 404, never 403
expect_exit 1 "beta cannot read acme's job" B quantum result "$SC"
check "it is not_found" grep -q not_found "$T/err"
expect_exit 1 "beta cannot cancel acme's job" B quantum delete "$SC"
check "delete is not_found too" grep -q not_found "$T/err"
check "acme's job is still there" test "$(job_state "$SC")" = completed

# two narrow jobs side by side on disjoint cpus; a third waits for a core
long_qasm 14 60 >"$T/narrow.qasm"
A quantum run "$T/narrow.qasm" --shots 100000 --name n1 --output json >"$T/n1.json" 2>&1
A quantum run "$T/narrow.qasm" --shots 100000 --name n2 --output json >"$T/n2.json" 2>&1
N1=$(jq -r .id "$T/n1.json"); N2=$(jq -r .id "$T/n2.json")
check "n1 runs" wait_job_state "$N1" running 20
if [ "$ncpu" -ge 2 ]; then
	check "n2 runs beside it" wait_job_state "$N2" running 20
	c1=$(A quantum result "$N1" --output json 2>/dev/null | jq -c .cpus)
	c2=$(A quantum result "$N2" --output json 2>/dev/null | jq -c .cpus)
	check "n1 and n2 have cpus ($c1, $c2)" test -n "$c1" -a "$c1" != null -a -n "$c2" -a "$c2" != null
	check "their cpus are disjoint" test "$(jq -n "$c1 - ($c1 - $c2) | length")" = 0
fi
expect_exit 0 "a third job while the cores are taken" A quantum run "$T/narrow.qasm" --shots 100000 --name n3 --output json
N3=$(jq -r .id "$T/out")
sleep 2
A quantum result "$N3" --output json >"$T/n3.json" 2>/dev/null
check "the third job waits for a core" jqe '.state == "queued" and (.waiting|test("free core"))' "$T/n3.json"
expect_exit 1 "result of a running job exits 1" A quantum result "$N1"
check "saying it is not finished" grep -q not_finished "$T/err"
check "n1's worker is a process" worker_alive "$N1"
uid_n1=$(worker_uid acme "$N1")
check "n1's worker does not run as root" test -n "$uid_n1" -a "$uid_n1" != 0
expect_exit 0 "cancel n1" A quantum cancel "$N1"
check "n1 is cancelled" test "$(job_state "$N1")" = cancelled
gone=0
for _ in $(seq 50); do worker_alive "$N1" || { gone=1; break; }; sleep 0.1; done
check "n1's worker is gone" test "$gone" = 1
check "the third job takes the freed core" wait_job_state "$N3" running 20
expect_exit 1 "cancelling a cancelled job fails" A quantum cancel "$N1"
check "pointing to delete" grep -q "quantum delete" "$T/err"
A quantum cancel "$N2" >/dev/null 2>&1
A quantum cancel "$N3" >/dev/null 2>&1
check "no worker of n2 or n3 is left" bash -c "sleep 3; ! pgrep -f '^ciel-qsim job acme/($N2|$N3) '"

# quantum_max_jobs, set by the operator
OK=$(cred key_id "$UP/operator.credentials"); OS=$(cred secret "$UP/operator.credentials")
echo '{"quantum_max_jobs":1}' >"$T/q.json"
sreq "$OK" "$OS" region PUT /v1/quota tenant=beta "$T/q.json" >"$T/sreq.out"
check "the operator sets beta's quantum_max_jobs" grep -q '^200 ' "$T/sreq.out"
expect_exit 0 "beta's first job" B quantum run "$T/narrow.qasm" --shots 100000 --output json
B1=$(jq -r .id "$T/out")
expect_exit 1 "beta's second job is refused" B quantum run "$T/bell.qasm"
check "the refusal names quantum_max_jobs" grep -q quantum_max_jobs "$T/err"
B quantum delete "$B1" >/dev/null 2>&1

# a wide job takes every free core, and a cancel kills it
long_qasm 22 30 >"$T/wide22.qasm"
expect_exit 0 "a 22-qubit job" A quantum run "$T/wide22.qasm" --shots 1000 --name wide --output json
W=$(jq -r .id "$T/out")
check "it runs" wait_job_state "$W" running 30
check "on every core of the node" test "$(A quantum result "$W" --output json 2>/dev/null | jq '.cpus|length')" = "$ncpu"
sleep 2
check "still running two seconds later" test "$(job_state "$W")" = running
check "its worker is a process" worker_alive "$W"
expect_exit 0 "delete cancels it" A quantum delete "$W"
gone=0
for _ in $(seq 50); do worker_alive "$W" || { gone=1; break; }; sleep 0.1; done
check "the wide job's worker is gone" test "$gone" = 1
expect_exit 1 "and the job is gone" A quantum result "$W"

# the agent dies hard: its worker goes with it, and the job runs again (same seed) once it is back
expect_exit 0 "a job to outlive its agent" A quantum run "$T/narrow.qasm" --shots 100000 --name phoenix --output json
P=$(jq -r .id "$T/out")
check "it runs" wait_job_state "$P" running 20
wpid=$(pgrep -f "^ciel-qsim job acme/$P " | head -1)
kill -9 "$(cat "$UP/agents/az1/agent.pid")"
sleep 0.5
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null); [ -n "$st" ] && [[ "$st" != Z* ]]; }
check "its worker died with the agent" bash -c "$(declare -f alive); ! alive '$wpid'"
expect_exit 0 "ciel up restarts the agent" ciel up --data "$UP" --listen "127.0.0.1:$PORT"
again=0
for _ in $(seq 100); do
	w=$(pgrep -f "^ciel-qsim job acme/$P " | head -1)
	[ -n "$w" ] && [ "$w" != "$wpid" ] && { again=1; break; }
	sleep 0.1
done
check "the job runs again in a new worker" test "$again" = 1
check "and is still running" test "$(job_state "$P")" = running
A quantum delete "$P" >/dev/null 2>&1

# the audit trail
expect_exit 0 "acme's audit trail" A audit list --limit 1000 --output json
for act in qjob.create qjob.place qjob.running qjob.completed qjob.delete qjob.wait; do
	check "it has $act" jqe "[.items[].action]|index(\"$act\")" "$T/out"
done
check "the node's report is in acme's chain under the job" jqe "[.items[]|select(.action==\"qjob.completed\" and .target==\"/v1/quantum/jobs/$SC\")]|length == 1" "$T/out"
expect_exit 0 "acme's chain verifies" A audit verify

# nothing left behind
down
check "ciel down left no simulator running" bash -c "! pgrep -f '^ciel-qsim job '"
check "no sanitizer report in cield's or the agent's log" bash -c "! grep -l 'Sanitizer' '$UP'/cield.log '$UP'/agents/*/agent.log"
finish
