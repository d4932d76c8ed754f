#!/usr/bin/env bash
# Models as a service, cield's side: API keys, model upload and validation,
# placement on a node with the memory, the node's report, and the OpenAI
# proxy in front of a real `ciel-llm serve` worker (started here, as the
# agent would, and reported ready with the node's own key): chat, streaming
# with and without the usage chunk, completions, models list, OpenAI-shaped
# errors, tenant isolation, the token-per-minute quota (429 + Retry-After),
# metering, audit events with token counts and never the prompt, redeploy
# (generation) and delete.
. "$(dirname "$0")/lib.sh"

STORIES=${CIEL_TEST_MODEL:-$CIEL_SRC/../shared/models/stories260K/stories260k-f32.v3.gguf}
# the test model ships in ../shared beside the source: its absence is a failure, not a skip
if [ ! -r "$STORIES" ] || [ ! -x "$CIEL_BIN/ciel-llm" ]; then
	not_ok "needs $STORIES and $CIEL_BIN/ciel-llm"; finish
fi
# what is uploaded: a small model (sigtool signs bodies up to 1 MiB) in a real shape, q8_0
GGUF=$T/tiny.gguf
"$CIEL_BIN/ciel-llm" gen --shape tiny --type q8_0 --vocab-from "$STORIES" --out "$GGUF" >/dev/null 2>&1 ||
	{ echo "cannot generate a test model"; exit 1; }
init_region || exit 1
start_cield --node-timeout-s 4 || exit 1
CRED=$DATA/operator.credentials
OK=$(cred key_id "$CRED"); OS=$(cred secret "$CRED")
body() { sreq "$@" | cut -d' ' -f2-; }
code() { sreq "$@" | cut -d' ' -f1; }
jqe() { test -s "$2" && jq -e "$1" "$2" >/dev/null; } # filter file
SECRET_WORD=zebracornsplendid # in every prompt: must never reach a log or the audit trail

# tenants, with their admin keys
for t in acme beta; do
	echo "{\"name\":\"$t\"}" >"$T/t.json"
	body "$OK" "$OS" region POST /v1/tenants "" "$T/t.json" >"$T/$t.json"
done
AK=$(jq -r .key.id "$T/acme.json"); AS=$(jq -r .key.secret "$T/acme.json")
BK=$(jq -r .key.id "$T/beta.json"); BS=$(jq -r .key.secret "$T/beta.json")
check "two tenants" test -n "$AK" -a "$AK" != null -a -n "$BK" -a "$BK" != null

# ---- API keys
echo '{"name":"ci-bot"}' >"$T/ak.json"
sreq "$AK" "$AS" acme POST /v1/apikeys "" "$T/ak.json" >"$T/r"
check "acme's admin creates an API key (201)" grep -q '^201 ' "$T/r"
cut -d' ' -f2- "$T/r" >"$T/key.json"
KEY=$(jq -r .key "$T/key.json"); KID=$(jq -r .id "$T/key.json")
check "the key is sk-ciel-<id>-<secret>" bash -c "[[ '$KEY' =~ ^sk-ciel-${KID}-[0-9a-f]{64}$ ]] && [[ '$KID' =~ ^ak_[0-9a-f]{16}$ ]]"
body "$AK" "$AS" acme GET /v1/apikeys "" - >"$T/list.json"
check "the list shows the key without its secret or hash" jqe ".items|length == 1 and .[0].id == \"$KID\" and .[0].name == \"ci-bot\" and (.[0]|has(\"key\") or has(\"secret_sha256\")|not)" "$T/list.json"
check "nothing of the secret is in the store" bash -c "! sqlite3 '$DATA/region.db' .dump 2>/dev/null | grep -q '${KEY##*-}'"
echo '{"name":"Bad Name"}' >"$T/bad.json"
check "a bad key name is 400 naming name" test "$(body "$AK" "$AS" acme POST /v1/apikeys "" "$T/bad.json" | jq -r .error.field)" = name
echo '{}' >"$T/empty.json"
body "$BK" "$BS" beta POST /v1/apikeys "" "$T/empty.json" >"$T/bkey.json"
BKEY=$(jq -r .key "$T/bkey.json")
check "beta cannot delete acme's key (404)" test "$(code "$BK" "$BS" beta DELETE "/v1/apikeys/$KID" "" -)" = 404
check "the operator needs ?tenant= (400)" test "$(code "$OK" "$OS" region POST /v1/apikeys "" "$T/empty.json")" = 400

# ---- model upload: validation first, nothing kept of a refused file
head -c 100000 "$GGUF" >"$T/trunc.gguf"
printf 'this is not a model' >"$T/junk.gguf"
sreq "$AK" "$AS" acme PUT /v1/models/stories "" "$T/trunc.gguf" >"$T/r"
check "a truncated GGUF is 400 naming file" bash -c "grep -q '^400 ' '$T/r' && cut -d' ' -f2- '$T/r' | jq -e '.error.field == \"file\"' >/dev/null"
check "with the engine's message" bash -c "cut -d' ' -f2- '$T/r' | jq -r .error.message | grep -qi 'file'"
check "junk is 400 too" test "$(code "$AK" "$AS" acme PUT /v1/models/stories "" "$T/junk.gguf")" = 400
check "a bad ctx is 400 naming ctx" test "$(body "$AK" "$AS" acme PUT /v1/models/stories "ctx=lots" "$GGUF" | jq -r .error.field)" = ctx
check "ctx past the trained context is 400" test "$(body "$AK" "$AS" acme PUT /v1/models/stories "ctx=100000" "$GGUF" | jq -r .error.field)" = ctx
check "a tenant cannot publish (403)" test "$(code "$AK" "$AS" acme PUT /v1/models/stories "public=1" "$GGUF")" = 403
check "a bad name is 400" test "$(code "$AK" "$AS" acme PUT /v1/models/Bad_Name "" "$GGUF")" = 400
check "nothing refused was stored" test "$(body "$AK" "$AS" acme GET /v1/models "" - | jq '.items|length')" = 0

# ---- a deploy with no node: pending, with the reason
sreq "$AK" "$AS" acme PUT /v1/models/stories "ctx=256&max_seqs=2&threads=1" "$GGUF" >"$T/r"
check "deploy is 201" grep -q '^201 ' "$T/r"
cut -d' ' -f2- "$T/r" >"$T/m.json"
SHA=$(sha256sum "$GGUF" | cut -d' ' -f1)
check "the endpoint describes the model" jqe ".name == \"stories\" and .tenant == \"acme\" and .blob == \"sha256:$SHA\" and .arch == \"llama\" and .params > 0 and .type == \"q8_0\" and .ctx == 256 and .max_seqs == 2 and .generation == 1" "$T/m.json"
check "memory_bytes = file + KV + 64 MiB" jqe ".memory_bytes > .size + 67108864" "$T/m.json"
check "it waits: no node is Ready" jqe '.state == "pending" and (.reason|test("no node"))' "$T/m.json"
check "the blob is in the store under its SHA-256" cmp "$GGUF" "$DATA/blobs/sha256/$SHA"

# ---- a node joins: the dispatcher places the model
echo '{"zone":"az1"}' >"$T/tok.json"
TOKEN=$(body "$OK" "$OS" region POST /v1/nodes/tokens "" "$T/tok.json" | jq -r .token)
printf '{"token":"%s","name":"node-1","zone":"az1","capacity":{"cpu_millis":2000,"memory_bytes":8589934592,"disk_bytes":1073741824}}' "$TOKEN" >"$T/join.json"
curl -s --cacert "$DATA/pki/ca.pem" --data-binary "@$T/join.json" "$URL/v1/nodes:join" >"$T/joined.json"
NK=$(jq -r .key.id "$T/joined.json"); NS=$(jq -r .key.secret "$T/joined.json")
check "a node joins" test -n "$NK" -a "$NK" != null
echo '{}' >"$T/hb.json"
heartbeats() { while :; do sreq "$NK" "$NS" region POST /v1/nodes/node-1:heartbeat "" "$T/hb.json" >/dev/null; sleep 1; done; }
heartbeats &
HB_PID=$!
PIDS+=("$HB_PID")
state=
for _ in $(seq 50); do
	state=$(body "$AK" "$AS" acme GET /v1/models/stories "" - | jq -r .state)
	[ "$state" = placed ] && break; sleep 0.1
done
check "the model is placed within 5 s (state $state)" test "$state" = placed
body "$NK" "$NS" region GET /v1/nodes/node-1/placements "" - >"$T/pl.json"
check "the node sees an llm placement" jqe ".items|map(select(.kind == \"llm\"))|length == 1 and .[0].name == \"stories\" and .[0].tenant == \"acme\" and .[0].blob == \"sha256:$SHA\" and .[0].generation == 1 and .[0].cpu_millis == 1000 and .[0].memory_bytes > 0" "$T/pl.json"
mkdir -p "$T/node"
hdrs=()
mapfile -t hdrs < <("$CIEL_BIN/tests/sigtool" "$NK" "$NS" region GET "/v1/blobs/sha256:$SHA" "" "127.0.0.1:$PORT" - 0)
cargs=(-s -o "$T/node/model.gguf" --cacert "$DATA/pki/ca.pem")
for h in "${hdrs[@]}"; do cargs+=(-H "$h"); done
curl "${cargs[@]}" "$URL/v1/blobs/sha256:$SHA"
check "the node fetches the blob by digest" cmp "$GGUF" "$T/node/model.gguf"
check "a chat before the worker is ready is 503" test "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$DATA/pki/ca.pem" -H "Authorization: Bearer $KEY" -d '{"model":"stories","messages":[{"role":"user","content":"hi"}]}' "$URL/openai/v1/chat/completions")" = 503

# ---- a worker, as the agent would run it, and the node's report. It serves
# the real stories260K (trained: real text to compare) under the endpoint's
# name; the proxy does not care which file the worker mapped.
WTOK=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$WTOK" >"$T/node/token"
"$CIEL_BIN/ciel-llm" serve --model "$STORIES" --name stories --listen 127.0.0.1:0 --threads 1 \
	--ctx 256 --max-seqs 2 --token-file "$T/node/token" --ready-file "$T/node/ready" >"$T/worker.log" 2>&1 &
WPID=$!
PIDS+=("$WPID")
for _ in $(seq 100); do [ -s "$T/node/ready" ] && break; sleep 0.05; done
WURL=$(jq -r .url "$T/node/ready")
check "the worker is ready" test -n "$WURL" -a "$WURL" != null
report() { # state [generation] [node-in-path]
	printf '{"tenant":"acme","name":"stories","generation":%s,"state":"%s","url":"%s","token":"%s","pid":%s,"rss_bytes":1000000}' \
		"${2:-1}" "$1" "$WURL" "$WTOK" "$WPID" >"$T/rep.json"
	sreq "$NK" "$NS" region POST "/v1/nodes/${3:-node-1}/llm" "" "$T/rep.json"
}
check "a node cannot report for another node (403)" test "$(report ready 1 node-2 | cut -d' ' -f1)" = 403
report ready 7 >"$T/rep.out"
check "a report of an older generation is ignored" grep -q '"ignored"' "$T/rep.out"
check "the node reports loading" test "$(report loading | cut -d' ' -f1)" = 200
check "then ready" test "$(report ready | cut -d' ' -f1)" = 200
body "$AK" "$AS" acme GET /v1/models/stories "" - >"$T/m.json"
check "the endpoint is ready on node-1 with the worker's pid" jqe ".state == \"ready\" and .node == \"node-1\" and .pid == $WPID" "$T/m.json"
check "its url and token are never shown" bash -c "! grep -q '$WTOK' '$T/m.json' && ! grep -q worker '$T/m.json'"
body "$AK" "$AS" acme GET /v1/models "" - >"$T/ml.json"
check "nor in the list" bash -c "! grep -q '$WTOK' '$T/ml.json' && ! grep -q worker '$T/ml.json'"

# ---- the OpenAI surface with the API key
oai() { # key path body-json → writes $T/o.body, $T/o.head; prints the status
	curl -s -D "$T/o.head" -o "$T/o.body" -w '%{http_code}' --cacert "$DATA/pki/ca.pem" \
		-H "Authorization: Bearer $1" -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$URL$2"
}
CHAT='{"model":"stories","messages":[{"role":"user","content":"Once upon a time '$SECRET_WORD'"}],"max_tokens":16,"temperature":0}'
check "chat with the API key is 200" test "$(oai "$KEY" /openai/v1/chat/completions "$CHAT")" = 200
check "an OpenAI chat.completion with text and usage" jqe '.object == "chat.completion" and (.choices[0].message.content|length > 0) and .usage.prompt_tokens > 0 and .usage.completion_tokens > 0 and .usage.total_tokens == .usage.prompt_tokens + .usage.completion_tokens' "$T/o.body"
TEXT=$(jq -r .choices[0].message.content "$T/o.body")
CT1=$(jq .usage.completion_tokens "$T/o.body"); PT1=$(jq .usage.prompt_tokens "$T/o.body")
STREAM='{"model":"stories","messages":[{"role":"user","content":"Once upon a time '$SECRET_WORD'"}],"max_tokens":16,"temperature":0,"stream":true}'
check "a stream is 200" test "$(oai "$KEY" /openai/v1/chat/completions "$STREAM")" = 200
check "as text/event-stream" grep -qi '^content-type: text/event-stream' "$T/o.head"
check "ending with data: [DONE]" bash -c "grep -v '^\$' '$T/o.body' | tail -1 | grep -qx 'data: \[DONE\]'"
check "the chunks make the same text as the whole answer" test "$(grep '^data: {' "$T/o.body" | sed 's/^data: //' | jq -rj '.choices[0].delta.content // empty')" = "$TEXT"
check "no usage chunk when the client did not ask" bash -c "! grep '^data: {' '$T/o.body' | sed 's/^data: //' | jq -e 'select(.usage != null)' | grep -q ."
STREAMU='{"model":"stories","messages":[{"role":"user","content":"Once upon a time '$SECRET_WORD'"}],"max_tokens":16,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}'
check "a stream with include_usage is 200" test "$(oai "$KEY" /openai/v1/chat/completions "$STREAMU")" = 200
check "it carries the usage chunk (choices [])" bash -c "grep '^data: {' '$T/o.body' | sed 's/^data: //' | jq -e 'select(.usage != null) | select((.choices|length) == 0 and .usage.completion_tokens == $CT1)' | grep -q ."
check "completions is 200" test "$(oai "$KEY" /openai/v1/completions '{"model":"stories","prompt":"Once upon a time '$SECRET_WORD'","max_tokens":8}')" = 200
check "a text_completion" jqe '.object == "text_completion" and (.choices[0].text|length > 0)' "$T/o.body"
check "models list is 200" test "$(oai "$KEY" /openai/v1/models)" = 200
check "an OpenAI list with stories" jqe '.object == "list" and (.data|map(.id)|index("stories") != null) and (.data[0].object == "model")' "$T/o.body"
# the official openai npm client, unchanged but for the base URL, through cield
if command -v node >/dev/null && NODE_DEPS=$(bash "$CIEL_SRC/tests/llm/node-deps.sh" "$CIEL_BIN/node" 2>"$T/npm.err"); then
	NODE_EXTRA_CA_CERTS=$DATA/pki/ca.pem NODE_DEPS=$NODE_DEPS OAI_BASE=$URL/openai/v1 OAI_KEY=$KEY OAI_MODEL=stories \
		node "$CIEL_SRC/tests/llm/openai_client.mjs" >"$T/node.out" 2>&1
	check "the official openai client passes through cield ($(tail -1 "$T/node.out"))" grep -q '^# [0-9]* passed, 0 failed' "$T/node.out"
	grep '^not ok' "$T/node.out" | head -5
else
	not_ok "the official openai client could not be installed (scripts/deps.sh installs node and npm): $(tail -1 "$T/npm.err" 2>/dev/null)"
fi
# a stream the client leaves early is still metered
curl -s -N --max-time 0.3 --cacert "$DATA/pki/ca.pem" -H "Authorization: Bearer $KEY" \
	-d '{"model":"stories","messages":[{"role":"user","content":"Once upon a time '$SECRET_WORD'"}],"max_tokens":200,"stream":true}' \
	"$URL/openai/v1/chat/completions" >/dev/null 2>&1

# ---- errors, OpenAI-shaped
check "a wrong key is 401" test "$(oai "sk-ciel-ak_0000000000000000-$(printf '%064d' 0)" /openai/v1/models)" = 401
check "shaped as OpenAI's (invalid_api_key)" jqe '.error.code == "invalid_api_key" and .error.type == "invalid_request_error" and (.error.message|length > 0) and (.error|has("param"))' "$T/o.body"
check "a malformed key is 401" test "$(oai "sk-not-ciel" /openai/v1/models)" = 401
check "no key at all is 401" test "$(curl -s -o "$T/o.body" -w '%{http_code}' --cacert "$DATA/pki/ca.pem" "$URL/openai/v1/models")" = 401
check "an unknown model is 404 model_not_found, param model" bash -c "test \"\$(curl -s -o '$T/o.body' -w '%{http_code}' --cacert '$DATA/pki/ca.pem' -H 'Authorization: Bearer $KEY' -d '{\"model\":\"nosuch\",\"messages\":[]}' '$URL/openai/v1/chat/completions')\" = 404 && jq -e '.error.code == \"model_not_found\" and .error.param == \"model\" and .error.type == \"invalid_request_error\"' '$T/o.body' >/dev/null"
check "malformed JSON is 400" test "$(oai "$KEY" /openai/v1/chat/completions '{"model":')" = 400
check "a missing model is 400 naming model" bash -c "test \"\$(curl -s -o '$T/o.body' -w '%{http_code}' --cacert '$DATA/pki/ca.pem' -H 'Authorization: Bearer $KEY' -d '{\"messages\":[]}' '$URL/openai/v1/chat/completions')\" = 400 && jq -e '.error.param == \"model\"' '$T/o.body' >/dev/null"
check "the worker's own 400 passes through (bad temperature)" test "$(oai "$KEY" /openai/v1/chat/completions '{"model":"stories","messages":[{"role":"user","content":"x"}],"temperature":9}')" = 400
check "with its param" jqe '.error.param == "temperature"' "$T/o.body"
check "beta's key does not see acme's model (404)" test "$(oai "$BKEY" /openai/v1/chat/completions "$CHAT")" = 404
check "nor in beta's list" bash -c "test \"\$(curl -s --cacert '$DATA/pki/ca.pem' -H 'Authorization: Bearer $BKEY' '$URL/openai/v1/models' | jq '.data|length')\" = 0"
check "an API key cannot manage anything (401 on /v1)" test "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$DATA/pki/ca.pem" -H "Authorization: Bearer $KEY" "$URL/v1/models")" = 401

# ---- the usual signature works too (ciel chat); the operator sees public models only
echo "$CHAT" >"$T/chat.json"
sreq "$AK" "$AS" acme POST /openai/v1/chat/completions "" "$T/chat.json" >"$T/r"
check "acme's signed chat is 200" bash -c "grep -q '^200 ' '$T/r' && cut -d' ' -f2- '$T/r' | jq -e '.usage.completion_tokens > 0' >/dev/null"
check "the operator does not reach acme's model (404)" test "$(code "$OK" "$OS" region POST /openai/v1/chat/completions "" "$T/chat.json")" = 404

# ---- metering
body "$AK" "$AS" acme GET /v1/usage "" - >"$T/u.json"
check "usage counts requests and tokens per model" jqe '.tenant == "acme" and .models.stories.requests >= 6 and .models.stories.prompt_tokens >= '"$((PT1 * 5))"' and .models.stories.completion_tokens >= '"$((CT1 * 4))"' and .tokens_last_minute > 0' "$T/u.json"
check "beta used nothing" test "$(body "$BK" "$BS" beta GET /v1/usage "" - | jq '.models|length')" = 0
check "the quota shows the tokens of the last minute" test "$(body "$AK" "$AS" acme GET /v1/quota "" - | jq '.limits.llm_tokens_per_minute == 100000 and .usage.llm_tokens_per_minute > 0')" = true

# ---- the token-per-minute quota
echo '{"llm_tokens_per_minute":10}' >"$T/q.json"
check "the operator sets acme's llm_tokens_per_minute" test "$(code "$OK" "$OS" region PUT /v1/quota tenant=acme "$T/q.json")" = 200
check "acme is over it: 429" test "$(oai "$KEY" /openai/v1/chat/completions "$CHAT")" = 429
check "rate_limit_exceeded, OpenAI-shaped" jqe '.error.code == "rate_limit_exceeded" and (.error.message|test("tokens per minute"))' "$T/o.body"
# (headers end in CR: compare as numbers, or "7\r" <= "60" is a string comparison)
check "with Retry-After in 1..60 s" bash -c "tr -d '\r' <'$T/o.head' | grep -i '^retry-after: [0-9]' | awk '{n++; v = \$2 + 0} END {exit !(n == 1 && v >= 1 && v <= 60)}'"
check "beta is not limited by acme's use" test "$(oai "$BKEY" /openai/v1/models)" = 200
echo '{"llm_tokens_per_minute":100000}' >"$T/q.json"
code "$OK" "$OS" region PUT /v1/quota tenant=acme "$T/q.json" >/dev/null
check "under the quota again: 200" test "$(oai "$KEY" /openai/v1/chat/completions "$CHAT")" = 200

# ---- audit: who, which model, token counts; never the prompt
sleep 0.5 # the early-closed stream records its end
body "$AK" "$AS" acme GET /v1/audit:export "" - >"$T/audit.ndjson"
check "llm.chat events name the API key and the model" bash -c "jq -c 'select(.action == \"llm.chat\" and .actor.principal == \"apikey:$KID\" and .actor.tenant == \"acme\" and (.target|startswith(\"/v1/models/stories\")))' '$T/audit.ndjson' | grep -q ."
check "with token counts in the event's detail" bash -c "jq -c 'select(.action == \"llm.chat\" and .target == \"/v1/models/stories\" and .detail.model == \"stories\" and .detail.prompt_tokens == $PT1 and .detail.completion_tokens == $CT1)' '$T/audit.ndjson' | grep -q ."
check "each stream's end is recorded with its counts" test "$(jq -c 'select(.action == "llm.chat" and .detail.prompt_tokens > 0)' "$T/audit.ndjson" | wc -l)" -ge 6
check "the chain with details verifies" test "$(body "$AK" "$AS" acme POST /v1/audit:verify "" - | jq -r .ok)" = true
check "llm.completion and llm.models are audited" bash -c "grep -q '\"llm.completion\"' '$T/audit.ndjson' && grep -q '\"llm.models\"' '$T/audit.ndjson'"
check "the 429 is audited" bash -c "grep '\"llm.chat\"' '$T/audit.ndjson' | grep -q 429"
check "the prompt is nowhere in the audit trail" bash -c "! grep -q $SECRET_WORD '$T/audit.ndjson'"
check "nor in cield's log" bash -c "! grep -q $SECRET_WORD '$T/cield.log'"
check "nor in the worker's log" bash -c "! grep -q $SECRET_WORD '$T/worker.log'"
check "nor in the store" bash -c "! sqlite3 '$DATA/region.db' .dump 2>/dev/null | grep -q $SECRET_WORD"
check "the chain verifies" test "$(body "$AK" "$AS" acme POST /v1/audit:verify "" - | jq -r .ok)" = true

# ---- redeploy: generation 2, the old worker's reports are ignored
sreq "$AK" "$AS" acme PUT /v1/models/stories "ctx=128" "$GGUF" >"$T/r"
check "a redeploy is 200" grep -q '^200 ' "$T/r"
check "with generation 2, placed again" bash -c "cut -d' ' -f2- '$T/r' | jq -e '.generation == 2 and .state == \"placed\" and .ctx == 128' >/dev/null"
check "the placement has generation 2" test "$(body "$NK" "$NS" region GET /v1/nodes/node-1/placements "" - | jq '[.items[]|select(.kind=="llm")]|length == 1 and .[0].generation == 2')" = true
report ready 1 >"$T/rep.out"
check "the old worker's report is ignored" grep -q '"ignored"' "$T/rep.out"
check "and chat waits for the new one (503)" test "$(oai "$KEY" /openai/v1/chat/completions "$CHAT")" = 503

# ---- a public model, by the operator, for every tenant
sreq "$OK" "$OS" region PUT /v1/models/tiny "public=1&ctx=64&max_seqs=1" "$GGUF" >"$T/r"
check "the operator publishes a model (201)" bash -c "grep -q '^201 ' '$T/r' && cut -d' ' -f2- '$T/r' | jq -e '.public == true and (has(\"tenant\")|not)' >/dev/null"
check "beta's API key lists it" bash -c "curl -s --cacert '$DATA/pki/ca.pem' -H 'Authorization: Bearer $BKEY' '$URL/openai/v1/models' | jq -e '.data|map(.id)|index(\"tiny\") != null' >/dev/null"
check "and acme's model list shows it public" test "$(body "$AK" "$AS" acme GET /v1/models "" - | jq '[.items[]|select(.name=="tiny" and .public)]|length')" = 1
check "its placement is under region" test "$(body "$NK" "$NS" region GET /v1/nodes/node-1/placements "" - | jq -r '.items[]|select(.name=="tiny")|.public')" = true
check "a tenant cannot delete it (403)" test "$(code "$AK" "$AS" acme DELETE /v1/models/tiny "public=1" -)" = 403
check "the operator deletes it" test "$(code "$OK" "$OS" region DELETE /v1/models/tiny "public=1" -)" = 200

# ---- the node goes silent: the endpoint goes back to pending, with a new generation
kill "$HB_PID" 2>/dev/null; wait "$HB_PID" 2>/dev/null
for _ in $(seq 100); do
	body "$AK" "$AS" acme GET /v1/models/stories "" - >"$T/m.json"
	jqe '.state == "pending"' "$T/m.json" && break; sleep 0.1
done
check "a model on a NotReady node goes back to pending" jqe '.state == "pending" and (.reason|test("no node is Ready")) and (has("node")|not) and .generation == 3' "$T/m.json"
check "its placement is gone from the dead node" test "$(body "$NK" "$NS" region GET /v1/nodes/node-1/placements "" - | jq '[.items[]|select(.kind=="llm")]|length')" = 0
check "chat on it is 503 naming the state" bash -c "test \"\$(curl -s -o '$T/o.body' -w '%{http_code}' --cacert '$DATA/pki/ca.pem' -H 'Authorization: Bearer $KEY' -d '{\"model\":\"stories\",\"messages\":[]}' '$URL/openai/v1/chat/completions')\" = 503 && jq -e '.error.type == \"server_error\" and (.error.message|test(\"pending\"))' '$T/o.body' >/dev/null"
sreq "$NK" "$NS" region POST /v1/nodes/node-1:heartbeat "" "$T/hb.json" >/dev/null
for _ in $(seq 50); do
	[ "$(body "$AK" "$AS" acme GET /v1/models/stories "" - | jq -r .state)" = placed ] && break; sleep 0.1
done
check "back on the node once it is Ready again" test "$(body "$NK" "$NS" region GET /v1/nodes/node-1/placements "" - | jq '[.items[]|select(.kind=="llm")]|length == 1 and .[0].generation == 3')" = true

# ---- delete: the placement goes, the name is unknown
check "acme deletes its model" test "$(code "$AK" "$AS" acme DELETE /v1/models/stories "" -)" = 200
check "its placement is gone" test "$(body "$NK" "$NS" region GET /v1/nodes/node-1/placements "" - | jq '[.items[]|select(.kind=="llm")]|length')" = 0
check "chat on it is 404" test "$(oai "$KEY" /openai/v1/chat/completions "$CHAT")" = 404
check "deleting it again is 404" test "$(code "$AK" "$AS" acme DELETE /v1/models/stories "" -)" = 404

# ---- a deleted API key no longer works
check "acme deletes its API key" test "$(code "$AK" "$AS" acme DELETE "/v1/apikeys/$KID" "" -)" = 200
check "the deleted key is 401" test "$(oai "$KEY" /openai/v1/models)" = 401
check "beta's key works before beta is deleted" test "$(oai "$BKEY" /openai/v1/models)" = 200
code "$OK" "$OS" region DELETE /v1/tenants/beta "" - >/dev/null
check "beta's key is 401 once beta is gone" test "$(oai "$BKEY" /openai/v1/models)" = 401

kill "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null
stop_cield TERM
# under CIEL_SANITIZE a leak or undefined behaviour shows here
check "cield's log has no sanitizer report" bash -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' '$T/cield.log'"
finish
