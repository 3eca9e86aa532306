#!/usr/bin/env bash
# Run libFuzzer targets for a while each (test/fuzz/README.md):
#
#     bash test/fuzz/run.sh SECONDS build/fuzz/fuzz_<name> ...
#
# Each run first replays the committed seeds of test/fuzz/seeds/<target>
# and the inputs kept in $FUZZ_CORPUS/<target> (default build/fuzz/corpus),
# where it also keeps the new inputs it finds.  A crash, a sanitizer report,
# a failed check, a leak, a timeout or running out of memory fails the
# target; the input is saved in build/fuzz/crashes/<target>/ and its path
# printed with the report.  Prints "ok:" or "FAIL:" per target, then
# "fuzzing: N passed, N failed"; exits non-zero on any failure.
# FUZZ_SEED, when set, seeds libFuzzer's mutations (else a new seed each
# run), so that a short run can be repeated.
set -u
cd "$(dirname "$0")/../.."

seconds=$1
shift
corpus_root=${FUZZ_CORPUS:-build/fuzz/corpus}
passed=0
failed=0

# the models use one BLAS thread; UBSan's report with a stack
export OPENBLAS_NUM_THREADS=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# The sanitizer or libFuzzer report in a log, without libFuzzer's progress
# lines and stack frames; at most 60 lines.
report() {
	sed -n '/ERROR: \|runtime error\|fuzz check failed\|ALARM: \|out-of-memory/,$p' "$1" |
		grep -v -e '^#[0-9]' -e '^MS: ' -e '^base unit: ' -e ' in fuzzer::' \
			-e '^stat::' -e '^0x' -e '^Base64: ' -e '__libc_start' -e ' in _start ' |
		head -60
}

for target in "$@"; do
	name=$(basename "$target")
	corpus=$corpus_root/$name
	crashes=build/fuzz/crashes/$name
	log=build/fuzz/logs/$name.log
	options=()
	[ -f "test/fuzz/$name.dict" ] && options+=("-dict=test/fuzz/$name.dict")
	[ -n "${FUZZ_SEED:-}" ] && options+=("-seed=$FUZZ_SEED")
	mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
	# -timeout: seconds per input; an input taking that long is a bug too
	"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$crashes/" "${options[@]}" \
		"$corpus" "test/fuzz/seeds/$name" >"$log" 2>&1
	status=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	if [ "$status" = 0 ]; then
		echo "ok: $name: ${runs:-?} inputs in $seconds s"
		passed=$((passed + 1))
	else
		input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
		echo "FAIL: $name (exit status $status after ${runs:-?} inputs): input saved as ${input:-(none)}; log $log"
		report "$log"
		failed=$((failed + 1))
	fi
done

echo "fuzzing: $passed passed, $failed failed"
[ "$failed" = 0 ]
