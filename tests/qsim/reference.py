#!/usr/bin/python3
"""
reference.py -- an independent numpy reference for ciel-qsim.

The gate matrices here are written from their textbook definitions (Qiskit's
qelib1.inc / stdgates.inc conventions), not read from lib/qsim. Each check
writes an OpenQASM file, runs $CIEL_BIN/ciel-qsim on it and compares:
  - final amplitudes (--statevector) within 1e-10 in double and 1e-5 in single,
    global phase included (controlled gates make it observable);
  - sampled counts against the exact outcome distribution with a chi-squared
    test (fixed seeds, so a pass is a pass every time);
  - noisy counts on the real device profiles against a density-matrix
    computation of the transpiled circuit with the same noise figures, read
    from `ciel-qsim --list-profiles --output json`.
Prints "ok N - ..." / "not ok N - ..." and a summary line; exits 1 on any
failure.

Usage: CIEL_BIN=build /usr/bin/python3 tests/qsim/reference.py [--quick]
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from scipy import stats

BIN = os.environ.get("CIEL_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
QSIM = os.path.join(BIN, "ciel-qsim")
QUICK = "--quick" in sys.argv
PVALUE_MIN = 1e-4
TMP = tempfile.mkdtemp(prefix="ciel-ref.")

# ---------------------------------------------------------------------------
# gate matrices: bit j of a row/column index is target j (index = t0 + 2 t1)

I2 = np.eye(2, dtype=complex)
X = np.array([[0, 1], [1, 0]], dtype=complex)
Y = np.array([[0, -1j], [1j, 0]], dtype=complex)
Z = np.array([[1, 0], [0, -1]], dtype=complex)
H = np.array([[1, 1], [1, -1]], dtype=complex) / math.sqrt(2)
PAULI = [I2, X, Y, Z]


def u3(t, p, l):
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -np.exp(1j * l) * s],
                     [np.exp(1j * p) * s, np.exp(1j * (p + l)) * c]], dtype=complex)


def phase(l):
    return np.diag([1, np.exp(1j * l)])


def rot(P, t):
    """exp(-i t/2 P) for P with P^2 = 1."""
    return math.cos(t / 2) * np.eye(P.shape[0]) - 1j * math.sin(t / 2) * P


def two(P0, P1):
    """P0 on target 0, P1 on target 1 (index = t0 + 2 t1)."""
    return np.kron(P1, P0)


SX = np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]]) / 2
SWAP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=complex)

# name: (nparams, ncontrols, function(params) -> matrix on the targets)
GATES = {
    "id": (0, 0, lambda p: I2),
    "u0": (1, 0, lambda p: I2),
    "x": (0, 0, lambda p: X),
    "y": (0, 0, lambda p: Y),
    "z": (0, 0, lambda p: Z),
    "h": (0, 0, lambda p: H),
    "s": (0, 0, lambda p: phase(math.pi / 2)),
    "sdg": (0, 0, lambda p: phase(-math.pi / 2)),
    "t": (0, 0, lambda p: phase(math.pi / 4)),
    "tdg": (0, 0, lambda p: phase(-math.pi / 4)),
    "sx": (0, 0, lambda p: SX),
    "sxdg": (0, 0, lambda p: SX.conj().T),
    "rx": (1, 0, lambda p: rot(X, p[0])),
    "ry": (1, 0, lambda p: rot(Y, p[0])),
    "rz": (1, 0, lambda p: rot(Z, p[0])),
    "p": (1, 0, lambda p: phase(p[0])),
    "u1": (1, 0, lambda p: phase(p[0])),
    "u2": (2, 0, lambda p: u3(math.pi / 2, p[0], p[1])),
    "u3": (3, 0, lambda p: u3(*p)),
    "u": (3, 0, lambda p: u3(*p)),
    "U": (3, 0, lambda p: u3(*p)),
    "r": (2, 0, lambda p: rot(math.cos(p[1]) * X + math.sin(p[1]) * Y, p[0])),
    "prx": (2, 0, lambda p: rot(math.cos(p[1]) * X + math.sin(p[1]) * Y, p[0])),
    "cx": (0, 1, lambda p: X),
    "CX": (0, 1, lambda p: X),
    "cy": (0, 1, lambda p: Y),
    "cz": (0, 1, lambda p: Z),
    "ch": (0, 1, lambda p: H),
    "csx": (0, 1, lambda p: SX),
    "crx": (1, 1, lambda p: rot(X, p[0])),
    "cry": (1, 1, lambda p: rot(Y, p[0])),
    "crz": (1, 1, lambda p: rot(Z, p[0])),
    "cp": (1, 1, lambda p: phase(p[0])),
    "cu1": (1, 1, lambda p: phase(p[0])),
    "cphase": (1, 1, lambda p: phase(p[0])),
    "cu3": (3, 1, lambda p: u3(*p)),
    "cu": (4, 1, lambda p: np.exp(1j * p[3]) * u3(p[0], p[1], p[2])),
    "ccx": (0, 2, lambda p: X),
    "ccz": (0, 2, lambda p: Z),
    "c3x": (0, 3, lambda p: X),
    "c4x": (0, 4, lambda p: X),
    "c3sqrtx": (0, 3, lambda p: SX),
    "swap": (0, 0, lambda p: SWAP),
    "cswap": (0, 1, lambda p: SWAP),
    "rxx": (1, 0, lambda p: rot(two(X, X), p[0])),
    "ryy": (1, 0, lambda p: rot(two(Y, Y), p[0])),
    "rzz": (1, 0, lambda p: rot(two(Z, Z), p[0])),
    "rzx": (1, 0, lambda p: rot(two(Z, X), p[0])),
}

# the gates of Qiskit's qelib1.inc, for random circuits
QELIB1 = ["u3", "u2", "u1", "cx", "id", "u0", "u", "p", "x", "y", "z", "h", "s", "sdg", "t",
          "tdg", "rx", "ry", "rz", "sx", "sxdg", "cz", "cy", "swap", "ch", "ccx", "cswap", "crx",
          "cry", "crz", "cu1", "cp", "cu3", "csx", "cu", "rxx", "rzz", "c3x", "c3sqrtx", "c4x"]


def gate_arity(name):
    npar, nctrl, fn = GATES[name]
    m = fn([0.1] * npar)
    return nctrl + (1 if m.shape[0] == 2 else 2)


def controlled(m, nctrl):
    """Full matrix on (controls..., targets...): bit j of the index is qubit j."""
    dim = m.shape[0] * (1 << nctrl)
    full = np.eye(dim, dtype=complex)
    allc = (1 << nctrl) - 1
    idx = [allc | (t << nctrl) for t in range(m.shape[0])]
    full[np.ix_(idx, idx)] = m
    return full


# ---------------------------------------------------------------------------
# circuits


class Circuit:
    def __init__(self, n, cregs=()):
        self.n = n
        self.cregs = list(cregs)  # [(name, len)]
        self.ops = []  # dicts

    @property
    def ncl(self):
        return sum(l for _, l in self.cregs)

    def creg_off(self, name):
        off = 0
        for rn, rl in self.cregs:
            if rn == name:
                return off, rl
            off += rl
        raise KeyError(name)

    def g(self, name, qubits, params=(), mods=(), cond=None):
        """mods: "inv" / "ctrl" modifiers, outermost first (QASM 3 only)."""
        self.ops.append({"k": "gate", "name": name, "q": list(qubits), "p": list(params),
                         "mods": list(mods), "cond": cond})
        return self

    def measure(self, q, creg, bit, cond=None):
        self.ops.append({"k": "measure", "q": [q], "reg": creg, "bit": bit, "cond": cond})
        return self

    def reset(self, q):
        self.ops.append({"k": "reset", "q": [q], "cond": None})
        return self

    def measure_all(self, creg="c"):
        for q in range(self.n):
            self.measure(q, creg, q)
        return self

    # -- matrices of an op on its qubits (bit j of the index is op["q"][j])
    def op_matrix(self, op):
        npar, nctrl, fn = GATES[op["name"]]
        m = controlled(fn(op["p"]), nctrl)
        for mod in reversed(op["mods"]):  # the innermost modifier first
            m = m.conj().T if mod == "inv" else controlled(m, 1)
        return m

    # -- OpenQASM
    def fmt_params(self, p):
        return "(" + ", ".join(repr(float(v)) for v in p) + ")" if p else ""

    def cond_text(self, cond):
        return "if(%s==%d) " % cond if cond else ""

    def qasm2(self):
        out = ["OPENQASM 2.0;", 'include "qelib1.inc";', "qreg q[%d];" % self.n]
        out += ["creg %s[%d];" % r for r in self.cregs]
        for op in self.ops:
            qs = ", ".join("q[%d]" % q for q in op["q"])
            if op["k"] == "gate":
                assert not op["mods"], "modifiers need QASM 3"
                out.append("%s%s%s %s;" % (self.cond_text(op["cond"]), op["name"],
                                           self.fmt_params(op["p"]), qs))
            elif op["k"] == "measure":
                out.append("%smeasure %s -> %s[%d];" % (self.cond_text(op["cond"]), qs,
                                                        op["reg"], op["bit"]))
            else:
                out.append("reset %s;" % qs)
        return "\n".join(out) + "\n"

    def qasm3(self):
        out = ["OPENQASM 3.0;", 'include "stdgates.inc";']
        out += ["bit[%d] %s;" % (r[1], r[0]) for r in self.cregs]
        out.append("qubit[%d] q;" % self.n)
        for op in self.ops:
            qs = ", ".join("q[%d]" % q for q in op["q"])
            assert not op["cond"]
            if op["k"] == "gate":
                mods = "".join("%s @ " % m for m in op["mods"])
                out.append("%s%s%s %s;" % (mods, op["name"], self.fmt_params(op["p"]), qs))
            elif op["k"] == "measure":
                out.append("%s[%d] = measure %s;" % (op["reg"], op["bit"], qs))
            else:
                out.append("reset %s;" % qs)
        return "\n".join(out) + "\n"


def apply(psi, n, m, qubits):
    """Apply m (bit j of its index = qubits[j]) to the state psi of n qubits."""
    k = len(qubits)
    t = psi.reshape([2] * n)
    # axis a of t is qubit n-1-a; row axes of m.reshape are qubits[k-1] .. qubits[0]
    axes = [n - 1 - q for q in reversed(qubits)]
    mt = m.reshape([2] * (2 * k))
    r = np.tensordot(mt, t, axes=(list(range(k, 2 * k)), axes))
    r = np.moveaxis(r, list(range(k)), axes)
    return r.reshape(-1)


def key_of(v, cregs):
    parts, off = [], 0
    for name, l in cregs:
        parts.append("".join("1" if (v >> (off + b)) & 1 else "0" for b in reversed(range(l))))
        off += l
    return " ".join(reversed(parts))


def statevector(c):
    psi = np.zeros(1 << c.n, dtype=complex)
    psi[0] = 1
    for op in c.ops:
        assert op["k"] == "gate" and not op["cond"]
        m = c.op_matrix(op)
        psi = apply(psi, c.n, m, op["q"])
    return psi


def distribution(c):
    """Exact distribution of the classical register: branches on every
    measurement and reset, follows if() on each branch's own bits."""
    psi = np.zeros(1 << c.n, dtype=complex)
    psi[0] = 1
    branches = [(psi, 0, 1.0)]
    idx = np.arange(1 << c.n)
    for op in c.ops:
        nb = []
        for psi, creg, pr in branches:
            if op["cond"]:
                off, l = c.creg_off(op["cond"][0])
                if ((creg >> off) & ((1 << l) - 1)) != op["cond"][1]:
                    nb.append((psi, creg, pr))
                    continue
            if op["k"] == "gate":
                m = c.op_matrix(op)
                nb.append((apply(psi, c.n, m, op["q"]), creg, pr))
                continue
            q = op["q"][0]
            one = ((idx >> q) & 1).astype(bool)
            for bit in (0, 1):
                sel = one if bit else ~one
                p = float(np.sum(np.abs(psi[sel]) ** 2))
                if p < 1e-15:
                    continue
                new = np.where(sel, psi, 0) / math.sqrt(p)
                ncreg = creg
                if op["k"] == "measure":
                    off, _ = c.creg_off(op["reg"])
                    b = off + op["bit"]
                    ncreg = (creg & ~(1 << b)) | (bit << b)
                elif bit:  # reset: move |1> to |0>
                    new = apply(new, c.n, X, [q])
                nb.append((new, ncreg, pr * p))
        branches = nb
    dist = {}
    for _, creg, pr in branches:
        k = key_of(creg, c.cregs)
        dist[k] = dist.get(k, 0) + pr
    return dist


# ---------------------------------------------------------------------------
# running ciel-qsim

seq = 0


def run_qsim(text, *args, ext="qasm"):
    global seq
    seq += 1
    path = os.path.join(TMP, "c%d.%s" % (seq, ext))
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([QSIM, *args, path], capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def run_json(text, *args):
    rc, out, err = run_qsim(text, "--output", "json", *args)
    if rc != 0:
        raise RuntimeError("ciel-qsim exit %d: %s %s" % (rc, err.strip()[-400:], out[-400:]))
    return json.loads(out)


def qsim_statevector(text, precision="double"):
    j = run_json(text, "--statevector", "--precision", precision, "--threads", "2")
    a = np.array(j["amplitudes"], dtype=float)
    return j["qubits"], a[:, 0] + 1j * a[:, 1]


def chisq(counts, probs, shots):
    """p-value of counts against probs; bins expected under 5 are merged."""
    keys = set(counts) | set(probs)
    for k in keys:
        if probs.get(k, 0) < 1e-12 and counts.get(k, 0) > 0:
            return 0.0, "outcome %r has probability %g but was seen %d times" % (
                k, probs.get(k, 0), counts[k])
    obs, exp, ro, re_ = [], [], 0.0, 0.0
    for k in sorted(keys):
        e = probs.get(k, 0) * shots
        if e < 5:
            ro += counts.get(k, 0)
            re_ += e
        else:
            obs.append(counts.get(k, 0))
            exp.append(e)
    if re_ > 0:
        obs.append(ro)
        exp.append(re_)
    if len(obs) < 2:
        return 1.0, "one bin"
    obs, exp = np.array(obs, float), np.array(exp, float)
    stat = float(np.sum((obs - exp) ** 2 / exp))
    p = float(stats.chi2.sf(stat, len(obs) - 1))
    return p, "chi2=%.1f dof=%d p=%.3g" % (stat, len(obs) - 1, p)


# ---------------------------------------------------------------------------
# reporting

n_ok = n_fail = 0


def report(good, desc, detail=""):
    global n_ok, n_fail
    if good:
        n_ok += 1
        print("ok %d - %s%s" % (n_ok + n_fail, desc, " (%s)" % detail if detail else ""))
    else:
        n_fail += 1
        print("not ok %d - %s%s" % (n_ok + n_fail, desc, ": %s" % detail if detail else ""))
    sys.stdout.flush()


def check(desc, fn):
    try:
        good, detail = fn()
    except Exception as e:  # a crash of ciel-qsim or bad JSON is a failure, not an abort
        good, detail = False, "%s: %s" % (type(e).__name__, e)
    report(good, desc, detail)


def check_amplitudes(desc, c, text=None, precision="double"):
    def fn():
        want = statevector(c)
        n, got = qsim_statevector(text or c.qasm2(), precision)
        if n != c.n or len(got) != len(want):
            return False, "qubits %d, want %d" % (n, c.n)
        tol = 1e-10 if precision == "double" else 1e-5
        d = float(np.max(np.abs(got - want)))
        return d <= tol, "max |diff| %.2g, tolerance %g" % (d, tol)

    check(desc, fn)


def check_counts(desc, c, shots=20000, seed=1, text=None, extra=()):
    def fn():
        j = run_json(text or c.qasm2(), "--shots", str(shots), "--seed", str(seed), *extra)
        if sum(j["counts"].values()) != shots or j["shots_kept"] != shots:
            return False, "counts sum %d, kept %d, want %d" % (sum(j["counts"].values()),
                                                               j["shots_kept"], shots)
        p, why = chisq(j["counts"], distribution(c), shots)
        return p > PVALUE_MIN, "%s, %s" % (j["method"], why)

    check(desc, fn)


# ---------------------------------------------------------------------------
# circuits

rng = np.random.default_rng(20240605)


def rand_angle():
    return float(rng.uniform(-2 * math.pi, 2 * math.pi))


def prepare(c):
    """A non-trivial input: random u3 on every qubit, a few entangling gates."""
    for q in range(c.n):
        c.g("u3", [q], [rand_angle(), rand_angle(), rand_angle()])
    for q in range(c.n - 1):
        c.g("cx", [q, q + 1])
    for q in range(c.n):
        c.g("u3", [q], [rand_angle(), rand_angle(), rand_angle()])
    return c


def qft(c, n):
    for j in reversed(range(n)):
        c.g("h", [j])
        for k in reversed(range(j)):
            c.g("cp", [k, j], [math.pi / (1 << (j - k))])
    for j in range(n // 2):
        c.g("swap", [j, n - 1 - j])
    return c


def ghz(n):
    c = Circuit(n, [("c", n)])
    c.g("h", [0])
    for q in range(n - 1):
        c.g("cx", [q, q + 1])
    return c


def grover(n, marked):
    """n = 3 or 4; one iteration count round(pi/4 sqrt(N))."""
    c = Circuit(n, [("c", n)])
    for q in range(n):
        c.g("h", [q])

    def mcz():
        c.g("h", [n - 1])
        c.g("ccx" if n == 3 else "c3x", list(range(n)))
        c.g("h", [n - 1])

    for _ in range(int(round(math.pi / 4 * math.sqrt(1 << n)))):
        for q in range(n):
            if not (marked >> q) & 1:
                c.g("x", [q])
        mcz()
        for q in range(n):
            if not (marked >> q) & 1:
                c.g("x", [q])
        for q in range(n):
            c.g("h", [q])
            c.g("x", [q])
        mcz()
        for q in range(n):
            c.g("x", [q])
            c.g("h", [q])
    return c


def random_circuit(n, ngates, names=QELIB1):
    c = Circuit(n, [("c", n)])
    usable = [g for g in names if gate_arity(g) <= n]
    for _ in range(ngates):
        name = usable[rng.integers(len(usable))]
        qs = [int(q) for q in rng.permutation(n)[:gate_arity(name)]]
        c.g(name, qs, [rand_angle() for _ in range(GATES[name][0])])
    return c


def teleport():
    c = Circuit(3, [("m0", 1), ("m1", 1), ("out", 1)])
    c.g("u3", [0], [1.1, 0.7, -0.4])
    c.g("h", [1]).g("cx", [1, 2])
    c.g("cx", [0, 1]).g("h", [0])
    c.measure(0, "m0", 0).measure(1, "m1", 0)
    c.g("x", [2], cond=("m1", 1))
    c.g("z", [2], cond=("m0", 1))
    c.measure(2, "out", 0)
    return c


def qasm3_circuit(n):
    """Gates with ctrl@ / inv@ modifiers, as Qiskit emits for controlled gates."""
    c = Circuit(n, [("c", n)])
    prepare(c)
    one = ["h", "s", "t", "sx", "x", "y", "z", "sdg", "tdg"]
    par = ["rx", "ry", "rz", "p", "u3"]
    for _ in range(8 * n):
        qs = [int(q) for q in rng.permutation(n)]
        r = rng.integers(4)
        if r == 0:
            c.g(one[rng.integers(len(one))], qs[:2], mods=["ctrl"])
        elif r == 1:
            name = par[rng.integers(len(par))]
            c.g(name, qs[:2], [rand_angle() for _ in range(GATES[name][0])], mods=["ctrl"])
        elif r == 2:
            name = par[rng.integers(len(par))]
            c.g(name, qs[:1], [rand_angle() for _ in range(GATES[name][0])], mods=["inv"])
        elif n >= 3:
            c.g(one[rng.integers(len(one))], qs[:3], mods=["ctrl", "ctrl"])
        else:
            c.g("sx", qs[:1], mods=["inv"])
    c.g("cx", [0, 1], mods=["inv"])
    c.g("s", [1, 0], mods=["ctrl", "inv"])
    return c


# ---------------------------------------------------------------------------
# self-checks: the reference must be right before it judges anything


def self_checks():
    def unitary():
        for name, (npar, nctrl, fn) in GATES.items():
            m = controlled(fn([rand_angle() for _ in range(npar)]), nctrl)
            if not np.allclose(m @ m.conj().T, np.eye(m.shape[0]), atol=1e-12):
                return False, name
        return True, "%d gates" % len(GATES)

    def qft_is_dft():
        for n in (3, 5):
            c = prepare(Circuit(n))
            psi = statevector(c)
            qft(c, n)
            want = np.fft.ifft(psi) * math.sqrt(1 << n)  # |x> -> sum_k e^{2 pi i xk/N} |k>
            if not np.allclose(statevector(c), want, atol=1e-12):
                return False, "n=%d" % n
        return True, ""

    def decompositions():
        # qelib1.inc's definitions, built in the reference from simpler gates
        t, p, l = 0.3, -1.2, 2.1
        a = Circuit(2).g("crz", [0, 1], [t])
        b = Circuit(2).g("u1", [1], [t / 2]).g("cx", [0, 1]).g("u1", [1], [-t / 2]).g("cx", [0, 1])
        if not np.allclose(unitary_of(a), unitary_of(b), atol=1e-12):
            return False, "crz"
        a = Circuit(2).g("cu3", [0, 1], [t, p, l])
        b = (Circuit(2).g("u1", [0], [(l + p) / 2]).g("u1", [1], [(l - p) / 2]).g("cx", [0, 1])
             .g("u3", [1], [-t / 2, 0, -(p + l) / 2]).g("cx", [0, 1]).g("u3", [1], [t / 2, p, 0]))
        if not np.allclose(unitary_of(a), unitary_of(b), atol=1e-12):
            return False, "cu3"
        a = Circuit(2).g("rzz", [0, 1], [t])
        b = Circuit(2).g("cx", [0, 1]).g("u1", [1], [t]).g("cx", [0, 1])
        ua, ub = unitary_of(a), unitary_of(b)
        if not np.allclose(ua * np.exp(1j * t / 2), ub, atol=1e-12):  # equal up to phase
            return False, "rzz"
        a = Circuit(3).g("ccx", [0, 1, 2])
        u = unitary_of(a)
        if not (abs(u[7, 3]) == 1 and abs(u[3, 7]) == 1 and u[5, 5] == 1):
            return False, "ccx"
        a = Circuit(2).g("cx", [0, 1])
        if abs(unitary_of(a)[3, 1]) != 1:  # |q1 q0> = |01> -> |11>
            return False, "cx orientation"
        return True, ""

    check("reference: every gate matrix is unitary", unitary)
    check("reference: its QFT equals the DFT (numpy fft)", qft_is_dft)
    check("reference: crz, cu3, rzz, ccx, cx agree with qelib1.inc", decompositions)


def unitary_of(c):
    cols = []
    for i in range(1 << c.n):
        psi = np.zeros(1 << c.n, dtype=complex)
        psi[i] = 1
        for op in c.ops:
            m = c.op_matrix(op)
            psi = apply(psi, c.n, m, op["q"])
        cols.append(psi)
    return np.array(cols).T


# ---------------------------------------------------------------------------
# noise: density matrices with the profile's own figures


def load_profiles():
    rc, out, err = run_qsim("", "--list-profiles", "--output", "json")
    # --list-profiles takes no file; run_qsim passes one, which it ignores
    if rc != 0:
        raise RuntimeError("--list-profiles: exit %d %s" % (rc, err))
    return {p["name"]: p for p in json.loads(out)["items"]}


def noise_of(profile):
    """The runner's noise figures from the profile JSON (see qdev.h)."""
    n = profile.get("noise") or {}
    g = lambda k: float(n.get(k, 0) or 0)
    nz = {k: g(k) for k in ("p1", "p2", "t1_us", "t2_us", "readout_p01", "readout_p10",
                            "prep_err", "herald_p2", "distinguishability")}
    nz["t1q_ns"] = g("gate_1q_ns")
    nz["t2q_ns"] = g("gate_2q_ns")
    return nz


def dm_apply(rho, n, m, qubits):
    rho = np.array([apply(col, n, m, qubits) for col in rho.T]).T
    rho = np.array([apply(row, n, m.conj(), qubits) for row in rho])
    return rho


def dm_pauli_channel(rho, n, qubits, p):
    """With probability p one of the 4^k - 1 non-identity Paulis, each equally."""
    if p <= 0:
        return rho
    k = len(qubits)
    acc = (1 - p) * rho
    total = 4 ** k - 1
    for idx in range(1, 4 ** k):
        m = np.eye(1)
        for j in reversed(range(k)):  # bit j of the index is qubits[j]
            m = np.kron(m, PAULI[(idx >> (2 * j)) & 3])
        acc = acc + p / total * dm_apply(rho, n, m, qubits)
    return acc


def dm_amp_damp(rho, n, q, gamma):
    k0 = np.array([[1, 0], [0, math.sqrt(1 - gamma)]], dtype=complex)
    k1 = np.array([[0, math.sqrt(gamma)], [0, 0]], dtype=complex)
    return dm_apply(rho, n, k0, [q]) + dm_apply(rho, n, k1, [q])


def dm_noisy_distribution(ops, n, ncl, nz):
    """ops: (name, params, qubits) gates then ('measure', q, clbit). Terminal
    measurements only. Noise after each gate: depolarizing, then damping and
    dephasing on each of its qubits; readout confusion on each recorded bit."""
    rho = np.zeros((1 << n, 1 << n), dtype=complex)
    rho[0, 0] = 1
    for q in range(n):  # preparation error
        if nz["prep_err"] > 0:
            rho = (1 - nz["prep_err"]) * rho + nz["prep_err"] * dm_apply(rho, n, X, [q])
    meas = []
    for op in ops:
        if op[0] == "measure":
            meas.append((op[1], op[2]))
            continue
        name, params, qs = op
        npar, nctrl, fn = GATES[name]
        m = controlled(fn(params), nctrl)
        rho = dm_apply(rho, n, m, qs)
        if len(qs) == 2:
            rho = dm_pauli_channel(rho, n, qs, nz["p2"] + nz["distinguishability"])
            t_ns = nz["t2q_ns"]
        else:
            for q in qs:
                rho = dm_pauli_channel(rho, n, [q], nz["p1"])
            t_ns = nz["t1q_ns"]
        t_us = t_ns * 1e-3
        for q in qs:
            if t_us <= 0:
                continue
            if nz["t1_us"] > 0:
                rho = dm_amp_damp(rho, n, q, 1 - math.exp(-t_us / nz["t1_us"]))
            if nz["t2_us"] > 0:
                inv = 1 / nz["t2_us"] - (1 / (2 * nz["t1_us"]) if nz["t1_us"] > 0 else 0)
                if inv > 0:
                    pz = (1 - math.exp(-t_us * inv)) / 2
                    rho = (1 - pz) * rho + pz * dm_apply(rho, n, Z, [q])
    probs = np.real(np.diag(rho))
    dist = {}
    for idx, p in enumerate(probs):
        if p < 1e-15:
            continue
        # each measurement's bit, then its readout confusion
        outs = [(0, p)]
        for q, b in meas:
            bit = (idx >> q) & 1
            flip = nz["readout_p01"] if bit == 0 else nz["readout_p10"]
            outs = [(v | (bit << b), w * (1 - flip)) for v, w in outs] + \
                   [(v | ((1 - bit) << b), w * flip) for v, w in outs]
        for v, w in outs:
            dist[v] = dist.get(v, 0) + w
    return dist


QASM_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(([^)]*)\))?\s+(.*?);\s*$")
QUBIT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]")


def parse_transpiled(text):
    """The transpiled QASM that ciel-qsim emits: registers, named gates,
    measure, barrier. Returns (ops over compacted qubits, nq, ncl)."""
    qregs, cregs, ops, nq, ncl = {}, {}, [], 0, 0
    for raw in text.splitlines():
        line = raw.split("//")[0].strip()
        if not line or line.startswith(("OPENQASM", "include")):
            continue
        m = re.match(r"^(qreg|creg)\s+(\w+)\[(\d+)\];$", line)
        if m:
            if m.group(1) == "qreg":
                qregs[m.group(2)] = nq
                nq += int(m.group(3))
            else:
                cregs[m.group(2)] = ncl
                ncl += int(m.group(3))
            continue
        m = re.match(r"^measure\s+(\w+)\[(\d+)\]\s*->\s*(\w+)\[(\d+)\];$", line)
        if m:
            ops.append(("measure", qregs[m.group(1)] + int(m.group(2)),
                        cregs[m.group(3)] + int(m.group(4))))
            continue
        m = QASM_LINE.match(line)
        if not m:
            raise ValueError("cannot read transpiled line %r" % raw)
        name, params, args = m.group(1), m.group(2), m.group(3)
        if name == "barrier":
            continue
        if name not in GATES:
            raise ValueError("unknown gate in transpiled output %r" % raw)
        p = [float(eval(x, {"__builtins__": {}}, {"pi": math.pi})) for x in params.split(",")] \
            if params else []
        qs = [qregs[r] + int(i) for r, i in QUBIT.findall(args)]
        ops.append((name, p, qs))
    used = sorted({q for op in ops for q in (op[2] if op[0] != "measure" else [op[1]])})
    remap = {q: i for i, q in enumerate(used)}
    out = []
    for op in ops:
        if op[0] == "measure":
            out.append(("measure", remap[op[1]], op[2]))
        else:
            out.append((op[0], op[1], [remap[q] for q in op[2]]))
    return out, len(used), ncl


def doubled(nz):
    """The same model with twice the noise: the counts must reject it."""
    d = dict(nz)
    for k in ("p1", "p2", "readout_p01", "readout_p10", "prep_err", "distinguishability"):
        d[k] = min(1.0, 2 * d[k])
    for k in ("t1_us", "t2_us"):
        d[k] = d[k] / 2
    return d


def check_noise(desc, c, profile, profiles, shots=20000, seed=7, expect_kept=None,
                strict=True):
    def fn():
        text = c.qasm2()
        nz = noise_of(profiles[profile])
        rc, out, err = run_qsim(text, "--emit-transpiled", "--profile", profile)
        if rc != 0:
            return False, "emit-transpiled exit %d: %s" % (rc, err.strip())
        ops, n, ncl = parse_transpiled(out)
        dist = dm_noisy_distribution(ops, n, ncl, nz)
        probs = {key_of(v, c.cregs): p for v, p in dist.items()}
        j = run_json(text, "--shots", str(shots), "--seed", str(seed), "--profile", profile)
        kept = j["shots_kept"]
        if sum(j["counts"].values()) != kept:
            return False, "counts sum %d != kept %d" % (sum(j["counts"].values()), kept)
        detail = ""
        if expect_kept is not None:
            pk = expect_kept(ops, nz)
            sd = math.sqrt(shots * pk * (1 - pk)) if 0 < pk < 1 else 0
            if abs(kept - shots * pk) > 5 * sd + 1:
                return False, "kept %d, want %.0f +- %.0f" % (kept, shots * pk, 5 * sd)
            detail = "kept %d of %d (want %.0f), " % (kept, shots, shots * pk)
        p, why = chisq(j["counts"], probs, kept)
        # and the noise shows: outcomes the ideal circuit never gives, or
        # counts the ideal distribution rejects
        ideal = distribution(c)
        p_ideal, _ = chisq(j["counts"], ideal, kept)
        good = p > PVALUE_MIN
        detail += "%s, %d native ops, %s" % (j["method"], len(ops), why)
        if strict:
            p_double, _ = chisq(j["counts"], {key_of(v, c.cregs): q for v, q in
                                              dm_noisy_distribution(ops, n, ncl,
                                                                    doubled(nz)).items()}, kept)
            good = good and p_ideal < PVALUE_MIN and p_double < PVALUE_MIN
            detail += ", rejects ideal (p=%.2g) and doubled noise (p=%.2g)" % (p_ideal, p_double)
        return good, detail

    check(desc, fn)


# ---------------------------------------------------------------------------


def main():
    if not os.access(QSIM, os.X_OK):
        print("not ok 1 - %s is not built" % QSIM)
        return 1
    self_checks()

    # amplitudes: QFT, GHZ, Grover, random circuits, QASM 3
    for n in range(3, 11 if not QUICK else 7):
        c = qft(prepare(Circuit(n)), n)
        check_amplitudes("QFT-%d on a random input: amplitudes" % n, c)
    c = qft(prepare(Circuit(8)), 8)
    check_amplitudes("QFT-8 in single precision: amplitudes within 1e-5", c, precision="single")
    for n in (3, 7):
        check_amplitudes("GHZ-%d: amplitudes" % n, ghz(n))
    for n, marked in ((3, 5), (4, 11)):
        check_amplitudes("Grover-%d marking %d: amplitudes" % (n, marked), grover(n, marked))
    sizes = [4, 5, 6, 8, 10] if not QUICK else [4, 6]
    for i, n in enumerate(sizes):
        c = random_circuit(n, 20 * n)
        check_amplitudes("random circuit %d (%d qubits, %d qelib1 gates): amplitudes" %
                         (i, n, len(c.ops)), c)
        if i == 1:
            check_amplitudes("random circuit %d in single precision" % i, c, precision="single")
    for name in sorted(GATES):
        if name in ("r", "prx", "ccz", "ryy", "rzx", "U", "CX", "cphase", "phase"):
            continue  # not in qelib1.inc; covered through QASM 3 / profiles
        n = gate_arity(name) + 1
        c = prepare(Circuit(n))
        c.g(name, list(range(gate_arity(name)))[::-1], [rand_angle() for _ in
                                                           range(GATES[name][0])])
        check_amplitudes("qelib1 %s on a random state" % name, c)
    for n in (3, 5):
        c = qasm3_circuit(n)
        check_amplitudes("QASM 3 with ctrl@/inv@ (%d qubits): amplitudes" % n, c, c.qasm3())

    # sampled counts against exact probabilities
    for n in (3, 6):
        c = qft(prepare(Circuit(n, [("c", n)])), n).measure_all()
        check_counts("QFT-%d counts: chi-squared" % n, c)
    check_counts("GHZ-5 counts: chi-squared", ghz(5).measure_all())
    check_counts("Grover-4 counts: chi-squared", grover(4, 11).measure_all())
    for i, n in enumerate((4, 7)):
        c = random_circuit(n, 15 * n).measure_all()
        check_counts("random circuit %d counts: chi-squared" % i, c, seed=100 + i)
    c = random_circuit(5, 60)
    c.cregs = [("a", 2), ("b", 3)]
    for q in range(5):
        c.measure(q, "a" if q < 2 else "b", q if q < 2 else q - 2)
    check_counts("two cregs (key 'b a'): chi-squared", c, seed=5)
    c = Circuit(4, [("c", 4)])
    prepare(c)
    for q in range(4):
        c.measure(q, "c", q)
    c.qasm3_text = c.qasm3()
    check_counts("QASM 3 counts: chi-squared", c, text=c.qasm3(), seed=9)
    check_counts("teleportation (mid-circuit measure + if): chi-squared", teleport(), seed=3)
    c = Circuit(2, [("c", 2)])
    c.g("h", [0]).g("cx", [0, 1]).measure(0, "c", 0).reset(0).g("h", [0]).measure(0, "c", 1)
    check_counts("measure, reset and reuse: chi-squared", c, seed=4)
    check_counts("single precision counts: chi-squared", ghz(4).measure_all(), seed=6,
                 extra=("--precision", "single"))

    # noise against density matrices, with the profiles' own figures
    try:
        profiles = load_profiles()
    except Exception as e:
        report(False, "ciel-qsim --list-profiles --output json", str(e))
        profiles = {}
    bell = Circuit(2, [("c", 2)]).g("h", [0]).g("cx", [0, 1]).measure_all()
    small = Circuit(3, [("c", 3)]).g("ry", [0], [0.9]).g("cx", [0, 1]).g("rx", [2], [2.2]) \
        .g("cz", [1, 2]).g("h", [1]).measure_all()
    echo = Circuit(3, [("c", 3)]).g("h", [0]).g("cx", [0, 1]).g("cx", [1, 2])
    for _ in range(4):
        echo.g("cx", [1, 2]).g("cx", [0, 1]).g("cx", [0, 1]).g("cx", [1, 2])
    echo.measure_all()
    herald = lambda ops, nz: nz["herald_p2"] ** sum(1 for o in ops if o[0] != "measure"
                                                   and len(o[2]) == 2) if nz["herald_p2"] > 0 else 1
    shots = 20000 if not QUICK else 8000
    for prof in ("superconducting", "neutral-atom", "photonic"):
        if prof not in profiles:
            report(False, "profile %s is listed" % prof, "have %s" % sorted(profiles))
            continue
        for name, c in (("Bell", bell), ("3-qubit", small), ("GHZ + 16 cx echo", echo)):
            if prof != "photonic":
                check_noise("%s on %s: counts match the density matrix" % (name, prof), c,
                            prof, profiles, shots=shots)
            elif c is not echo:
                # (2/27)^n2q of the shots are kept: ask for more, expect less contrast
                check_noise("%s on %s: counts match the density matrix" % (name, prof), c,
                            prof, profiles, shots=10 * shots, expect_kept=herald,
                            strict=c is bell)

    print("# %d passed, %d failed" % (n_ok, n_fail))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
