#!/usr/bin/env bash
# ciel-qsim as a user and the control plane's agent run it: the numpy
# reference (amplitudes, chi-squared counts, noise against density matrices),
# then the CLI's contract: --help, usage errors (exit 2), malformed QASM
# (exit 1, "line L, column C"), noise that shows on a device profile and not
# on ideal, JSON that jq reads, and the same counts for the same seed.
. "$(dirname "$0")/lib.sh"

QS=$CIEL_BIN/ciel-qsim
qs() { "$QS" "$@"; }

cat >"$T/bell.qasm" <<'EOF'
OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0], q[1];
measure q -> c;
EOF
printf 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0]\ncx q[0], q[1];\n' >"$T/bad.qasm"
printf 'OPENQASM 2.0;\nqreg q[1];\ncreg c[1];\nfoo q[0];\nmeasure q -> c;\n' >"$T/unknown.qasm"
printf 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\n' >"$T/nomeasure.qasm"

# the reference first: it is the correctness test
if /usr/bin/python3 -c 'import numpy, scipy' 2>/dev/null; then
	CIEL_BIN=$CIEL_BIN /usr/bin/python3 "$CIEL_SRC/tests/qsim/reference.py" >"$T/ref.out" 2>&1
	rc=$?
	grep -E '^(not )?ok ' "$T/ref.out" | grep '^not ok' | sed 's/^/#   /'
	check "numpy reference: $(tail -1 "$T/ref.out" | sed 's/^# //')" test "$rc" -eq 0
else
	not_ok "numpy reference: /usr/bin/python3 lacks numpy or scipy"
fi

expect_exit 0 "--help exits 0" qs --help
check "--help shows the usage" grep -q "Usage: ciel-qsim" "$T/out"
expect_exit 2 "an unknown flag exits 2" qs --bogus "$T/bell.qasm"
expect_exit 2 "a bad --shots exits 2" qs --shots -3 "$T/bell.qasm"
check "the message names the flag" grep -q -- "--shots" "$T/err"
expect_exit 2 "a bad --precision exits 2" qs --precision half "$T/bell.qasm"
expect_exit 2 "a bad --max-memory exits 2" qs --max-memory 4X "$T/bell.qasm"
expect_exit 2 "no file exits 2" qs --shots 10
expect_exit 2 "an unknown profile exits 2" qs --profile nosuch "$T/bell.qasm"
check "the message lists the profiles" grep -q superconducting "$T/err"
expect_exit 1 "a missing file exits 1" qs "$T/nosuch.qasm"

expect_exit 1 "malformed QASM exits 1" qs "$T/bad.qasm"
check "the error gives line and column" grep -Eq "line [0-9]+, column [0-9]+" "$T/err"
expect_exit 1 "an unknown gate exits 1" qs "$T/unknown.qasm"
check "the error names line 4" grep -Eq "line 4, column [0-9]+" "$T/err"
expect_exit 1 "malformed QASM in json mode exits 1" qs --output json "$T/bad.qasm"
check "json error on stdout with code, line/column and field" \
	bash -c "jq -e '.error.code == \"invalid_argument\" and .error.field == \"qasm\" and
		(.error.message | test(\"line [0-9]+, column [0-9]+\"))' '$T/out'"
expect_exit 1 "a circuit that measures nothing exits 1" qs "$T/nomeasure.qasm"
check "it says to add measure" grep -q "measures nothing" "$T/err"

expect_exit 0 "bell on ideal" qs --output json --shots 4000 --seed 7 "$T/bell.qasm"
check "ideal json parses with jq and has every field" \
	jq -e '.shots == 4000 and .shots_kept == 4000 and .seed == 7 and .qubits == 2 and
		.method == "sampled" and (.seconds | type) == "number" and .depth >= 2 and
		.gate_counts.cx == 1 and (.transpiled | type) == "string"' "$T/out"
check "ideal shows no noise: only 00 and 11" \
	jq -e '(.counts | keys) - ["00", "11"] == [] and .counts["00"] + .counts["11"] == 4000' \
	"$T/out"
cp "$T/out" "$T/ideal1.json"
expect_exit 0 "the same seed on one thread" qs --output json --shots 4000 --seed 7 --threads 1 \
	"$T/bell.qasm"
check "gives the same counts" bash -c "diff <(jq -S .counts '$T/ideal1.json') <(jq -S .counts '$T/out')"

# the agent's exact command line
expect_exit 0 "bell on superconducting, the agent's flags" qs --output json --shots 4000 \
	--profile superconducting --seed 11 --precision double --threads 2 --max-memory 1G \
	"$T/bell.qasm"
check "superconducting shows noise: 01 and 10 appear" \
	jq -e '(.counts["01"] // 0) > 0 and (.counts["10"] // 0) > 0' "$T/out"
check "superconducting runs trajectories on prx + cz" \
	jq -e '.method == "trajectories" and .gate_counts.cz >= 1 and .gate_counts.prx >= 1 and
		.gate_counts.cx == null' "$T/out"
cp "$T/out" "$T/sc1.json"
expect_exit 0 "superconducting again with one thread" qs --output json --shots 4000 \
	--profile superconducting --seed 11 --threads 1 "$T/bell.qasm"
check "same seed, other thread count: same counts" \
	bash -c "diff <(jq -S .counts '$T/sc1.json') <(jq -S .counts '$T/out')"
expect_exit 0 "photonic drops unheralded shots" qs --output json --shots 2000 --profile photonic \
	--seed 3 "$T/bell.qasm"
check "kept shots are fewer and counted" \
	jq -e '.shots_kept < 2000 and .shots_kept > 0 and ([.counts[]] | add) == .shots_kept' "$T/out"

expect_exit 0 "table output" qs --shots 1000 --seed 1 --profile neutral-atom "$T/bell.qasm"
check "the table has bars and the summary" \
	bash -c "grep -q '#' '$T/out' && grep -q 'shots 1000, kept 1000, method trajectories' '$T/out'"
expect_exit 0 "stdin as -" bash -c "'$QS' --shots 10 --seed 1 - <'$T/bell.qasm'"
expect_exit 0 "--progress" qs --progress --shots 2000 --seed 1 --profile superconducting \
	"$T/bell.qasm"
check "progress lines on stderr, the last one 2000/2000" \
	bash -c "grep -q '^progress ' '$T/err' && tail -1 '$T/err' | grep -qx 'progress 2000/2000'"
expect_exit 0 "--emit-transpiled" qs --emit-transpiled --profile superconducting "$T/bell.qasm"
check "the transpiled QASM uses prx and cz only" \
	bash -c "grep -q '^cz ' '$T/out' && ! grep -Eq '^(h|cx) ' '$T/out'"
expect_exit 0 "--list-profiles --output json" qs --list-profiles --output json
check "four profiles with their noise and sources" \
	jq -e '[.items[].name] | sort == ["ideal", "neutral-atom", "photonic", "superconducting"]' \
	"$T/out"

printf 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\ncx q[0], q[1];\n' >"$T/sv.qasm"
expect_exit 0 "--statevector" qs --statevector "$T/sv.qasm"
check "amplitudes of the Bell state" \
	jq -e '.qubits == 2 and (.amplitudes[0][0] - 0.7071067811865476 | fabs) < 1e-15 and
		(.amplitudes[1][0] | fabs) < 1e-15 and (.amplitudes[3][0] - 0.7071067811865476 | fabs) < 1e-15' \
	"$T/out"
expect_exit 1 "--statevector refuses a measuring circuit" qs --statevector "$T/bell.qasm"
printf 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[20];\ncreg c[20];\nh q;\nmeasure q -> c;\n' >"$T/wide.qasm"
expect_exit 1 "20 qubits in --max-memory 1M is refused" qs --max-memory 1M --shots 10 "$T/wide.qasm"
check "saying how much it needs" grep -Eqi "need|memory" "$T/err"

finish
