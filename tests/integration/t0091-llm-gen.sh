#!/usr/bin/env bash
# `ciel-llm gen` and `ciel-llm info` as the tests and the bench use them:
# every weight type loads and runs; the layout is llama.cpp's (names, shapes,
# norms in f32, metadata); weights are deterministic from the seed with the
# stated statistics; the vocabulary is copied and padded, or synthesised;
# GGUF v1 and v3 hold the same tensors; usage errors exit 2 and a damaged
# file exits 1 with a message that says where.
. "$(dirname "$0")/lib.sh"

LLM=$CIEL_BIN/ciel-llm
PY=/usr/bin/python3
llm() { "$LLM" "$@"; }

expect_exit 0 "gen --help exits 0" llm gen --help
check "gen --help names the shapes" grep -q tinyllama-1.1b "$T/out"
expect_exit 0 "info --help exits 0" llm info --help

for ty in f32 f16 bf16 q8_0 q4_0; do
	expect_exit 0 "gen tiny $ty" llm gen --shape tiny --type "$ty" --seed 5 --out "$T/t-$ty.gguf"
	expect_exit 0 "a tiny $ty model loads and generates" llm run --model "$T/t-$ty.gguf" \
		--prompt "Once upon a time" -n 4 --temperature 0
done

expect_exit 0 "info --output json" llm info "$T/t-q8_0.gguf" --output json
cp "$T/out" "$T/q8.json"
check "json: llama.cpp's layout, q8_0 matrices and f32 norms" $PY - "$T/q8.json" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
m, ts = j["metadata"], {t["name"]: t for t in j["tensors"]}
assert j["version"] == 3
assert m["general.architecture"] == "llama"
for k, v in (("llama.embedding_length", 64), ("llama.block_count", 2), ("llama.attention.head_count", 4),
             ("llama.attention.head_count_kv", 2), ("llama.feed_forward_length", 128),
             ("llama.context_length", 256), ("llama.rope.dimension_count", 16), ("general.file_type", 7)):
    assert m[k] == v, (k, m[k])
assert m["tokenizer.ggml.tokens"]["len"] == 512 and m["tokenizer.ggml.model"] == "llama"
want = {"token_embd.weight": [64, 512], "output_norm.weight": [64], "output.weight": [64, 512]}
for l in range(2):
    b = "blk.%d." % l
    want.update({b + "attn_norm.weight": [64], b + "ffn_norm.weight": [64], b + "attn_q.weight": [64, 64],
                 b + "attn_k.weight": [64, 32], b + "attn_v.weight": [64, 32], b + "attn_output.weight": [64, 64],
                 b + "ffn_gate.weight": [64, 128], b + "ffn_up.weight": [64, 128], b + "ffn_down.weight": [128, 64]})
assert set(ts) == set(want), set(ts) ^ set(want)
for n, shape in want.items():
    assert ts[n]["shape"] == shape, (n, ts[n]["shape"])
    assert ts[n]["type"] == ("f32" if len(shape) == 1 else "q8_0"), n
    assert ts[n]["offset"] % 32 == 0
assert ts["blk.0.attn_q.weight"]["bytes"] == 64 * 64 // 32 * 34
PYEOF

expect_exit 0 "info as a table" llm info "$T/t-q8_0.gguf"
check "the table lists tensors with type and shape" grep -Eq "blk.1.ffn_down.weight +q8_0 +128 x 64" "$T/out"

# deterministic: same seed, same bytes; another seed, other weights
llm gen --shape tiny --type q8_0 --seed 5 --out "$T/again.gguf" 2>/dev/null
check "the same seed writes the same file" cmp "$T/t-q8_0.gguf" "$T/again.gguf"
llm gen --shape tiny --type q8_0 --seed 6 --out "$T/other.gguf" 2>/dev/null
check "another seed writes other weights" bash -c "! cmp -s '$T/t-q8_0.gguf' '$T/other.gguf'"

# f32: weights std ~0.02 around 0, norms around 1
llm info "$T/t-f32.gguf" --output json >"$T/f32.json"
check "f32 weights: std 0.02, mean 0; norms 1 +- 0.02" $PY - "$T/f32.json" "$T/t-f32.gguf" <<'PYEOF'
import json, sys, numpy as np
j = json.load(open(sys.argv[1]))
d = open(sys.argv[2], "rb").read()
for t in j["tensors"]:
    a = np.frombuffer(d, dtype="<f4", count=t["bytes"] // 4, offset=t["offset"])
    if t["name"].endswith("norm.weight"):
        assert abs(a.mean() - 1) < 0.01 and 0.01 < a.std() < 0.03, (t["name"], a.mean(), a.std())
    else:
        assert abs(a.mean()) < 0.002 and 0.018 < a.std() < 0.022, (t["name"], a.mean(), a.std())
        assert np.abs(a).max() < 0.02 * 3.5  # four uniforms: bounded tails
PYEOF

# the vocabulary: copied from stories260K and padded, or synthesised
llm gen --dim 64 --layers 1 --heads 4 --ffn 64 --vocab 600 --out "$T/pad.gguf" 2>/dev/null
llm info "$T/pad.gguf" --output json --full >"$T/pad.json"
check "a vocabulary padded to --vocab with <pad_N>" $PY - "$T/pad.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))["metadata"]
tok = m["tokenizer.ggml.tokens"]["values"]
assert len(tok) == 600 and tok[1] == "<s>" and tok[599] == "<pad_599>", (len(tok), tok[599])
assert len(m["tokenizer.ggml.scores"]["values"]) == 600
assert m["tokenizer.ggml.bos_token_id"] == 1
PYEOF
llm gen --shape tiny --vocab-from none --vocab 300 --out "$T/syn.gguf" 2>/dev/null
llm info "$T/syn.gguf" --output json --full >"$T/syn.json"
check "--vocab-from none: specials and 256 byte tokens" $PY - "$T/syn.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))["metadata"]
tok = m["tokenizer.ggml.tokens"]["values"]
assert tok[:3] == ["<unk>", "<s>", "</s>"] and tok[3] == "<0x00>" and tok[258] == "<0xFF>", tok[:4]
assert m["tokenizer.ggml.token_type"]["values"][3] == 6
PYEOF
expect_exit 0 "a synthesised vocabulary runs" llm run --model "$T/syn.gguf" --prompt "hi" -n 2 --temperature 0

# the version 1 layout holds the same model
llm gen --shape tiny --type q4_0 --seed 5 --gguf-version 1 --out "$T/v1.gguf" 2>/dev/null
llm info "$T/v1.gguf" --output json >"$T/v1.json"
llm info "$T/t-q4_0.gguf" --output json >"$T/v3.json"
check "GGUF v1 and v3: same metadata and tensor bytes" $PY - "$T/v1.json" "$T/v3.json" "$T/v1.gguf" "$T/t-q4_0.gguf" <<'PYEOF'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
da, db = open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read()
assert a["version"] == 1 and b["version"] == 3
assert a["metadata"] == b["metadata"]
for x, y in zip(a["tensors"], b["tensors"]):
    assert (x["name"], x["type"], x["shape"], x["bytes"]) == (y["name"], y["type"], y["shape"], y["bytes"])
    assert da[x["offset"]:x["offset"] + x["bytes"]] == db[y["offset"]:y["offset"] + y["bytes"]], x["name"]
PYEOF
expect_exit 0 "the v1 file runs" llm run --model "$T/v1.gguf" --prompt "Once" -n 2 --temperature 0

# usage errors exit 2, with a message that says what
expect_exit 2 "no --out exits 2" llm gen --shape tiny
expect_exit 2 "an unknown shape exits 2" llm gen --shape gpt5 --out "$T/x.gguf"
check "the message lists the shapes" grep -q "tinyllama-1.1b" "$T/err"
expect_exit 2 "an unknown type exits 2" llm gen --shape tiny --type q5_0 --out "$T/x.gguf"
expect_exit 2 "q8_0 with a dim not a multiple of 32 exits 2" llm gen --shape tiny --type q8_0 --dim 48 --out "$T/x.gguf"
expect_exit 2 "heads that do not divide dim exit 2" llm gen --shape tiny --heads 5 --out "$T/x.gguf"
expect_exit 1 "a vocabulary larger than --vocab exits 1" llm gen --shape tiny --vocab 100 --out "$T/x.gguf"
check "no partial file is left" test ! -e "$T/x.gguf"
expect_exit 2 "info without a file exits 2" llm info
expect_exit 2 "info --output yaml exits 2" llm info "$T/t-f32.gguf" --output yaml

# damaged files: clear errors, exit 1
expect_exit 1 "info on a missing file exits 1" llm info "$T/nope.gguf"
head -c 3000 "$T/t-q8_0.gguf" >"$T/cut.gguf"
expect_exit 1 "info on a truncated file exits 1" llm info "$T/cut.gguf"
check "the message says where it ends" grep -q "needs .* bytes" "$T/err"
head -c $(( $(stat -c %s "$T/t-q8_0.gguf") - 1 )) "$T/t-q8_0.gguf" >"$T/short.gguf"
expect_exit 1 "info on a file one byte short exits 1" llm info "$T/short.gguf"
check "the message names the tensor past the end" grep -q "output.weight.*past the end of the file" "$T/err"
printf 'GGUF\x07\x00\x00\x00' >"$T/v7.gguf"; head -c 64 /dev/zero >>"$T/v7.gguf"
expect_exit 1 "version 7 exits 1" llm info "$T/v7.gguf"
check "the message names the version" grep -q "version 7" "$T/err"

finish
