#!/usr/bin/env bash
# ciel-llm serve, the model worker, on the real stories260K model: its
# command line, the ready file and bearer auth of the agent's contract, the
# official openai npm client (tests/llm/openai_client.mjs), then what a
# client library does not show: SSE framing and [DONE], HTTP/1.0, four
# streams at once, a client that hangs up mid-stream (its sequence is
# freed), body and context limits, and a log that never holds prompt or
# output text. SIGTERM ends it with 0, even mid-stream.
. "$(dirname "$0")/lib.sh"

LLM=$CIEL_BIN/ciel-llm
MODELS=${CIEL_MODELS:-$CIEL_SRC/../shared/models}
MODEL=$MODELS/stories260K/stories260k-f32.v3.gguf
[ -f "$MODEL" ] || { not_ok "model $MODEL present"; finish; }

expect_exit 0 "serve --help exits 0" "$LLM" serve --help
check "--help names the options" grep -q -- "--ready-file" "$T/out"
expect_exit 2 "no --model exits 2" "$LLM" serve --name x
expect_exit 2 "a bad --threads exits 2" "$LLM" serve --model "$MODEL" --name x --threads zero
check "the message names the flag" grep -q -- "--threads" "$T/err"
expect_exit 2 "a bad --name exits 2" "$LLM" serve --model "$MODEL" --name 'a b'
expect_exit 1 "a missing model file exits 1" "$LLM" serve --model "$T/nosuch.gguf" --name x

TOKEN=tok-$RANDOM$RANDOM
echo "$TOKEN" >"$T/token"
"$LLM" serve --model "$MODEL" --name stories --listen 127.0.0.1:0 --threads 1 --max-seqs 4 \
	--token-file "$T/token" --ready-file "$T/ready.json" 2>"$T/worker.log" &
WPID=$!
PIDS+=("$WPID")
for _ in $(seq 200); do [ -s "$T/ready.json" ] && break; sleep 0.05; done
check "the ready file appears" test -s "$T/ready.json"
U=$(jq -r .url "$T/ready.json")
check "ready file: url, pid, model, ctx, rss_bytes" jq -e --argjson pid "$WPID" \
	'(.url | test("^http://127\\.0\\.0\\.1:[0-9]+$")) and .pid == $pid and .model == "stories" and
	 .ctx == 512 and .rss_bytes > 0' "$T/ready.json"
check "stderr says where it listens" grep -qF "listening on $U" "$T/worker.log"

AUTH=(-H "Authorization: Bearer $TOKEN")
api() { curl -s -o "$T/body" -w '%{http_code}' "${AUTH[@]}" "$@"; }

check "healthz needs no key" bash -c "curl -sf '$U/healthz' | jq -e '.status == \"ok\" and .running == 0 and
	.kv_blocks_total > 0 and .rss_bytes > 0'"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$U/openai/v1/models")
check "models without a key: 401 invalid_api_key" bash -c "[ $code = 401 ] &&
	jq -e '.error.code == \"invalid_api_key\" and .error.type == \"invalid_request_error\"' '$T/body'"
code=$(curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer x$TOKEN" "$U/v1/models")
check "a wrong key: 401" test "$code" = 401
code=$(api "$U/v1/models")
check "/v1/models with the key" bash -c "[ $code = 200 ] && jq -e '.data[0].id == \"stories\"' '$T/body'"

# the official client
if NM=$(bash "$CIEL_SRC/tests/llm/node-deps.sh" "$CIEL_BIN/node" 2>"$T/npm.err"); then
	NODE_DEPS=$NM OAI_BASE=$U/openai/v1 OAI_KEY=$TOKEN OAI_MODEL=stories \
		node "$CIEL_SRC/tests/llm/openai_client.mjs" >"$T/node.out" 2>&1
	rc=$?
	grep -A2 '^not ok' "$T/node.out" | sed 's/^/#   /'
	check "official openai client: $(tail -1 "$T/node.out" | sed 's/^# //')" test "$rc" -eq 0
else
	not_ok "npm packages install"; sed 's/^/#   /' "$T/npm.err" | tail -5
fi

# SSE framing, by hand
chat='{"model":"stories","messages":[{"role":"user","content":"Once upon a time"}],"temperature":0,"max_tokens":40'
curl -sN -D "$T/h" "${AUTH[@]}" "$U/openai/v1/chat/completions" -d "$chat,\"stream\":true}" >"$T/sse"
check "stream: text/event-stream" grep -qi '^content-type: text/event-stream' "$T/h"
check "stream: ends with data: [DONE] and a blank line" \
	bash -c "[ \"\$(tail -c 14 '$T/sse' | od -An -c | tr -d ' \n')\" = 'data:[DONE]\\n\\n' ]"
check "stream: every event is one data: line then a blank line" /usr/bin/python3 -c '
import json, sys
t = open(sys.argv[1]).read()
assert t.endswith("\n\n")
ev = t[:-2].split("\n\n")
assert len(ev) > 3, ev
for e in ev[:-1]:
    assert e.startswith("data: ") and "\n" not in e, e
    json.loads(e[6:])
assert ev[-1] == "data: [DONE]"
' "$T/sse"
sse_text() { /usr/bin/python3 -c '
import json, sys
out = ""
for e in open(sys.argv[1]).read().split("\n\n"):
    if e.startswith("data: {"):
        c = json.loads(e[6:])["choices"]
        if c: out += c[0]["delta"].get("content") or ""
print(out, end="")' "$1"; }
STEXT=$(sse_text "$T/sse")
code=$(api "$U/openai/v1/chat/completions" -d "$chat}")
check "non-stream greedy gives the streamed text" bash -c "[ $code = 200 ] &&
	[ \"\$(jq -j '.choices[0].message.content' '$T/body')\" = \"\$1\" ]" _ "$STEXT"
OUTTEXT=$(jq -j '.choices[0].message.content' "$T/body")

# HTTP/1.0: no chunked encoding, closed at the end (what a small proxy reads)
curl -s0 -N -D "$T/h10" "${AUTH[@]}" "$U/v1/chat/completions" -d "$chat,\"stream\":true}" >"$T/sse10"
check "HTTP/1.0 stream: unchunked, closed at the end, complete" bash -c "
	! grep -qi '^transfer-encoding: chunked' '$T/h10' && grep -qi '^connection: close' '$T/h10' &&
	tail -c 14 '$T/sse10' | grep -q 'data: \[DONE\]' && [ \"\$1\" = \"\$2\" ]" _ \
	"$(sse_text "$T/sse10")" "$STEXT"

# four streams at once
cpids=()
for i in 1 2 3 4; do
	curl -sN "${AUTH[@]}" "$U/v1/chat/completions" -d "$chat,\"stream\":true}" >"$T/c$i" &
	cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p"; done
allok=1
for i in 1 2 3 4; do
	tail -c 14 "$T/c$i" | grep -q 'data: \[DONE\]' || allok=0
	[ "$(sse_text "$T/c$i")" = "$STEXT" ] || allok=0
done
check "4 concurrent streams all complete, each with the greedy text" test "$allok" = 1

# limits and errors, OpenAI-shaped
head -c $((2 << 20)) /dev/zero | tr '\0' 'a' >"$T/big"
code=$(api "$U/v1/completions" --data-binary "@$T/big")
check "a 2 MiB body: 413" bash -c "[ $code = 413 ] && jq -e '.error.message' '$T/body'"
code=$(api "$U/v1/chat/completions" -d '{"model":"stories","messages":[')
check "malformed JSON: 400 invalid_request_error" bash -c "[ $code = 400 ] &&
	jq -e '.error.type == \"invalid_request_error\" and .error.param == null' '$T/body'"
long=$(printf 'Once upon a time there was a cat. %.0s' $(seq 120))
code=$(api "$U/v1/completions" -d "{\"model\":\"stories\",\"prompt\":\"$long\"}")
check "a prompt over the context: 400 context_length_exceeded" bash -c "[ $code = 400 ] &&
	jq -e '.error.code == \"context_length_exceeded\" and .error.param == \"prompt\" and
	(.error.message | test(\"512\"))' '$T/body'"
code=$(api "$U/v1/chat/completions")
check "GET on chat/completions: 405" test "$code" = 405
code=$(api "$U/v1/embeddings" -d '{}')
check "an unknown route: 404 OpenAI-shaped" bash -c "[ $code = 404 ] && jq -e '.error.message' '$T/body'"

# the log: request lines with counts, never prompt or output text
MARK=zebracorn$RANDOM
code=$(api "$U/v1/completions" -d "{\"model\":\"stories\",\"prompt\":\"The $MARK sat\",\"max_tokens\":4}")
check "a request with a marker word" test "$code" = 200
check "the log has request lines with token counts" grep -q "completion_tokens=" "$T/worker.log"
check "the log never holds the prompt" bash -c "! grep -q '$MARK' '$T/worker.log' &&
	! grep -q 'Once upon' '$T/worker.log'"
check "the log never holds the output" bash -c "! grep -qF \"\$1\" '$T/worker.log'" _ "$OUTTEXT"

kill -TERM "$WPID"
wait "$WPID"
check "SIGTERM: exit 0" test $? -eq 0
check "no sanitizer report in the worker's log" bash -c "! grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error' '$T/worker.log'"

# chat templates: stories260K with a Mistral template added (it writes BOS
# itself: the worker must not add a second one), and with one we do not know
# (chat is refused naming the template; completions still work)
with_template() { # in.gguf out.gguf template: a copy with tokenizer.chat_template added
	/usr/bin/python3 - "$@" <<'EOF'
import struct, sys
src, dst, tmpl = sys.argv[1], sys.argv[2], sys.argv[3]
b = open(src, "rb").read()
assert b[:4] == b"GGUF" and struct.unpack_from("<I", b, 4)[0] == 3
n_t, n_kv = struct.unpack_from("<QQ", b, 8)
p = 24
def skip_str(p): return p + 8 + struct.unpack_from("<Q", b, p)[0]
SZ = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip_val(p, t):
    if t == 8: return skip_str(p)
    if t == 9:
        et, n = struct.unpack_from("<IQ", b, p); p += 12
        for _ in range(n): p = skip_val(p, et)
        return p
    return p + SZ[t]
align = 32
for _ in range(n_kv):
    k0 = p; p = skip_str(p); t = struct.unpack_from("<I", b, p)[0]; p += 4
    if b[k0 + 8:p - 4] == b"general.alignment": align = struct.unpack_from("<I", b, p)[0]
    p = skip_val(p, t)
kv_end = p
for _ in range(n_t):
    p = skip_str(p); nd = struct.unpack_from("<I", b, p)[0]; p += 4 + 8 * nd + 4 + 8
data = (p + align - 1) // align * align
key, val = b"tokenizer.chat_template", tmpl.encode()
out = bytearray(b[:8]) + struct.pack("<QQ", n_t, n_kv + 1) + b[24:kv_end]
out += struct.pack("<Q", len(key)) + key + struct.pack("<I", 8) + struct.pack("<Q", len(val)) + val
out += b[kv_end:p]
out += b"\0" * ((-len(out)) % align) + b[data:]
open(dst, "wb").write(out)
EOF
}
start_worker() { # model name log
	rm -f "$T/ready.json"
	"$LLM" serve --model "$1" --name "$2" --threads 1 --ready-file "$T/ready.json" 2>"$3" &
	WPID=$!
	PIDS+=("$WPID")
	for _ in $(seq 200); do [ -s "$T/ready.json" ] && break; sleep 0.05; done
	U=$(jq -r .url "$T/ready.json")
}
user_msg='"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0'
with_template "$MODEL" "$T/mistral.gguf" \
	"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
start_worker "$T/mistral.gguf" mistral "$T/worker-m.log"
check "the Mistral template is recognised" grep -q "chat=mistral" "$T/worker-m.log"
want=$("$LLM" tokenize --model "$T/mistral.gguf" --special --output json \
	"<s>[INST] Once upon a time [/INST]" | jq '.ids | length')
code=$(curl -s -o "$T/body" -w '%{http_code}' "$U/v1/chat/completions" -d "{\"model\":\"mistral\",$user_msg}")
check "Mistral chat: the prompt rendered with one BOS ($want tokens)" bash -c "[ $code = 200 ] &&
	jq -e --argjson w '$want' '.usage.prompt_tokens == \$w and (.choices[0].message.content | length) > 0' '$T/body'"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$U/v1/chat/completions" \
	-d '{"model":"mistral","messages":[{"role":"assistant","content":"hi"}]}')
check "Mistral: a conversation out of turn is a 400 naming messages" bash -c "[ $code = 400 ] &&
	jq -e '.error.param == \"messages\" and (.error.message | test(\"Mistral\"))' '$T/body'"
kill -TERM "$WPID"; wait "$WPID"

with_template "$MODEL" "$T/odd.gguf" "{% for m in messages %}<<{{ m.content }}>>{% endfor %}"
start_worker "$T/odd.gguf" odd "$T/worker-o.log"
check "an unknown template: the worker serves anyway, and says so" grep -q "chat disabled" "$T/worker-o.log"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$U/v1/chat/completions" -d "{\"model\":\"odd\",$user_msg}")
check "an unknown template: chat is a 400 naming the template problem" bash -c "[ $code = 400 ] &&
	jq -e '.error.code == \"unsupported_chat_template\" and .error.param == \"messages\"' '$T/body'"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$U/v1/completions" \
	-d '{"model":"odd","prompt":"Once upon a time","max_tokens":4}')
check "an unknown template: completions still work" test "$code" = 200
kill -TERM "$WPID"; wait "$WPID"

# stories260K answers 480 tokens in a blink: a slower random-weight model
# (27 MB, q8_0) lets a client hang up, and a signal land, mid-generation
"$LLM" gen --shape tiny --dim 512 --layers 8 --heads 8 --kv-heads 4 --ffn 1536 --ctx 1024 \
	--type q8_0 --vocab-from "$MODEL" --out "$T/mid.gguf" >"$T/gen.out" 2>&1
check "a mid-size model generated" test -s "$T/mid.gguf"
rm -f "$T/ready.json"
"$LLM" serve --model "$T/mid.gguf" --name mid --threads 1 --token-file "$T/token" \
	--ready-file "$T/ready.json" 2>"$T/worker2.log" &
WPID=$!
PIDS+=("$WPID")
for _ in $(seq 200); do [ -s "$T/ready.json" ] && break; sleep 0.05; done
U=$(jq -r .url "$T/ready.json")

# a client that hangs up mid-stream frees its sequence
before=$(curl -s "$U/healthz" | jq .completion_tokens)
/usr/bin/python3 - "$U" "$TOKEN" >"$T/hang.out" 2>&1 <<'EOF'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
body = b'{"model":"mid","prompt":"Once upon a time","max_tokens":900,"temperature":0.8,"stream":true}'
s = socket.create_connection((u.hostname, u.port))
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + sys.argv[2].encode() +
          b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
got = b""
while b"data: {" not in got:
    d = s.recv(4096)
    if not d: break
    got += d
s.close()
print("first event seen" if b"data: {" in got else "no event: " + got.decode(errors="replace"))
EOF
check "the hanging-up client saw its stream start" grep -q "first event seen" "$T/hang.out"
for _ in $(seq 100); do
	curl -s "$U/healthz" >"$T/hz"
	[ "$(jq .running "$T/hz")" = 0 ] && [ "$(jq .kv_blocks_used "$T/hz")" = 0 ] && break
	sleep 0.05
done
check "after the hang-up: running 0, no KV block used" jq -e '.running == 0 and .waiting == 0 and
	.kv_blocks_used == 0' "$T/hz"
after=$(jq .completion_tokens "$T/hz")
check "it was cancelled before its 900 tokens ($((after - before)) made)" test $((after - before)) -lt 600

# and one that hangs up while waiting for a whole (non-stream) answer
before=$(jq .completion_tokens "$T/hz")
/usr/bin/python3 - "$U" "$TOKEN" >"$T/hang2.out" 2>&1 <<'EOF'
import socket, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
body = b'{"model":"mid","prompt":"Once upon a time","max_tokens":900,"temperature":0.8}'
s = socket.create_connection((u.hostname, u.port))
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + sys.argv[2].encode() +
          b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
time.sleep(0.3)
s.close()
print("closed")
EOF
for _ in $(seq 100); do
	curl -s "$U/healthz" >"$T/hz"
	[ "$(jq .running "$T/hz")" = 0 ] && [ "$(jq .completion_tokens "$T/hz")" -gt "$before" ] && break
	sleep 0.05
done
after=$(jq .completion_tokens "$T/hz")
check "a non-stream client that hangs up is cancelled too ($((after - before)) of 900 made)" \
	bash -c "jq -e '.running == 0 and .kv_blocks_used == 0' '$T/hz' && [ $((after - before)) -lt 600 ]"

# SIGTERM mid-stream: the stream ends with an error event saying why, exit 0
curl -sN "${AUTH[@]}" "$U/v1/completions" \
	-d '{"model":"mid","prompt":"Once","max_tokens":900,"stream":true}' >"$T/term.sse" &
cpid=$!
for _ in $(seq 100); do [ -s "$T/term.sse" ] && break; sleep 0.05; done
kill -TERM "$WPID"
wait "$WPID"
check "SIGTERM mid-stream: exit 0" test $? -eq 0
wait "$cpid"
check "the open stream got an error event saying why" grep -q '"error".*shutting down' "$T/term.sse"
check "no sanitizer report in the second worker's log" bash -c "! grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error' '$T/worker2.log'"
finish
