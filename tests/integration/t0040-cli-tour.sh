#!/usr/bin/env bash
# The issue's "done when", as a new user types it: `ciel up` brings a 3-zone
# region up in under 2 s, a tenant and a key are made, the API is used with
# the CLI, every call (refused ones too) is in `ciel audit list`, `ciel audit
# verify` passes, and fails once one byte of a stored event changes.
. "$(dirname "$0")/lib.sh"

UP=$T/up
down() { ciel down --data "$UP" >/dev/null 2>&1; }
trap 'down; cleanup' EXIT

expect_exit 0 "ciel up starts a region" ciel up --data "$UP" --listen "127.0.0.1:$PORT" --output json
cp "$T/out" "$T/up.json"
ms=$(jq -r '.ready_ms // empty' "$T/up.json")
check "the API was ready in under 2 s (${ms:-?} ms)" test -n "$ms" -a "${ms:-9999}" -lt 2000
check "up wrote the operator profile" grep -q '^\[default\]' "$HOME/.config/ciel/credentials"
expect_exit 0 "ciel up again says it is already up" ciel up --data "$UP" --listen "127.0.0.1:$PORT"

expect_exit 0 "zone list" ciel zone list --output json
check "three zones" test "$(jq '.items|length' "$T/out")" = 3
ready=0
for _ in $(seq 100); do
	ready=$(ciel node list --output json 2>/dev/null | jq '[.items[]|select(.state=="Ready")]|length')
	[ "$ready" = 3 ] && break; sleep 0.1
done
check "one Ready node per zone" test "$ready" = 3

expect_exit 0 "tenant create prints the key once" ciel tenant create acme --save-profile acme
check "the secret is shown" grep -qi "secret" "$T/out"
expect_exit 0 "key create for a reader" ciel --profile acme key create --principal rita --role reader --save-profile rita
expect_exit 0 "key list as table" ciel --profile acme key list
check "the table lists rita" grep -q rita "$T/out"
check "the table shows no secret" bash -c "! grep -q \"\$(sed -n 's/^secret *= *//p' '$HOME/.config/ciel/credentials' | tail -1)\" '$T/out'"
expect_exit 0 "quota show" ciel --profile acme quota show --output json
check "default quota is there" test "$(jq '.limits.instances' "$T/out")" -gt 0
expect_exit 0 "operator sets acme's quota" ciel quota set --tenant acme --instances 50 --memory 64G --output json
check "the new quota is stored" test "$(ciel --profile acme quota show --output json | jq '.limits.instances, .limits.memory_bytes' | tr '\n' ' ')" = "50 68719476736 "
expect_exit 0 "operator sets acme's quantum quota" ciel quota set --tenant acme --quantum-jobs 7 --quantum-qubits 20
check "quantum limits are stored, others kept" test "$(ciel --profile acme quota show --output json | jq '.limits.quantum_max_jobs, .limits.quantum_max_qubits, .limits.instances' | tr '\n' ' ')" = "7 20 50 "
ciel --profile acme quota show >"$T/quota.txt"
check "the quota table lists quantum limits" grep -q '^quantum jobs  *7 ' "$T/quota.txt"
expect_exit 2 "a quantum limit that is not a count" ciel quota set --tenant acme --quantum-shots many
expect_exit 1 "a reader cannot create keys (exit 1)" ciel --profile rita key create --principal mallory
check "the refusal says permission_denied" grep -q permission_denied "$T/err"
expect_exit 1 "a forged secret is refused (exit 1)" env CIEL_SECRET=forged "$CIEL_BIN/ciel" --profile acme key list
expect_exit 2 "usage error exits 2" ciel key frobnicate
expect_exit 0 "--help exits 0" ciel audit --help

expect_exit 0 "audit list" ciel --profile acme audit list --output json --limit 1000
check "the refused key creation is in acme's trail" bash -c "jq -e '[.items[]|select(.action==\"key.create\" and .status==403)]|length>=1' '$T/out'"
check "the forged request is in acme's trail" bash -c "jq -e '[.items[]|select(.status==401)]|length>=1' '$T/out'"
check "the quota changes by the operator are in acme's trail" bash -c "jq -e '[.items[]|select(.action==\"quota.set\" and .actor.tenant==\"region\")]|length==2' '$T/out'"
expect_exit 0 "audit list --action filters" ciel --profile acme audit list --action key.create --output json
check "only key.create events" test "$(jq '[.items[]|select(.action!="key.create")]|length' "$T/out")" = 0
expect_exit 0 "audit verify passes" ciel --profile acme audit verify
expect_exit 0 "audit export writes JSON lines" ciel --profile acme audit export --file "$T/acme.jsonl"
check "every exported line is an event with a hash" bash -c "jq -e -s 'length>5 and all(.[]; (.hash|length)==64)' '$T/acme.jsonl' >/dev/null"

k=$(printf '/audit/acme/e/%016d' 3)
V="CAST(value AS TEXT)"; P="instr($V, '\"request_id\":\"')"
sqlite3 "$UP/region.db" "UPDATE kv SET value = CAST(substr($V, 1, $P + 13) || 'X' || substr($V, $P + 15) AS BLOB) WHERE key = '$k'"
expect_exit 1 "audit verify fails after one byte changed" ciel --profile acme audit verify
check "it names seq 3" grep -q "seq 3" "$T/out" "$T/err"

ciel --profile acme key create --principal tmp --output json >"$T/tmp.json"
expect_exit 0 "key delete" ciel --profile acme key delete "$(jq -r .id "$T/tmp.json")"
check "says it was deleted" grep -q "deleted" "$T/out"
expect_exit 1 "deleting it again: not found (exit 1)" ciel --profile acme key delete "$(jq -r .id "$T/tmp.json")"
expect_exit 0 "principal delete takes its keys" ciel --profile acme principal delete rita
expect_exit 1 "rita's saved key no longer works" ciel --profile rita quota show
expect_exit 2 "tenant delete without --yes and no terminal: usage error" ciel tenant delete acme </dev/null
expect_exit 0 "tenant delete --yes" ciel tenant delete acme --yes --output json
check "the answer names it" test "$(jq -r .deleted "$T/out")" = acme
expect_exit 0 "ciel down stops the region" ciel down --data "$UP"
check "nothing is left listening" bash -c "! curl -s --cacert '$UP/pki/ca.pem' https://127.0.0.1:$PORT/healthz"
expect_exit 1 "connection refused exits 1" ciel zone list
check "with a hint to start a region" grep -q "make up" "$T/err"
finish
