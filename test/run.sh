#!/usr/bin/env bash
# The whole test suite: C unit tests (also under the sanitizers), a short
# fuzzing run, the replay teacher's self-test, pg_regress against a
# throwaway cluster, checks on the server log, and the TAP tests of test/t
# (several sessions or servers, each test with clusters of its own).
# Prints "N passed, N failed" last; exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
. test/env.sh
# pg_regress's database; the launcher serves it
export DISTILL_DATABASE=contrib_regression

passed=0
failed=0

# Add the "N passed, N failed" lines of a test log to the totals.
count() {
	local p f
	while read -r p f; do
		passed=$((passed + p))
		failed=$((failed + f))
	done < <(sed -n 's/.*\b\([0-9]\+\) passed, \([0-9]\+\) failed.*/\1 \2/p' "$1")
}

# pg_regress ends with "All N tests passed." or "M of N tests failed."
count_regress() {
	local all n m
	all=$(sed -n 's/.*All \([0-9]\+\) tests passed.*/\1/p' "$1")
	if [ -n "$all" ]; then
		passed=$((passed + all))
		return
	fi
	m=$(sed -n 's/.* \([0-9]\+\) of \([0-9]\+\) tests failed.*/\1/p' "$1")
	n=$(sed -n 's/.* \([0-9]\+\) of \([0-9]\+\) tests failed.*/\2/p' "$1")
	passed=$((passed + ${n:-0} - ${m:-0}))
	failed=$((failed + ${m:-1}))
}

# prove -v prints "ok N - ..." or "not ok N - ..." per check; a test file
# that dies or breaks its plan prints neither for what it did not run, so a
# failed prove with no "not ok" still counts one failure.
count_tap() {
	local ok not_ok
	ok=$(grep -c '^ok [0-9]' "$1")
	not_ok=$(grep -c '^not ok [0-9]' "$1")
	passed=$((passed + ok))
	failed=$((failed + not_ok))
	[ "$2" = 0 ] || [ "$not_ok" -gt 0 ] || failed=$((failed + 1))
}

# A check on the server after the tests: the API keys never reach its log.
check_no_key_in_log() {
	if grep -q -e "$DISTILL_TEST_KEY" -e "$DISTILL_WRONG_KEY" "$PGTMP/server.log"; then
		echo "FAIL: an API key appears in the server log"
		failed=$((failed + 1))
	else
		echo "ok: no API key in the server log"
		passed=$((passed + 1))
	fi
}

# Another checkout on this machine may install its own build while we run
# (the benchmarks install too); then these results would not be ours.
check_same_library() {
	if cmp -s distill.so "$(pg_config --pkglibdir)/distill.so"; then
		echo "ok: the installed distill.so is still the one built here"
		passed=$((passed + 1))
	else
		echo "FAIL: distill.so was reinstalled by someone else during the run; run again"
		failed=$((failed + 1))
	fi
}

install_packages || exit 1
build_and_install || exit 1
logs=$(mktemp -d)
trap 'stop_all; rm -rf "$logs"' EXIT
# The cluster loads the library now (shared_preload_libraries), so that a
# concurrent install during the unit tests cannot swap it.
start_cluster || exit 1
prepare_models || exit 1
start_teacher || exit 1

echo "== unit tests"
before=$failed
make -s unit 2>&1 | tee "$logs/unit"
status=${PIPESTATUS[0]}
count "$logs/unit"
# A build that broke before any test could count itself still fails.
[ "$status" = 0 ] || [ "$failed" -gt "$before" ] || failed=$((failed + 1))

echo "== unit tests under AddressSanitizer, UndefinedBehaviorSanitizer, LeakSanitizer"
before=$failed
make -s -k -j2 -Otarget unit-sanitize 2>&1 | tee "$logs/unit-asan"
status=${PIPESTATUS[0]}
count "$logs/unit-asan"
[ "$status" = 0 ] || [ "$failed" -gt "$before" ] || failed=$((failed + 1))

# Each target replays its committed seeds, then fuzzes a few seconds (one
# test each; test/fuzz/README.md).  New inputs go to a throwaway corpus,
# crashing ones to build/fuzz/crashes.  The mutations start from a fixed
# seed, so that a run's result is that of its commit: exploring is for
# long runs of make fuzz, which CI cannot afford.
echo "== fuzzing, ${FUZZ_SECONDS:=5} s per target, seed ${FUZZ_SEED:=1}"
before=$failed
FUZZ_CORPUS="$logs/fuzz-corpus" FUZZ_SEED="$FUZZ_SEED" make -s -j2 fuzz FUZZ_SECONDS="$FUZZ_SECONDS" 2>&1 |
	tee "$logs/fuzz"
status=${PIPESTATUS[0]}
count "$logs/fuzz"
[ "$status" = 0 ] || [ "$failed" -gt "$before" ] || failed=$((failed + 1))

echo "== replay teacher self-test"
"$PYTHON" test/test_replay_teacher.py 2>&1 | tee "$logs/replay"
count "$logs/replay"

# Statements that only a cancel can end (sql/annotate.sql, sql/student.sql) would run
# for hours if the cancel were never seen: the limit turns that into a
# failure.  It bounds a hang, not a speed: the tests take minutes.
echo "== pg_regress"
timeout 1800 make -s installcheck 2>&1 | tee "$logs/regress"
count_regress "$logs/regress"
[ -f build/regress/regression.diffs ] && head -200 build/regress/regression.diffs

check_no_key_in_log

echo "== TAP tests: cancels, a killed worker, pg_cron, no preload, hot standby"
bash test/tap.sh 2>&1 | tee "$logs/tap"
count_tap "$logs/tap" "${PIPESTATUS[0]}"

check_same_library

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
