#!/usr/bin/env bash
# make check: build and run the suite three ways, then print one summary line.
#   1. release build, every unit and integration test (ctest)
#   2. ASan+UBSan build, the same tests
#   3. clang libFuzzer build, each fuzz target for a bounded time
# Ends with "N passed, N failed" on its own line.
set -uo pipefail
cd "$(dirname "$0")/.."
GEN=""; command -v ninja >/dev/null && GEN="-G Ninja"
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
pass=0; fail=0; failed=()

note() { printf '\n== %s\n' "$*"; }

run_ctest() { # dir label
	local dir=$1 label=$2 log
	log=$(mktemp)
	(cd "$dir" && ctest --output-on-failure -j1 --timeout 600) 2>&1 | tee "$log"
	local p f
	p=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$log")
	f=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(\*\*\*|Failed|Timeout|Not Run)' "$log")
	pass=$((pass + p)); fail=$((fail + f))
	[ "$f" -gt 0 ] && failed+=("$label: $(grep -E '^ *[0-9]+ - ' "$log" | tr -s ' ' | tr '\n' ';')")
	rm -f "$log"
}

note "format (clang-format --dry-run, .clang-format)"
if command -v git >/dev/null && git rev-parse --git-dir >/dev/null 2>&1 &&
	clang-format --dry-run -Werror $(git ls-files '*.c' '*.h') 2>&1 | tail -20 | tee build-format.log &&
	[ ! -s build-format.log ]; then
	echo "format: ok"; pass=$((pass + 1))
else
	echo "format: FAILED (run: make format)"; fail=$((fail + 1)); failed+=("format")
fi
rm -f build-format.log

note "release build"
cmake -S . -B build $GEN -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
	cmake --build build || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
run_ctest build release

note "asan+ubsan build"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cmake -S . -B build-asan $GEN -DCMAKE_BUILD_TYPE=Debug -DCIEL_SANITIZE=ON >/dev/null &&
	cmake --build build-asan || { echo "asan build failed"; echo "$pass passed, $((fail + 1)) failed"; exit 1; }
run_ctest build-asan asan

note "fuzz (${FUZZ_SECONDS}s each)"
if CC=clang cmake -S . -B build-fuzz $GEN -DCMAKE_BUILD_TYPE=Debug -DCIEL_FUZZ=ON >/dev/null &&
	cmake --build build-fuzz; then
	for f in build-fuzz/fuzz/fuzz_*; do
		[ -x "$f" ] || continue
		name=$(basename "$f")
		corpus=$(mktemp -d)
		[ -d "fuzz/corpus/$name" ] && cp -r "fuzz/corpus/$name/." "$corpus/"
		if "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=0 \
			-artifact_prefix=build-fuzz/ "$corpus" >build-fuzz/$name.log 2>&1; then
			echo "fuzz $name: ok ($(grep -oE '#[0-9]+' build-fuzz/$name.log | tail -1) runs)"
			pass=$((pass + 1))
		else
			echo "fuzz $name: FAILED"; tail -40 build-fuzz/$name.log
			fail=$((fail + 1)); failed+=("fuzz: $name")
		fi
		rm -rf "$corpus"
	done
else
	echo "fuzz build failed"; fail=$((fail + 1)); failed+=("fuzz build")
fi

echo
for f in "${failed[@]}"; do echo "FAILED $f"; done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
