#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian 12 machine: install what is
# needed, build and install distill, start a throwaway cluster and the replay
# teacher, run scripts/demo.sql, and stop everything again.
set -u
cd "$(dirname "$0")/.."
. test/env.sh

install_packages || exit 1
build_and_install || exit 1
trap stop_all EXIT
start_cluster || exit 1
start_teacher || exit 1
psql -X -q -v teacher_url="http://127.0.0.1:$TEACHER_PORT/v1" -f scripts/demo.sql
