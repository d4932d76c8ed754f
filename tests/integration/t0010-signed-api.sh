#!/usr/bin/env bash
# The signed API end to end with raw requests: every refusal has its precise
# code, tenants are isolated (404, not 403), bad input is a 4xx naming the
# field, every request lands in the audit trail, and one changed byte of a
# stored event breaks `verify`.
. "$(dirname "$0")/lib.sh"

init_region || exit 1
start_cield || exit 1
CRED=$DATA/operator.credentials
OK=$(cred key_id "$CRED"); OS=$(cred secret "$CRED")
echo '{}' >"$T/empty.json"

code() { sreq "$@" | cut -d' ' -f1; }
body() { sreq "$@" | cut -d' ' -f2-; }
is() { [ "$1" = "$2" ] || { echo "got '$1', want '$2'"; return 1; }; }

check "health answers without a signature" is "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$DATA/pki/ca.pem" "$URL/healthz")" 200
r=$(curl -s --cacert "$DATA/pki/ca.pem" "$URL/v1/zones")
check "unsigned request refused: missing_authorization" is "$(jq -r .error.reason <<<"$r")" missing_authorization
check "operator lists zones" is "$(body "$OK" "$OS" region GET /v1/zones "" - | jq -r '.items|length')" 3
check "wrong secret: bad_signature" is "$(body "$OK" "wrong-secret" region GET /v1/zones "" - | jq -r .error.reason)" bad_signature
check "date 10 min old: date_skew" is "$(body "$OK" "$OS" region GET /v1/zones "" - -600 | jq -r .error.reason)" date_skew
check "date 10 min ahead: date_skew" is "$(body "$OK" "$OS" region GET /v1/zones "" - 600 | jq -r .error.reason)" date_skew
check "unknown key: unknown_key" is "$(body CKNOSUCHKEY000000 "$OS" region GET /v1/zones "" - | jq -r .error.reason)" unknown_key
check "garbage authorization: malformed_authorization" is "$(curl -s --cacert "$DATA/pki/ca.pem" -H 'Authorization: Basic Zm9vOmJhcg==' "$URL/v1/zones" | jq -r .error.reason)" malformed_authorization

# a replay: the very same signed headers twice
mapfile -t H < <("$CIEL_BIN/tests/sigtool" "$OK" "$OS" region GET /v1/region "" "127.0.0.1:$PORT" -)
replay() { curl -s -o /dev/null -w '%{http_code}' --cacert "$DATA/pki/ca.pem" -H "${H[0]}" -H "${H[1]}" -H "${H[2]}" "$URL/v1/region"; }
check "first use of a signature accepted" is "$(replay)" 200
check "same signature again: 401 replayed" is "$(replay)" 401
# a signature for one path does not authorise another
tampered=$(curl -s --cacert "$DATA/pki/ca.pem" -H "${H[0]}" -H "${H[1]}" -H "${H[2]}" "$URL/v1/zones" | jq -r .error.reason)
check "signature of another path: bad_signature" is "$tampered" bad_signature

same=0; for _ in 1 2 3 4 5; do [ "$(code "$OK" "$OS" region GET /v1/zones "" -)" = 200 ] && same=$((same + 1)); done
check "five identical requests in one second all pass (nonce)" is "$same" 5

# tenants and their keys
echo '{"name":"acme"}' >"$T/acme.json"
r=$(sreq "$OK" "$OS" region POST /v1/tenants "" "$T/acme.json")
check "operator creates tenant acme (201)" is "${r%% *}" 201
AK=$(jq -r .key.id <<<"${r#* }"); AS=$(jq -r .key.secret <<<"${r#* }")
check "tenant create returns an admin key once" test -n "$AK" -a -n "$AS" -a "$AS" != null
check "the secret is not stored in plain text" bash -c "! grep -aq -- '$AS' '$DATA/region.db' '$DATA/region.db-wal' 2>/dev/null"
check "creating acme again: 409 already_exists" is "$(body "$OK" "$OS" region POST /v1/tenants "" "$T/acme.json" | jq -r .error.code)" already_exists
echo '{"name":"beta"}' >"$T/beta.json"
r=$(sreq "$OK" "$OS" region POST /v1/tenants "" "$T/beta.json")
BK=$(jq -r .key.id <<<"${r#* }"); BS=$(jq -r .key.secret <<<"${r#* }")

check "acme admin reads its tenant" is "$(code "$AK" "$AS" acme GET /v1/tenants/acme "" -)" 200
check "acme's key under beta's scope: 403 scope_mismatch" is "$(body "$AK" "$AS" beta GET /v1/tenants/beta "" - | jq -r .error.reason)" scope_mismatch
check "acme's key under the region scope: 403" is "$(code "$AK" "$AS" region GET /v1/zones "" -)" 403
check "beta cannot see acme (404, not 403)" is "$(code "$BK" "$BS" beta GET /v1/tenants/acme "" -)" 404
check "beta cannot delete acme's key (404)" is "$(code "$BK" "$BS" beta DELETE "/v1/keys/$AK" "" -)" 404
check "a tenant admin cannot list tenants (403)" is "$(code "$AK" "$AS" acme GET /v1/tenants "" -)" 403
check "a tenant admin cannot name another tenant (403)" is "$(code "$AK" "$AS" acme GET /v1/keys "tenant=beta" -)" 403

echo '{"principal":"rita","role":"reader"}' >"$T/rita.json"
r=$(sreq "$AK" "$AS" acme POST /v1/keys "" "$T/rita.json")
check "admin creates a reader key (201)" is "${r%% *}" 201
RK=$(jq -r .id <<<"${r#* }"); RS=$(jq -r .secret <<<"${r#* }")
check "reader cannot create keys (403)" is "$(code "$RK" "$RS" acme POST /v1/keys "" "$T/rita.json")" 403
check "reader reads the tenant's audit trail" is "$(code "$RK" "$RS" acme GET /v1/audit "" -)" 200
check "key list never shows secrets" bash -c "[ \"\$(jq -r '[.items[]|has(\"secret\")]|any' <<<'$(body "$AK" "$AS" acme GET /v1/keys "" -)')\" = false ]"
# deleting a principal takes its keys (and only its keys) with it
echo '{"principal":"tmp","role":"member"}' >"$T/tmp.json"
TK=$(body "$AK" "$AS" acme POST /v1/keys "" "$T/tmp.json" | jq -r .id)
body "$AK" "$AS" acme POST /v1/keys "" "$T/tmp.json" >/dev/null
check "principal tmp holds two keys" is "$(body "$AK" "$AS" acme GET /v1/keys "" - | jq '[.items[]|select(.principal=="tmp")]|length')" 2
check "deleting principal tmp (200)" is "$(code "$AK" "$AS" acme DELETE /v1/principals/tmp "" -)" 200
check "its keys went with it, rita's stayed" is "$(body "$AK" "$AS" acme GET /v1/keys "" - | jq -c '[.items[].principal]|sort')" '["admin","rita"]'
check "a deleted principal's key no longer authenticates" is "$(body "$TK" whatever acme GET /v1/quota "" - | jq -r .error.reason)" unknown_key
check "operator lists acme's keys with ?tenant=" is "$(body "$OK" "$OS" region GET /v1/keys "tenant=acme" - | jq -r '.items|length')" 2

# bad input
printf '{"principal":' >"$T/bad.json"
r=$(body "$AK" "$AS" acme POST /v1/keys "" "$T/bad.json")
check "malformed JSON: 400 naming the body" is "$(jq -r '.error.code+" "+.error.field' <<<"$r")" "invalid_argument body"
echo '{"principal":"x","rol":"reader"}' >"$T/typo.json"
check "unknown field: 400 naming it" is "$(body "$AK" "$AS" acme POST /v1/keys "" "$T/typo.json" | jq -r .error.field)" rol
echo '{"principal":7}' >"$T/type.json"
check "wrong type: 400 naming it" is "$(body "$AK" "$AS" acme POST /v1/keys "" "$T/type.json" | jq -r .error.field)" principal
echo '{"principal":"../etc"}' >"$T/dots.json"
check "hostile name: 400" is "$(code "$AK" "$AS" acme POST /v1/keys "" "$T/dots.json")" 400
echo '{"principal":"x","role":"operator"}' >"$T/esc.json"
check "admin cannot mint an operator key (400 role)" is "$(body "$AK" "$AS" acme POST /v1/keys "" "$T/esc.json" | jq -r .error.field)" role
head -c 1100000 /dev/zero | tr '\0' ' ' >"$T/big.json"
check "body over 1 MiB: 413" is "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$DATA/pki/ca.pem" --data-binary "@$T/big.json" "$URL/v1/keys")" 413
check "unknown route: 404" is "$(code "$OK" "$OS" region GET /v1/nothing "" -)" 404
r=$(curl -s -D "$T/hdr" -o /dev/null -w '%{http_code}' --cacert "$DATA/pki/ca.pem" -X PATCH "$URL/v1/zones")
check "wrong method: 405 with Allow" bash -c "[ $r = 405 ] && grep -qi '^allow: GET' '$T/hdr'"
check "a body cannot sneak in under a different hash" is "$(curl -s --cacert "$DATA/pki/ca.pem" -H "${H[0]}" -H "X-Ciel-Content-Sha256: 0000" -H "${H[2]}" "$URL/v1/region" | jq -r .error.reason)" bad_signature

# the trail: every call above is in it, refusals included, and it verifies
ev=$(body "$AK" "$AS" acme GET /v1/audit "limit=1000" -)
check "acme's chain records the refused scope_mismatch" bash -c "jq -e '[.items[]|select(.error==\"permission_denied\" and .actor.key==\"$AK\")]|length>0' <<<'$ev' >/dev/null"
check "acme's chain records the reader key creation" bash -c "jq -e '[.items[]|select(.action==\"key.create\" and .status==201)]|length>0' <<<'$ev' >/dev/null"
rev=$(body "$OK" "$OS" region GET /v1/audit "limit=1000" -)
check "region chain records the unknown key attempt" bash -c "jq -e '[.items[]|select(.error==\"unauthenticated\" and .actor.key==\"CKNOSUCHKEY000000\")]|length>0' <<<'$rev' >/dev/null"
check "region chain records the 413 and the 405" bash -c "jq -e '([.items[]|select(.status==413)]|length>0) and ([.items[]|select(.status==405)]|length>0)' <<<'$rev' >/dev/null"
check "acme's chain verifies" is "$(body "$AK" "$AS" acme POST /v1/audit:verify "" - | jq -r .ok)" true
check "region chain verifies" is "$(body "$OK" "$OS" region POST /v1/audit:verify "" - | jq -r .ok)" true
n=$(curl -s --cacert "$DATA/pki/ca.pem" "$URL/metrics" | grep -c '^ciel_api_requests_total{route="tenant.create",code="201"} 2$')
check "metrics count requests by route and code" is "$n" 1

# tamper: change one byte of acme's 2nd stored event
k=$(printf '/audit/acme/e/%016d' 2)
V="CAST(value AS TEXT)"; P="instr($V, '\"request_id\":\"')"
sqlite3 "$DATA/region.db" "UPDATE kv SET value = CAST(substr($V, 1, $P + 13) || 'X' || substr($V, $P + 15) AS BLOB) WHERE key = '$k'"
check "tampering changed exactly one byte" is "$(sqlite3 "$DATA/region.db" "SELECT count(*) FROM kv WHERE key='$k' AND $V LIKE '%\"request_id\":\"X%'")" 1
v=$(body "$AK" "$AS" acme POST /v1/audit:verify "" -)
check "verify fails after one changed event" is "$(jq -r .ok <<<"$v")" false
check "verify names the first broken link (seq 2)" is "$(jq -r .first_bad_seq <<<"$v")" 2
# export streams page by page: a chain longer than a page comes out whole and in order
curl -s -o /dev/null --cacert "$DATA/pki/ca.pem" "$URL/healthz?n=[1-1200]"
sreq "$OK" "$OS" region GET /v1/audit:export "" - | sed '1s/^[0-9]* //' >"$T/region.jsonl"
check "region export is over two pages ($(wc -l <"$T/region.jsonl") events)" test "$(wc -l <"$T/region.jsonl")" -gt 1200
check "every exported line parses, seqs run 1..N without a gap" bash -c "jq -s -e '[.[].seq] == [range(1; length + 1)]' '$T/region.jsonl' >/dev/null"

# a signature accepted before a restart cannot be replayed after it
mapfile -t H2 < <("$CIEL_BIN/tests/sigtool" "$OK" "$OS" region GET /v1/region "" "127.0.0.1:$PORT" -)
r2() { curl -s -o /dev/null -w '%{http_code}' --cacert "$DATA/pki/ca.pem" -H "${H2[0]}" -H "${H2[1]}" -H "${H2[2]}" "$URL/v1/region"; }
check "a fresh request is accepted" is "$(r2)" 200
sleep 1; stop_cield KILL; start_cield || exit 1
check "the same request after a kill -9 and restart: 401" is "$(r2)" 401
check "while a newly signed one passes" is "$(code "$OK" "$OS" region GET /v1/region "" -)" 200
finish
