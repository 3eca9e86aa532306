#!/usr/bin/env bash
# test/tap.sh - the TAP tests in test/t/*.pl (PostgreSQL::Test::Cluster),
# run with prove as the server's user: each test makes its own clusters in
# a temporary directory, on ports of their own.  Tests that need a teacher
# use the replay teacher test/run.sh started (DISTILL_TEACHER_PORT).
# Needs the installed distill; run by test/run.sh, or alone after it:
#   bash test/tap.sh [test/t/002_worker_crash.pl ...]
# Prints prove's verbose report; test/run.sh counts its "ok" and "not ok".
set -u
cd "$(dirname "$0")/.."
. test/env.sh

# Debian's postgresql-server-dev-15: .../pgxs/src/makefiles/pgxs.mk
src=$(dirname "$(dirname "$(pg_config --pgxs)")")
work=$(mktemp -d /tmp/distill-tap.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown postgres: "$work"
trap 'rm -rf "$work"' EXIT
[ $# -gt 0 ] || set -- test/t/*.pl
# The postgres user may not read the checkout (a clone in /root), so the
# tests and their data are copied to $work, which it owns.
mkdir -p "$work/test"
cp -r "$DISTILL_ROOT/test/t" "$DISTILL_ROOT/test/data" "$work/test/"
[ "$(id -u)" = 0 ] && chown -R postgres: "$work/test"
tests=()
for t in "$@"; do
	tests+=("$work/test/t/$(basename "$t")")
done
# (as_pg runs from /, and writes only to $work)
as_pg env PATH="$(pg_config --bindir):$PATH" TESTDIR="$work" \
	PG_REGRESS="$src/test/regress/pg_regress" \
	DISTILL_TEACHER_PORT="$TEACHER_PORT" \
	prove -v -I "$src/test/perl" -I "$work/test/t" "${tests[@]}"
status=$?
# the servers' logs of failed tests
if [ "$status" != 0 ]; then
	for log in "$work"/tmp_check/log/*; do
		[ -f "$log" ] && { echo "== $log"; tail -n 50 "$log"; }
	done
fi
exit $status
