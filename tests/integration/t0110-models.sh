#!/usr/bin/env bash
# Issue 4's "done when", end to end: `ciel up --model` serves the real
# stories260K model as the public model "stories", and `ciel chat stories
# "Once upon a time"` prints English. Then the service's edges: a tenant's
# own model (deploy --wait, list, show, another tenant gets 404), an API key
# and the official openai client (chat, stream, models.list, completions)
# through cield, a wrong key is a 401, the tokens-per-minute quota is a 429
# with Retry-After, the audit chain has llm events with token counts and
# never the prompt, workers run under non-root uids, a killed worker comes
# back, an agent restart adopts the running worker, deleting a model stops
# its worker, and `ciel down` leaves no worker behind.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v runc >/dev/null; then
	echo "# SKIP: needs root and runc (scripts/deps.sh installs runc)"; exit 0
fi
GGUF=$CIEL_SRC/../shared/models/stories260K/stories260k-f32.v3.gguf
if [ ! -f "$GGUF" ]; then
	not_ok "the stories260K test model is at $GGUF"; finish
fi
UP=$T/up
DATA=$UP
down() { ciel down --data "$UP" >/dev/null 2>&1; }
trap 'down; cleanup' EXIT

# A process that runs: not gone, and not a zombie its new parent has yet to reap
# (a worker outlives the agent that started it).
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ "$s" != Z* ]]; }
# This region's worker of KEY/NAME (KEY: the tenant, or _public), from the
# agent's record: other regions on this machine may run workers of that name.
worker_pid() {
	local p
	p=$(jq -r .pid "$UP/agents/az1/llm/$1/worker.json" 2>/dev/null) || return 0
	[ -n "$p" ] && [ "$p" != null ] && alive "$p" && echo "$p"
	return 0
}
export UP
export -f alive worker_pid
wait_no_worker() {
	for _ in $(seq 100); do [ -z "$(worker_pid "$1")" ] && return 0; sleep 0.1; done
	return 1
}
model_state() { ciel --profile "$1" model show "$2" --output json 2>/dev/null | jq -r .state; }
wait_model() { # profile name regex seconds
	local st
	for _ in $(seq $(($4 * 5))); do
		st=$(model_state "$1" "$2"); [[ "$st" =~ ^($3)$ ]] && return 0; sleep 0.2
	done
	echo "model $2 is $st, wanted $3" >&2; return 1
}
english() { # a sentence of the stories' English: common words, letters and spaces
	grep -qiwE 'the|a|was|and|she|he|to|her|his' "$1" && [ "$(wc -w <"$1")" -ge 5 ]
}

# the region, with the model deployed by `ciel up` as `make up` does it
expect_exit 0 "ciel up --model deploys stories and waits for it" \
	ciel up --data "$UP" --listen "127.0.0.1:$PORT" --zones 1 --model "$GGUF:stories"
check "up says the model is ready" grep -q "model: stories ready" "$T/out"
check "up showed the model's progress" grep -q "model stories: ready on" "$T/err"
check "up suggests ciel chat" grep -q 'chat stories "Once upon a time"' "$T/out"
expect_exit 0 "ciel up again" ciel up --data "$UP" --listen "127.0.0.1:$PORT" --zones 1 --model "$GGUF:stories"
check "... uploads nothing the second time" grep -q "deployed already" "$T/err"
check "... and says the region is up" grep -q "already up" "$T/out"

expect_exit 0 "ciel chat stories (operator)" ciel chat stories "Once upon a time"
check "it prints English" english "$T/out"
check "it ends with a newline" test "$(tail -c1 "$T/out" | od -An -c | tr -d ' ')" = '\n'

ciel tenant create acme --save-profile acme >/dev/null 2>&1
ciel tenant create beta --save-profile beta >/dev/null 2>&1
A() { ciel --profile acme "$@"; }
B() { ciel --profile beta "$@"; }
export -f ciel A B

expect_exit 0 "a tenant chats with the public model" A chat stories "Once upon a time" --max-tokens 40 --temperature 0
check "English again" english "$T/out"
cp "$T/out" "$T/greedy1"
A chat stories "Once upon a time" --max-tokens 40 --temperature 0 >"$T/greedy2" 2>/dev/null
check "greedy twice is the same story" cmp "$T/greedy1" "$T/greedy2"
expect_exit 0 "the prompt can come from stdin" bash -c "echo 'Once upon a time' | ciel --profile acme chat stories --max-tokens 20"
check "... and is answered" english "$T/out"
expect_exit 0 "chat --output json" A chat stories "Once upon a time" --max-tokens 8 --temperature 0 --output json
check "the answer has text and usage" jq -e '(.choices[0].message.content|length > 0) and .usage.completion_tokens > 0 and .usage.completion_tokens <= 8' "$T/out"
expect_exit 1 "an unknown model" A chat nosuch "hello"
check "is a model_not_found with a hint" bash -c "grep -q model_not_found '$T/err' && grep -q 'ciel model list' '$T/err'"
expect_exit 2 "a bad --temperature is a usage error" A chat stories "x" --temperature hot
expect_exit 0 "model list shows the public model" A model list
check "stories, ready, public" grep -qE '^stories +ready +node-az1 .* yes ' "$T/out"

# workers never run as root
pid=$(worker_pid _public/stories)
check "the public model's worker runs" test -n "$pid"
check "under a uid that is not root" test "$(ps -o uid= -p "$pid" | tr -d ' ')" -ne 0

# a tenant's own model
expect_exit 0 "acme deploys its own model --wait" A model deploy "$GGUF" --name tales --ctx 256 --max-seqs 2 --wait
check "deploy showed loading then ready" bash -c "grep -q 'model tales: .*ready on node-az1' '$T/err'"
check "deploy printed the endpoint" grep -qE '^tales +ready ' "$T/out"
expect_exit 0 "model show tales --output json" A model show tales --output json
check "ctx, max_seqs, rss and no worker secrets" jq -e '.ctx == 256 and .max_seqs == 2 and .rss_bytes > 0 and .state == "ready" and (has("token")|not) and (has("url")|not) and (has("worker")|not)' "$T/out"
tpid=$(worker_pid acme/tales)
check "its worker runs" test -n "$tpid"
check "under acme's uid, another than the public one's" bash -c "u=\$(ps -o uid= -p $tpid | tr -d ' '); [ \"\$u\" -ne 0 ] && [ \"\$u\" -ne $(ps -o uid= -p "$pid" | tr -d ' ') ]"
expect_exit 0 "acme chats with it" A chat tales "Once upon a time" --temperature 0 --max-tokens 20
check "English" english "$T/out"
expect_exit 1 "beta cannot use acme's model" B chat tales "Once upon a time"
check "it is a 404 model_not_found to beta" grep -q model_not_found "$T/err"
expect_exit 1 "a broken GGUF is refused" bash -c "head -c 5000 '$GGUF' >'$T/cut.gguf'; ciel --profile acme model deploy '$T/cut.gguf' --name broken"
check "with a 400 and the engine's message" grep -q invalid_argument "$T/err"
check "and nothing was stored" bash -c "! ciel --profile acme model show broken >/dev/null 2>&1"

# the official openai client with an API key
expect_exit 0 "apikey create" A apikey create --name client --output json
KEY=$(jq -r .key "$T/out")
check "the key is a ciel key" bash -c "[[ '$KEY' == sk-ciel-* ]]"
expect_exit 0 "apikey create (table) explains its use" A apikey create
check "with OPENAI_BASE_URL and curl" bash -c "grep -q OPENAI_BASE_URL '$T/out' && grep -q 'curl --cacert' '$T/out'"
expect_exit 0 "apikey list" A apikey list --output json
check "lists both keys without secrets" jq -e '(.items|length) == 2 and all(.items[]; (has("key")|not) and (has("secret_sha256")|not))' "$T/out"
NODE_DIR=$CIEL_BIN/node
if command -v node >/dev/null && NM=$(bash "$CIEL_SRC/tests/llm/node-deps.sh" "$NODE_DIR" 2>"$T/npm.err"); then
	cp "$CIEL_SRC/tests/llm/oai_client.mjs" "$NODE_DIR/"
	expect_exit 0 "the openai client: models, chat, stream, completions" \
		env OPENAI_API_KEY="$KEY" NODE_EXTRA_CA_CERTS="$UP/pki/ca.pem" node "$NODE_DIR/oai_client.mjs" "$URL/openai/v1" stories
	check "models.list has the public and acme's model" jq -e '(.models|index("stories")) and (.models|index("tales"))' "$T/out"
	check "chat and stream carry usage" jq -e '.chat_usage.total_tokens > 0 and .stream_usage.completion_tokens > 0' "$T/out"
	check "the chat is English" bash -c "jq -r .chat '$T/out' >'$T/chat.txt'; grep -qiwE 'the|a|was|and|she|he' '$T/chat.txt'"
	expect_exit 1 "the openai client with a wrong key" \
		env OPENAI_API_KEY="sk-ciel-ak_0000000000000000-$(printf '0%.0s' $(seq 64))" NODE_EXTRA_CA_CERTS="$UP/pki/ca.pem" node "$NODE_DIR/oai_client.mjs" "$URL/openai/v1" stories
	check "gets a 401" grep -q '"status":401' "$T/out"
else
	not_ok "npm packages for the openai client: $(tail -3 "$T/npm.err")"
fi
oai() { # key path [curl args...]: prints the status code, body in $T/oai.json, headers in $T/oai.h
	local key=$1 path=$2; shift 2
	curl -s -o "$T/oai.json" -D "$T/oai.h" -w '%{http_code}' --cacert "$UP/pki/ca.pem" \
		-H "Authorization: Bearer $key" "$@" "$URL/openai/v1$path"
}
check "curl with the key lists models" test "$(oai "$KEY" /models)" = 200
# the key with its last character changed (to one it is not)
case $KEY in *0) BAD=${KEY%?}1 ;; *) BAD=${KEY%?}0 ;; esac
check "a wrong secret is a 401" test "$(oai "$BAD" /models)" = 401
check "OpenAI-shaped" jq -e '.error.message and .error.type' "$T/oai.json"
check "no key at all is a 401" test "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$UP/pki/ca.pem" "$URL/openai/v1/models")" = 401
BODY='{"model":"stories","max_tokens":30,"messages":[{"role":"user","content":"Once upon a time zebracanary"}]}'
check "curl chat with the key" test "$(oai "$KEY" /chat/completions -H 'Content-Type: application/json' -d "$BODY")" = 200

# tokens per minute
expect_exit 0 "the operator sets acme's llm-tpm" ciel --tenant acme quota set --llm-tpm 60
check "the quota shows it" grep -qE 'llm tokens/minute +60 ' "$T/out"
for _ in 1 2 3; do oai "$KEY" /chat/completions -H 'Content-Type: application/json' -d "$BODY" >"$T/code"; done
check "past it, a 429" test "$(cat "$T/code")" = 429
check "OpenAI-shaped, rate_limit_exceeded" jq -e '.error.code == "rate_limit_exceeded"' "$T/oai.json"
check "with Retry-After" grep -qi '^retry-after: [0-9]' "$T/oai.h"
expect_exit 1 "ciel chat past the quota" A chat stories "Once upon a time"
check "says so and hints at the quota" bash -c "grep -qi rate_limit '$T/err' && grep -q 'quota show' '$T/err'"
check "beta is not limited by acme's use" bash -c "ciel --profile beta chat stories 'Once upon a time' --max-tokens 5 >/dev/null"
ciel --tenant acme quota set --llm-tpm 100000 >/dev/null 2>&1

# audit: llm events with token counts, never the prompt
expect_exit 0 "acme's audit export" A audit export
check "has llm.chat events" grep -q '"llm.chat"' "$T/out"
check "with token counts" bash -c "jq -c 'select(.action == \"llm.chat\" and .detail.completion_tokens > 0)' '$T/out' | grep -q ."
check "naming the API key" grep -q 'apikey:ak_' "$T/out"
check "never the prompt" bash -c "! grep -qi zebracanary '$T/out'"
check "the region's audit has no prompt either" bash -c "! ciel audit export | grep -qi zebracanary"
expect_exit 0 "acme's audit chain, details included, verifies" A audit verify
check "nor cield's log" bash -c "! grep -qi zebracanary '$UP/cield.log'"
check "nor the node's" bash -c "! grep -rqi zebracanary '$UP/agents'"

# a killed worker comes back
kill -9 "$pid"
check "the killed worker is restarted" bash -c 'for _ in $(seq 100); do p=$(worker_pid _public/stories); [ -n "$p" ] && [ "$p" != '"$pid"' ] && exit 0; sleep 0.1; done; exit 1'
check "and ready again" wait_model acme stories ready 20
expect_exit 0 "chat works again" A chat stories "Once upon a time" --temperature 0 --max-tokens 20
check "English" english "$T/out"

# an agent restart adopts the running worker
pid=$(worker_pid _public/stories)
apid=$(cat "$UP/agents/az1/agent.pid")
kill "$apid"
for _ in $(seq 100); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
check "the agent stopped, the worker did not" bash -c "! kill -0 $apid 2>/dev/null && alive $pid"
expect_exit 0 "ciel up restarts the agent" ciel up --data "$UP" --listen "127.0.0.1:$PORT" --zones 1
sleep 1
check "it adopted the worker" grep "model worker adopted endpoint=public/stories" "$UP/agents/az1/agent.log"
check "the same worker serves" test "$(worker_pid _public/stories)" = "$pid"
check "and no second one was started" bash -c "! sed -n '/model worker adopted endpoint=public\/stories/,\$p' '$UP/agents/az1/agent.log' | grep -q 'model worker started endpoint=public/stories'"
expect_exit 0 "chat through the adopted worker" A chat stories "Once upon a time" --temperature 0 --max-tokens 10
check "English" english "$T/out"

# redeploy: a new generation replaces the worker
expect_exit 0 "acme redeploys tales --wait" A model deploy "$GGUF" --name tales --ctx 128 --wait
check "a new worker serves it" bash -c "p=\$(worker_pid acme/tales); [ -n \"\$p\" ] && [ \"\$p\" != $tpid ]"
check "the old one is gone" bash -c "! alive $tpid"
check "with the new context" test "$(A model show tales --output json | jq .ctx)" = 128

# deleting a model stops its worker
expect_exit 0 "acme deletes tales" A model delete tales
check "its worker stops" wait_no_worker acme/tales
check "the public one still runs" test -n "$(worker_pid _public/stories)"
expect_exit 1 "chat with the deleted model" A chat tales "Once upon a time"
check "is model_not_found" grep -q model_not_found "$T/err"
expect_exit 0 "the operator deletes stories" ciel model delete stories --public
check "its worker stops" wait_no_worker _public/stories

# down leaves no worker behind
expect_exit 0 "the operator deploys stories again" ciel model deploy "$GGUF" --name stories --public --wait
pid=$(worker_pid _public/stories)
check "its worker runs" test -n "$pid"
# under CIEL_SANITIZE the region's programs and workers report here
check "no sanitizer report from cield, the agent or a worker" bash -c "! grep -sqE 'AddressSanitizer|runtime error:|LeakSanitizer' '$UP/cield.log' '$UP/agents/az1/agent.log' $UP/agents/az1/llm/*/*/err.txt"
expect_exit 0 "ciel down" ciel down --data "$UP"
check "no model worker is left" bash -c "! alive $pid"
check "nor any record of one" test ! -e "$UP/agents/az1/llm"
check "--help of every new command" bash -c 'for c in "model deploy" "model list" "model show" "model delete" "apikey create" "apikey list" "apikey delete" chat; do ciel $c --help >/dev/null || exit 1; done'
finish
