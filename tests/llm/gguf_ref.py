"""gguf_ref — an independent GGUF reader for the numpy reference.

Written from the GGUF specification, sharing no code with lib/llm/gguf.c, so
that the C engine is checked against something that could not share its bugs.
Versions 1 (u32 counts and dimensions), 2 and 3 (u64), little-endian.
Dequantises F32, F16, BF16, Q8_0 and Q4_0 to float64.
"""
import struct

import numpy as np

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {
    U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
    F32: "<f", BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d",
}

# tensor types (ggml numbering)
T_F32, T_F16, T_Q4_0, T_Q8_0, T_BF16 = 0, 1, 2, 8, 30
TYPE_NAMES = {T_F32: "f32", T_F16: "f16", T_Q4_0: "q4_0", T_Q8_0: "q8_0", T_BF16: "bf16"}


class Reader:
    def __init__(self, buf):
        self.b = buf
        self.p = 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v


class GGUF:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        r = Reader(self.buf)
        if self.buf[:4] != b"GGUF":
            raise ValueError("not a GGUF file")
        r.p = 4
        self.version = r.take("<I")
        if self.version not in (1, 2, 3):
            raise ValueError("unsupported GGUF version %d" % self.version)
        cnt = "<I" if self.version == 1 else "<Q"
        n_tensors = r.take(cnt)
        n_kv = r.take(cnt)

        def string():
            n = r.take(cnt)
            s = self.buf[r.p:r.p + n]
            r.p += n
            return s.decode("utf-8", "replace")

        def value(t):
            if t == STRING:
                return string()
            if t == ARRAY:
                et = r.take("<I")
                n = r.take(cnt)
                return [value(et) for _ in range(n)]
            return r.take(_SCALAR[t])

        self.kv = {}
        for _ in range(n_kv):
            k = string()
            t = r.take("<I")
            self.kv[k] = value(t)
        self.infos = {}
        for _ in range(n_tensors):
            name = string()
            nd = r.take("<I")
            ne = [r.take(cnt) for _ in range(nd)]
            t = r.take("<I")
            off = r.take("<Q")
            self.infos[name] = (ne, t, off)
        align = int(self.kv.get("general.alignment", 32))
        self.data_start = (r.p + align - 1) // align * align

    def has(self, name):
        return name in self.infos

    def ttype(self, name):
        return self.infos[name][1]

    def tensor(self, name):
        """float64 array, numpy shape reversed from GGUF ne (ne[0] last)."""
        ne, t, off = self.infos[name]
        n = 1
        for d in ne:
            n *= d
        start = self.data_start + off
        if t == T_F32:
            a = np.frombuffer(self.buf, "<f4", n, start).astype(np.float64)
        elif t == T_F16:
            a = np.frombuffer(self.buf, "<f2", n, start).astype(np.float64)
        elif t == T_BF16:
            h = np.frombuffer(self.buf, "<u2", n, start).astype(np.uint32) << 16
            a = h.view(np.float32).astype(np.float64)
        elif t == T_Q8_0:
            nb = n // 32
            blk = np.frombuffer(self.buf, np.uint8, nb * 34, start).reshape(nb, 34)
            d = blk[:, :2].copy().view("<f2").astype(np.float64)
            q = blk[:, 2:].copy().view(np.int8).astype(np.float64)
            a = (q * d).reshape(-1)
        elif t == T_Q4_0:
            nb = n // 32
            blk = np.frombuffer(self.buf, np.uint8, nb * 18, start).reshape(nb, 18)
            d = blk[:, :2].copy().view("<f2").astype(np.float64)
            qs = blk[:, 2:]
            lo = (qs & 0x0F).astype(np.float64) - 8
            hi = (qs >> 4).astype(np.float64) - 8
            a = (np.concatenate([lo, hi], axis=1) * d).reshape(-1)
        else:
            raise ValueError("tensor %s: type %d not supported by the reference" % (name, t))
        return a.reshape(list(reversed(ne)))


def write(path, kv, tensors, version=3, align=32):
    """Write a GGUF: kv maps key -> (vtype, value); tensors name -> (type, float array,
    numpy shape as reversed ne). Only F32 and F16 data: what the tests need."""
    cnt = "<I" if version == 1 else "<Q"
    out = bytearray(b"GGUF")
    out += struct.pack("<I", version)
    out += struct.pack(cnt, len(tensors)) + struct.pack(cnt, len(kv))

    def string(s):
        b = s.encode()
        return struct.pack(cnt, len(b)) + b

    def value(t, v):
        if t == STRING:
            return string(v)
        if t == ARRAY:
            et, items = v
            return struct.pack("<I", et) + struct.pack(cnt, len(items)) + b"".join(
                value(et, x) for x in items)
        return struct.pack(_SCALAR[t], v)

    for k, (t, v) in kv.items():
        out += string(k) + struct.pack("<I", t) + value(t, v)
    blobs, off = [], 0
    for name, (t, a) in tensors.items():
        ne = list(reversed(a.shape))
        out += string(name) + struct.pack("<I", len(ne))
        out += b"".join(struct.pack(cnt, d) for d in ne)
        out += struct.pack("<I", t) + struct.pack("<Q", off)
        data = a.astype("<f4" if t == T_F32 else "<f2").tobytes()
        blobs.append(data)
        off += (len(data) + align - 1) // align * align
    out += b"\0" * ((-len(out)) % align)
    for data in blobs:
        out += data + b"\0" * ((-len(data)) % align)
    with open(path, "wb") as f:
        f.write(out)
