# test/env.sh - sourced by the test runner, the demo and the benchmarks:
# install what distill needs, build it, and run a throwaway PostgreSQL
# cluster and the replay teacher, both stopped again on exit.
#
# PostgreSQL refuses to run as root, so as root the cluster runs as the
# `postgres` user; otherwise as the calling user.

DISTILL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# clang, libclang-rt-dev (libFuzzer, the sanitizer runtimes) and llvm
# (llvm-symbolizer, for readable sanitizer reports): test/fuzz/README.md.
# perl (prove) and libipc-run-perl: the TAP tests (test/t), with the
# PostgreSQL::Test modules of postgresql-server-dev-15.
APT_PACKAGES="make gcc postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev
              libopenblas-dev libjson-c-dev python3 postgresql-15-cron
              clang libclang-rt-dev llvm perl libipc-run-perl
              libpcre2-dev libunistring-dev"
TEACHER_PORT=${DISTILL_TEACHER_PORT:-8808}
# Debian's interpreter (package python3, which install_packages installs),
# not a version manager's shim: a shim may not pass our signals on to the
# server it starts.
PYTHON=/usr/bin/python3
# The replay teacher's test keys: the right one and a wrong one.
export DISTILL_TEST_KEY=sk-test-123
export DISTILL_WRONG_KEY=sk-wrong-456

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# (from /, which the postgres user can enter, unlike root's home directory)
as_pg() {
	if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

install_packages() {
	local missing="" p
	for p in $APT_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "== installing:$missing"
	as_root apt-get update -qq &&
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $missing >/dev/null
}

build_and_install() {
	echo "== building distill"
	make -C "$DISTILL_ROOT" -s -j2 >/dev/null && as_root make -C "$DISTILL_ROOT" -s install >/dev/null
}

free_port() {
	"$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start a cluster in a new temp directory; exports PGHOST, PGPORT, PGUSER.
start_cluster() {
	local bindir
	bindir=$(pg_config --bindir)
	PGTMP=$(mktemp -d /tmp/distill-pg.XXXXXX)
	chmod 755 "$PGTMP"
	[ "$(id -u)" = 0 ] && chown postgres: "$PGTMP"
	export PGHOST=$PGTMP PGPORT=$(free_port) PGUSER=$(as_pg whoami) PGDATABASE=postgres
	as_pg "$bindir/initdb" -D "$PGTMP/data" -A trust --no-sync -E UTF8 --locale=C >/dev/null || return 1
	cat >>"$PGTMP/data/postgresql.conf" <<-CONF
		port = $PGPORT
		listen_addresses = ''
		unix_socket_directories = '$PGTMP'
		shared_preload_libraries = 'distill,pg_cron'
		distill.database = '${DISTILL_DATABASE:-postgres}'
		# pg_cron queues distill jobs on cron times (docs/jobs.md); no TCP here,
		# so it runs its statements in background workers
		cron.database_name = '${DISTILL_DATABASE:-postgres}'
		cron.use_background_workers = on
		fsync = off
		max_worker_processes = 16
	CONF
	echo "== starting PostgreSQL on port $PGPORT in $PGTMP"
	as_pg env DISTILL_TEST_KEY="$DISTILL_TEST_KEY" DISTILL_WRONG_KEY="$DISTILL_WRONG_KEY" \
		"$bindir/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/server.log" -w start >/dev/null
}

# The checkpoints the import tests read (docs/pretrained.md): stories260K's
# llama2.c files, and the Hugging Face and GGUF files converted from them,
# in a directory of the cluster's that the server's user can read (a
# checkout in /root is not).  Exports DISTILL_MODELS.
prepare_models() {
	export DISTILL_MODELS=$PGTMP/models
	mkdir -p "$DISTILL_MODELS" &&
		cp "$DISTILL_ROOT"/test/data/stories260K/*.bin "$DISTILL_MODELS/" &&
		"$PYTHON" "$DISTILL_ROOT/scripts/pretrained/convert.py" \
			"$DISTILL_ROOT/test/data/stories260K" "$DISTILL_MODELS" >/dev/null &&
		chmod -R a+rX "$DISTILL_MODELS" || return 1
	[ "$(id -u)" = 0 ] && chown -R postgres: "$DISTILL_MODELS"
	return 0
}

stop_cluster() {
	[ -n "${PGTMP:-}" ] || return 0
	as_pg "$(pg_config --bindir)/pg_ctl" -D "$PGTMP/data" -m fast -w stop >/dev/null 2>&1
	rm -rf "$PGTMP"
	PGTMP=
}

teacher_up() {
	"$PYTHON" - "$TEACHER_PORT" <<-'PY' 2>/dev/null
		import sys, urllib.request
		urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1)
	PY
}

start_teacher() {
	if teacher_up; then
		echo "port $TEACHER_PORT is already in use; stop what runs there or set DISTILL_TEACHER_PORT" >&2
		return 1
	fi
	"$PYTHON" "$DISTILL_ROOT/test/replay_teacher.py" --port "$TEACHER_PORT" "$@" \
		>"${PGTMP:-/tmp}/teacher.log" 2>&1 &
	TEACHER_PID=$!
	for _ in $(seq 50); do
		teacher_up && return 0
		sleep 0.1
	done
	echo "the replay teacher did not start:" >&2
	cat "${PGTMP:-/tmp}/teacher.log" >&2
	return 1
}

stop_teacher() {
	[ -n "${TEACHER_PID:-}" ] || return 0
	kill "$TEACHER_PID" 2>/dev/null
	wait "$TEACHER_PID" 2>/dev/null
	TEACHER_PID=
}

stop_all() {
	stop_teacher
	stop_cluster
}
