#!/usr/bin/python3
"""reference — an independent numpy forward pass of a Llama-family GGUF model.

The C engine (lib/llm/model.c) is checked against this: its own GGUF reader
(gguf_ref.py), weights dequantised to float64, activations in float64, the
whole sequence at once with a causal mask (no KV cache), so the two share
neither code nor structure.

  reference.py logits MODEL --tokens 1,2,3 [--act-q8]
                                               JSON {"logits": [[...] per position]};
                                               --act-q8: round the input of every
                                               q8_0/q4_0 product to 8-bit blocks of
                                               32 as the engine does
  reference.py greedy MODEL --tokens 1,2,3 -n N [--ignore-eos]
                                               JSON list of the generated ids
  reference.py write OUT --kind qwen2|llama3|tied [--version 1|2|3]
                                               a random model gen does not make
  reference.py encode MODEL TEXT               SentencePiece ids (with BOS)
  reference.py compare A.json B.json --rel TOL [--top1 FRAC] [--within FRAC --cap MAX]
                                               logits of A and B agree: per
                                               position, max|a-b| / std(a) <= TOL
                                               and argmax equal in >= FRAC of them

Architectures: "llama" (RoPE on adjacent pairs) and "qwen2" (RoPE on halves,
q/k/v biases); Llama-3 frequency scaling (rope_freqs.weight, or
rope.scaling.type "llama3" with its factors), linear scaling; grouped-query
attention; SwiGLU; tied output embeddings.
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_ref  # noqa: E402
from gguf_ref import GGUF  # noqa: E402


QUANT = (2, 8)  # q4_0, q8_0: the engine quantises activations for these


def act_q8(x):
    """x as the engine feeds it to a quantised matrix: blocks of 32, d = amax/127, rounded."""
    b = x.reshape(*x.shape[:-1], -1, 32)
    amax = np.abs(b).max(axis=-1, keepdims=True)
    d = amax / 127
    q = np.rint(np.divide(b, d, out=np.zeros_like(b), where=d > 0))
    return (q * d).reshape(x.shape)


class Model:
    def __init__(self, path, act_quant=False):
        g = GGUF(path)
        self.g = g
        self.act_quant = act_quant
        arch = g.kv.get("general.architecture", "llama")
        if arch not in ("llama", "qwen2"):
            raise ValueError("architecture %r not supported" % arch)
        self.arch = arch

        def key(k, default=None):
            v = g.kv.get(arch + "." + k, default)
            if v is None:
                raise ValueError("missing key %s.%s" % (arch, k))
            return v

        self.dim = int(key("embedding_length"))
        self.n_layers = int(key("block_count"))
        self.n_heads = int(key("attention.head_count"))
        self.n_kv = int(key("attention.head_count_kv", self.n_heads))
        self.ffn = int(key("feed_forward_length"))
        self.eps = float(key("attention.layer_norm_rms_epsilon", 1e-5))
        self.theta = float(key("rope.freq_base", 10000.0))
        self.head_dim = self.dim // self.n_heads
        self.n_rot = int(key("rope.dimension_count", self.head_dim))
        self.neox = arch == "qwen2"
        self.eos = g.kv.get("tokenizer.ggml.eos_token_id")

        half = self.n_rot // 2
        freqs = self.theta ** (-2.0 * np.arange(half) / self.n_rot)
        stype = g.kv.get(arch + ".rope.scaling.type", "none")
        factor = float(g.kv.get(arch + ".rope.scaling.factor", 1.0))
        if g.has("rope_freqs.weight"):
            freqs = freqs / g.tensor("rope_freqs.weight").reshape(-1)[:half]
        elif stype == "llama3":
            low = float(key("rope.scaling.low_freq_factor", 1.0))
            high = float(key("rope.scaling.high_freq_factor", 4.0))
            orig = float(key("rope.scaling.original_context_length", 8192))
            out = []
            for f in freqs:
                wl = 2 * math.pi / f
                if wl < orig / high:
                    out.append(f)
                elif wl > orig / low:
                    out.append(f / factor)
                else:
                    s = (orig / wl - low) / (high - low)
                    out.append((1 - s) * f / factor + s * f)
            freqs = np.array(out)
        elif stype == "linear" and factor > 0:
            freqs = freqs / factor
        self.freqs = freqs

        self.embd = g.tensor("token_embd.weight")
        self.out_norm = g.tensor("output_norm.weight")
        oname = "output.weight" if g.has("output.weight") else "token_embd.weight"
        self.out = g.tensor(oname)
        self.out_q = g.ttype(oname) in QUANT
        self.layers = []
        for i in range(self.n_layers):
            p = "blk.%d." % i
            L = {n: g.tensor(p + n + ".weight") for n in (
                "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
            L["quant"] = {n for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
                                      "ffn_up", "ffn_down") if g.ttype(p + n + ".weight") in QUANT}
            for b in ("attn_q", "attn_k", "attn_v"):
                if g.has(p + b + ".bias"):
                    L[b + ".bias"] = g.tensor(p + b + ".bias")
            self.layers.append(L)

    def mm(self, x, w, quant):
        """x @ w.T, with x quantised first where the engine does it (act_quant)."""
        if quant and self.act_quant:
            x = act_q8(x)
        return x @ w.T

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        """x: [T, heads, head_dim]; rotate the first n_rot dims of each head."""
        ang = np.outer(pos, self.freqs)  # [T, half]
        c = np.cos(ang)[:, None, :]
        s = np.sin(ang)[:, None, :]
        x = x.copy()
        half = self.n_rot // 2
        if self.neox:
            a = x[..., :half].copy()
            b = x[..., half:self.n_rot].copy()
            x[..., :half] = a * c - b * s
            x[..., half:self.n_rot] = a * s + b * c
        else:
            a = x[..., 0:self.n_rot:2].copy()
            b = x[..., 1:self.n_rot:2].copy()
            x[..., 0:self.n_rot:2] = a * c - b * s
            x[..., 1:self.n_rot:2] = a * s + b * c
        return x

    def forward(self, tokens):
        """Logits [T, n_vocab] for every position of tokens (from position 0)."""
        T = len(tokens)
        hd, nh, nkv = self.head_dim, self.n_heads, self.n_kv
        x = self.embd[np.array(tokens)]
        pos = np.arange(T, dtype=np.float64)
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for L in self.layers:
            h = self.rmsnorm(x, L["attn_norm"])
            q = self.mm(h, L["attn_q"], "attn_q" in L["quant"])
            k = self.mm(h, L["attn_k"], "attn_k" in L["quant"])
            v = self.mm(h, L["attn_v"], "attn_v" in L["quant"])
            if "attn_q.bias" in L:
                q = q + L["attn_q.bias"]
                k = k + L["attn_k.bias"]
                v = v + L["attn_v.bias"]
            q = self.rope(q.reshape(T, nh, hd), pos)
            k = self.rope(k.reshape(T, nkv, hd), pos)
            v = v.reshape(T, nkv, hd)
            att = np.empty((T, nh, hd))
            for hh in range(nh):
                kh = hh // (nh // nkv)
                s = q[:, hh, :] @ k[:, kh, :].T / math.sqrt(hd) + mask
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s /= s.sum(axis=1, keepdims=True)
                att[:, hh, :] = s @ v[:, kh, :]
            x = x + self.mm(att.reshape(T, nh * hd), L["attn_output"],
                            "attn_output" in L["quant"])
            h = self.rmsnorm(x, L["ffn_norm"])
            gt = self.mm(h, L["ffn_gate"], "ffn_gate" in L["quant"])
            up = self.mm(h, L["ffn_up"], "ffn_up" in L["quant"])
            x = x + self.mm(gt / (1 + np.exp(-gt)) * up, L["ffn_down"], "ffn_down" in L["quant"])
        return self.mm(self.rmsnorm(x, self.out_norm), self.out, self.out_q)

    def encode(self, text):
        """SentencePiece BPE over scores as llama2.c does it, BOS first."""
        vocab = self.g.kv["tokenizer.ggml.tokens"]
        scores = self.g.kv.get("tokenizer.ggml.scores", [0.0] * len(vocab))
        ids = {p: i for i, p in enumerate(vocab)}
        text = " " + text
        text = text.replace(" ", "\u2581")
        toks = []
        for ch in text:
            if ch in ids:
                toks.append(ids[ch])
            else:
                for b in ch.encode("utf-8"):
                    toks.append(ids["<0x%02X>" % b])
        while True:
            best, bi = -1e30, -1
            for i in range(len(toks) - 1):
                m = vocab[toks[i]] + vocab[toks[i + 1]]
                if m in ids and scores[ids[m]] > best:
                    best, bi = scores[ids[m]], i
            if bi < 0:
                break
            toks[bi:bi + 2] = [ids[vocab[toks[bi]] + vocab[toks[bi + 1]]]]
        bos = self.g.kv.get("tokenizer.ggml.bos_token_id", 1)
        return [bos] + toks


def write_model(path, kind, version):
    """A random model of a kind `ciel-llm gen` does not make, from our own writer.

    qwen2:  q/k/v biases, NeoX RoPE, separate output
    llama3: Llama-3 RoPE scaling from the keys (original context 16, so that it
            matters within a short test), partial rotary (8 of 16 dims)
    tied:   output tied to the embeddings, f16 matrices, rope_freqs.weight factors
    """
    rng = np.random.default_rng(11)
    dim, heads, kvh, ffn, vocab, layers = 64, 4, 2, 96, 512, 2
    hd = dim // heads
    arch = "qwen2" if kind == "qwen2" else "llama"
    S, U32, F = gguf_ref.STRING, gguf_ref.U32, gguf_ref.F32
    kv = {
        "general.architecture": (S, arch),
        "general.name": (S, "ref-" + kind),
        arch + ".context_length": (U32, 128),
        arch + ".embedding_length": (U32, dim),
        arch + ".block_count": (U32, layers),
        arch + ".feed_forward_length": (U32, ffn),
        arch + ".attention.head_count": (U32, heads),
        arch + ".attention.head_count_kv": (U32, kvh),
        arch + ".attention.layer_norm_rms_epsilon": (F, 1e-6),
        arch + ".rope.freq_base": (F, 10000.0 if kind != "qwen2" else 1000000.0),
    }
    if kind == "llama3":
        kv.update({
            "llama.rope.dimension_count": (U32, 8),
            "llama.rope.scaling.type": (S, "llama3"),
            "llama.rope.scaling.factor": (F, 8.0),
            "llama.rope.scaling.low_freq_factor": (F, 1.0),
            "llama.rope.scaling.high_freq_factor": (F, 4.0),
            "llama.rope.scaling.original_context_length": (U32, 16),
        })
    mt = gguf_ref.T_F16 if kind == "tied" else gguf_ref.T_F32
    T = {}

    def mat(name, rows, k, scale=0.3):
        T[name] = (mt, rng.normal(0, scale / math.sqrt(k) * 4, (rows, k)))

    def vec(name, n, base=1.0, scale=0.1):
        T[name] = (gguf_ref.T_F32, base + rng.normal(0, scale, n))

    T["token_embd.weight"] = (mt, rng.normal(0, 1, (vocab, dim)))
    if kind == "tied":
        T["rope_freqs.weight"] = (gguf_ref.T_F32, rng.uniform(1, 8, hd // 2))
    for i in range(layers):
        p = "blk.%d." % i
        vec(p + "attn_norm.weight", dim)
        vec(p + "ffn_norm.weight", dim)
        mat(p + "attn_q.weight", dim, dim)
        mat(p + "attn_k.weight", kvh * hd, dim)
        mat(p + "attn_v.weight", kvh * hd, dim)
        mat(p + "attn_output.weight", dim, dim)
        mat(p + "ffn_gate.weight", ffn, dim)
        mat(p + "ffn_up.weight", ffn, dim)
        mat(p + "ffn_down.weight", dim, ffn)
        if kind == "qwen2":
            vec(p + "attn_q.bias", dim, 0.0, 0.5)
            vec(p + "attn_k.bias", kvh * hd, 0.0, 0.5)
            vec(p + "attn_v.bias", kvh * hd, 0.0, 0.5)
    vec("output_norm.weight", dim)
    if kind != "tied":
        mat("output.weight", vocab, dim)
    gguf_ref.write(path, kv, T, version)


def parse_tokens(s):
    return [int(t) for t in s.split(",") if t.strip()]


def arg(argv, name, default=None):
    if name in argv:
        return argv[argv.index(name) + 1]
    return default


def compare(a, b, rel, top1, within=1.0, cap=None):
    """Print the figures; return True if the logits of b match a: at least a
    fraction `within` of the positions within rel, none past cap (default rel),
    and top-1 agreement on at least a fraction top1."""
    la, lb = np.array(a["logits"]), np.array(b["logits"])
    if la.shape != lb.shape:
        print("shape %s != %s" % (la.shape, lb.shape))
        return False
    worst = 0.0
    agree = 0
    close = 0
    for i in range(la.shape[0]):
        d = np.max(np.abs(la[i] - lb[i])) / max(np.std(la[i]), 1e-12)
        worst = max(worst, d)
        close += int(d <= rel)
        agree += int(np.argmax(la[i]) == np.argmax(lb[i]))
    frac = agree / la.shape[0]
    cfrac = close / la.shape[0]
    cap = rel if cap is None else cap
    print("positions=%d max_rel_diff=%.3g within_tol=%.3f top1_agree=%.3f "
          "(tolerance %.3g on %.2f, max %.3g, top1 %.3f)"
          % (la.shape[0], worst, cfrac, frac, rel, within, cap, top1))
    return cfrac >= within and worst <= cap and frac >= top1


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "compare":
        with open(argv[2]) as f:
            a = json.load(f)
        with open(argv[3]) as f:
            b = json.load(f)
        cap = arg(argv, "--cap", None)
        ok = compare(a, b, float(arg(argv, "--rel", "1e-4")), float(arg(argv, "--top1", "1")),
                     float(arg(argv, "--within", "1")), float(cap) if cap else None)
        return 0 if ok else 1
    if cmd == "write":
        kind = arg(argv, "--kind", "qwen2")
        if kind not in ("qwen2", "llama3", "tied"):
            print("reference: --kind qwen2|llama3|tied", file=sys.stderr)
            return 2
        write_model(argv[2], kind, int(arg(argv, "--version", "3")))
        return 0
    m = Model(argv[2], "--act-q8" in argv)
    if cmd == "encode":
        print(json.dumps(m.encode(argv[3]), separators=(",", ":")))
        return 0
    toks = parse_tokens(arg(argv, "--tokens", ""))
    if not toks:
        print("reference: --tokens is required", file=sys.stderr)
        return 2
    if cmd == "logits":
        lg = m.forward(toks)
        json.dump({"logits": [[float("%.9g" % v) for v in row] for row in lg]}, sys.stdout)
        print()
        return 0
    if cmd == "greedy":
        n = int(arg(argv, "-n", "16"))
        out = []
        for _ in range(n):
            t = int(np.argmax(m.forward(toks + out)[-1]))
            if t == m.eos and "--ignore-eos" not in argv:
                break
            out.append(t)
        print(json.dumps(out, separators=(",", ":")))
        return 0
    print("reference: unknown command %s" % cmd, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
