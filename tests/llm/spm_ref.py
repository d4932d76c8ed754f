#!/usr/bin/python3
"""Independent SentencePiece-style (llama.cpp "llm_tokenizer_spm") encoder.

Reads the vocabulary straight from a GGUF file (versions 1-3, own reader,
no ciel code) and encodes texts the way llama.cpp does: spaces become U+2581,
one U+2581 is prepended (add_space_prefix), adjacent symbols are merged
highest score first (ties: leftmost), and whatever is left that is not a
piece goes out as <0xNN> byte tokens.

Usage: spm_ref.py MODEL.gguf TEXTS.json  ->  JSON list of id lists on stdout.
TEXTS.json is a list of {"text": ...} or {"b64": ...} entries (see tok-texts.json).
"""
import base64
import heapq
import json
import struct
import sys


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.d, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v[0]


SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
          12: "d"}


def read_kv(path):
    r = Reader(open(path, "rb").read())
    if r.take("I") != 0x46554747:
        raise SystemExit("not a GGUF file")
    ver = r.take("I")
    cnt = "I" if ver == 1 else "Q"
    r.take(cnt)  # tensors
    n_kv = r.take(cnt)

    def string():
        n = r.take(cnt)
        s = r.d[r.p:r.p + n]
        r.p += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et = r.take("I")
            n = r.take(cnt)
            return [value(et) for _ in range(n)]
        return r.take(SCALAR[t])

    kv = {}
    for _ in range(n_kv):
        k = string().decode()
        kv[k] = value(r.take("I"))
    return kv


def utf8_len(b):
    return [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4][b >> 4]


def encode(vocab, scores, text, add_space_prefix=True):
    if not text:
        return []
    if add_space_prefix:
        text = b" " + text
    text = text.replace(b" ", "\u2581".encode())
    # symbols: [start, length]; a linked list through prev/next
    syms, i = [], 0
    while i < len(text):
        n = min(utf8_len(text[i]), len(text) - i)
        syms.append([i, n])
        i += n
    prev = list(range(-1, len(syms) - 1))
    nxt = list(range(1, len(syms) + 1))
    nxt[-1] = -1
    heap = []

    def add(left, right):
        if left < 0 or right < 0:
            return
        s = text[syms[left][0]:syms[right][0] + syms[right][1]]
        tid = vocab.get(s)
        if tid is None:
            return
        heapq.heappush(heap, (-scores[tid], left, len(s)))

    for k in range(1, len(syms)):
        add(k - 1, k)
    while heap:
        _, left, size = heapq.heappop(heap)
        right = nxt[left]
        if right < 0 or syms[left][1] == 0 or syms[right][1] == 0:
            continue
        if syms[left][1] + syms[right][1] != size:
            continue
        syms[left][1] += syms[right][1]
        syms[right][1] = 0
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        add(prev[left], left)
        add(left, nxt[left])
    out, k = [], 0
    while k != -1:
        s = text[syms[k][0]:syms[k][0] + syms[k][1]]
        if s in vocab:
            out.append(vocab[s])
        else:
            for b in s:
                out.append(vocab[("<0x%02X>" % b).encode()])
        k = nxt[k]
    return out


def main():
    kv = read_kv(sys.argv[1])
    toks = kv["tokenizer.ggml.tokens"]
    scores = kv.get("tokenizer.ggml.scores", [0.0] * len(toks))
    vocab = {}
    for i, t in enumerate(toks):
        vocab.setdefault(t, i)  # first id wins, as tok.c does
    asp = kv.get("tokenizer.ggml.add_space_prefix", True)
    texts = json.load(open(sys.argv[2]))
    res = []
    for e in texts:
        t = base64.b64decode(e["b64"]) if "b64" in e else e["text"].encode()
        res.append(encode(vocab, scores, t, asp))
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
