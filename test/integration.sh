#!/usr/bin/env bash
# Checks that need more than one session or more than one server, run by
# test/run.sh against its cluster and replay teacher:
#   - pg_cancel_backend stops a running annotation and a running training
#     within a second;
#   - without distill preloaded, background jobs are refused with a hint;
#   - a model trained on a primary answers distill_predict on a hot standby;
#   - a killed worker loses nothing; pg_cron queues jobs;
#   - distill.wait holds no memory while it polls;
#   - OpenBLAS runs no threads in the postmaster, nor beyond distill.threads.
# Prints "ok: ..." or "FAIL: ..." per check.
set -u
cd "$(dirname "$0")/.."
. test/env.sh

DB=${DISTILL_DATABASE:-contrib_regression}

sql() {
	psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$DB" "$@"
}

check() {
	if [ "$1" = 0 ]; then echo "ok: $2"; else echo "FAIL: $2"; fi
}

now_ms() {
	date +%s%3N
}

# Run a statement in the background, cancel it with pg_cancel_backend from
# another session once it is running, and check it ended within a second.
cancel_within_a_second() {
	local what=$1 statement=$2 started elapsed out
	out=$(mktemp)
	psql -X -q -d "$DB" -c "SET application_name = 'cancel_me'; $statement" >"$out" 2>&1 &
	local job=$!
	for _ in $(seq 50); do
		[ "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cancel_me' AND state = 'active'")" = 1 ] && break
		sleep 0.1
	done
	sleep 0.5
	started=$(now_ms)
	sql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'cancel_me'" >/dev/null
	wait "$job"
	elapsed=$(($(now_ms) - started))
	grep -q "canceling statement due to user request" "$out"
	check $? "pg_cancel_backend cancels $what"
	[ "$elapsed" -lt 1000 ]
	check $? "pg_cancel_backend stops $what within a second (${elapsed} ms)"
	rm -f "$out"
}

# The objects of these checks, removed before and after: the database is
# pg_regress's, which the launcher and pg_cron stay connected to.
cleanup() {
	sql -o /dev/null <<-SQL
		SET client_min_messages = warning;
		SELECT distill.drop_task(name, cascade => true) FROM distill.tasks WHERE name IN ('cqa', 'quality');
		SELECT distill.drop_teacher(name, cascade => true) FROM distill.teachers WHERE name IN ('hung', 'sluggish');
		SELECT distill.drop_model(name) FROM (SELECT DISTINCT name FROM distill.models WHERE name IN ('big', 'judge')) m;
		DROP TABLE IF EXISTS items, cqa_raw, cqa;
	SQL
}

setup() {
	sql -o /dev/null -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS distill"
	cleanup
	sql -o /dev/null <<-SQL
		SET client_min_messages = warning;
		CREATE TABLE items AS
		  SELECT i AS id, format('Item %s is %s.', i, CASE WHEN i % 2 = 0 THEN 'good' ELSE 'bad' END) AS body,
		         CASE WHEN i % 2 = 0 THEN 'good' ELSE 'bad' END AS label
		  FROM generate_series(1, 200) i;
		CREATE TABLE cqa_raw (doc jsonb);
		\copy cqa_raw FROM 'test/data/cqa_sample.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
		CREATE TABLE cqa AS SELECT doc->>'id' AS id, doc->>'input' AS body FROM cqa_raw;
		SELECT distill.create_task('cqa', 'Answer the question.');
		SELECT distill.create_task('quality', 'Good or bad?', ARRAY['good', 'bad']);
		SELECT distill.create_teacher('hung', 'http://127.0.0.1:$TEACHER_PORT/faults/hang=1/v1', 'palm',
		                              options => '{"timeout_ms": 60000}');
	SQL
}

# kill -9 of a worker mid-annotation: the server restarts, the job ends
# 'failed' with a reason, and a re-run finishes every item exactly once.
worker_crash_loses_nothing() {
	local job pid status
	sql -o /dev/null -c "SELECT distill.create_teacher('sluggish', 'http://127.0.0.1:$TEACHER_PORT/faults/latency_ms=100/v1', 'palm', options => '{\"concurrency\": 2}')"
	job=$(sql -c "SELECT distill.annotate('cqa', 'sluggish', 'SELECT id, body FROM cqa LIMIT 60')")
	for _ in $(seq 100); do
		[ "$(sql -c "SELECT count(*) >= 10 FROM distill.annotations WHERE teacher = 'sluggish'")" = t ] && break
		sleep 0.1
	done
	pid=$(sql -c "SELECT worker_pid FROM distill.jobs WHERE id = $job")
	kill -9 "$pid"
	for _ in $(seq 100); do
		sql -c "SELECT 1" >/dev/null 2>&1 && break
		sleep 0.2
	done
	for _ in $(seq 100); do
		status=$(sql -c "SELECT status FROM distill.jobs WHERE id = $job" 2>/dev/null)
		[ "$status" = failed ] && break
		sleep 0.2
	done
	[ "$status" = failed ] && sql -c "SELECT error FROM distill.jobs WHERE id = $job" | grep -q "worker running this job stopped"
	check $? "a job whose worker was killed ends failed, saying why"
	[ "$(sql -c "SELECT count(*) BETWEEN 10 AND 59 FROM distill.annotations WHERE teacher = 'sluggish'")" = t ]
	check $? "the items annotated before the kill were kept"
	job=$(sql -c "SELECT distill.annotate('cqa', 'sluggish', 'SELECT id, body FROM cqa LIMIT 60')")
	sql -c "SELECT distill.wait($job)" >/dev/null
	[ "$(sql -c "SELECT count(*), count(DISTINCT item_id), bool_and(status = 'ok') FROM distill.annotations WHERE teacher = 'sluggish'")" = "60|60|t" ]
	check $? "a re-run finishes every item exactly once"
}

# pg_cron (cron times) calls distill.annotate(), which queues a background
# job; pg_cron's finest schedule is a minute, so this waits up to 70 s.
pg_cron_queues_jobs() {
	local found=f
	sql -o /dev/null <<-SQL
		SET client_min_messages = warning;
		CREATE EXTENSION IF NOT EXISTS pg_cron;
		SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'distill-every-minute';
		SELECT cron.schedule('distill-every-minute', '* * * * *',
		  \$\$SELECT distill.annotate('cqa', 'sluggish', 'SELECT id, body FROM cqa LIMIT 3')\$\$);
	SQL
	for _ in $(seq 140); do
		found=$(sql -c "SELECT count(*) > 0 FROM distill.jobs WHERE args->>'source' LIKE '%LIMIT 3' AND status = 'succeeded'")
		[ "$found" = t ] && break
		sleep 0.5
	done
	sql -o /dev/null -c "SELECT cron.unschedule('distill-every-minute')"
	[ "$found" = t ]
	check $? "pg_cron queues a distill job that runs to the end"
}

# The memory of a backend, as pg_log_backend_memory_contexts() writes it to
# the server log ($PGHOST is the cluster's directory): its grand total.
logged_memory() {
	local pid=$1 before total
	before=$(grep -c "\[$pid\] LOG:  Grand total" "$PGHOST/server.log")
	sql -o /dev/null -c "SELECT pg_log_backend_memory_contexts($pid)"
	for _ in $(seq 50); do
		[ "$(grep -c "\[$pid\] LOG:  Grand total" "$PGHOST/server.log")" -gt "$before" ] && break
		sleep 0.1
	done
	total=$(grep "\[$pid\] LOG:  Grand total" "$PGHOST/server.log" | tail -n 1 | sed 's/.*Grand total: \([0-9]*\) bytes.*/\1/')
	echo "${total:-0}"
}

# distill.wait holds no more memory after seconds of polling than after
# one (it used to keep every poll's SPI result: ~8 KiB each).
wait_holds_no_memory() {
	local job pid first last
	job=$(sql -c "SELECT distill.annotate('quality', 'hung', 'SELECT id, body FROM items LIMIT 1')")
	psql -X -q -d "$DB" -o /dev/null -c "SET application_name = 'distill_waiter'" \
		-c "SELECT distill.wait($job)" 2>/dev/null &
	local waiter=$!
	for _ in $(seq 50); do
		pid=$(sql -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'distill_waiter' AND query LIKE '%distill.wait%'")
		[ -n "$pid" ] && break
		sleep 0.1
	done
	sleep 1
	first=$(logged_memory "$pid")
	sleep 3
	last=$(logged_memory "$pid")
	sql -o /dev/null -c "SELECT distill.cancel($job)"
	wait "$waiter"
	[ "$first" -gt 0 ] && [ $((last - first)) -lt 16384 ]
	check $? "distill.wait holds no more memory after 4 s than after 1 s ($first -> $last bytes)"
}

# Background jobs run in distill.database only; elsewhere the call says so.
other_database_is_refused() {
	local out
	psql -X -q -d postgres -o /dev/null -c "SET client_min_messages = warning" \
		-c "CREATE EXTENSION IF NOT EXISTS distill"
	out=$(psql -X -q -d postgres -c "SELECT distill.annotate('t', 'u', 'SELECT 1, 2')" 2>&1)
	echo "$out" | grep -q "background jobs run in database \"$DB\", not in \"postgres\""
	check $? "a background job asked for in another database is refused with a hint"
	psql -X -q -d postgres -o /dev/null -c "DROP EXTENSION distill"
}

# Another server's temp directory, writable by the server's user.
server_dir() {
	local dir
	dir=$(mktemp -d "/tmp/distill-$1.XXXXXX")
	chmod 755 "$dir"
	[ "$(id -u)" = 0 ] && chown postgres: "$dir"
	echo "$dir"
}

# Add the settings on stdin to the postgresql.conf in $1/data and start it.
start_server() {
	as_pg sh -c "cat >> '$1/data/postgresql.conf'" &&
		as_pg "$(pg_config --bindir)/pg_ctl" -D "$1/data" -l "$1/log" -w start >/dev/null
}

stop_server() {
	as_pg "$(pg_config --bindir)/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1
	rm -rf "$1"
}

# A server without distill in shared_preload_libraries: background jobs are
# refused with a hint, and the same work runs in the foreground.
no_preload() {
	local dir port out
	dir=$(server_dir nopreload)
	port=$(free_port)
	as_pg "$(pg_config --bindir)/initdb" -D "$dir/data" -A trust --no-sync -E UTF8 --locale=C >/dev/null &&
		start_server "$dir" <<-CONF
			port = $port
			listen_addresses = ''
			unix_socket_directories = '$dir'
			fsync = off
		CONF
	check $? "a server without the preload starts"
	out=$(psql -X -q -h "$dir" -p "$port" -U "$PGUSER" -d postgres 2>&1 <<-'SQL'
		SET client_min_messages = warning;
		CREATE EXTENSION distill;
		SELECT distill.create_task('t', 'Good or bad?', ARRAY['good', 'bad']);
		SELECT distill.train('m', 't', 'finetune', 'SELECT ''x'' AS input, ''good'' AS label FROM generate_series(1, 8)');
		SELECT distill.train('m', 't', 'finetune', 'SELECT ''x'' AS input, ''good'' AS label FROM generate_series(1, 8)',
		  params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1, "vocab_size": 300}', background => false) > 0;
		SELECT distill_predict('m', 'x');
	SQL
	)
	echo "$out" | grep -q "ERROR:  background jobs need distill in shared_preload_libraries" &&
		echo "$out" | grep -q "HINT:  Add distill to shared_preload_libraries"
	check $? "without the preload, a background job is refused with a hint"
	[ "$(echo "$out" | grep -v '^$' | tail -n 2 | tr -d ' \n')" = "good(1row)" ]
	check $? "without the preload, training and prediction run in the foreground"
	stop_server "$dir"
}

# A physical replica of the cluster, started read-only on another port.
standby_predicts() {
	local dir port answer
	dir=$(server_dir standby)
	port=$(free_port)
	sql -o /dev/null -c "SET client_min_messages = warning" -c "SELECT distill.train('judge', 'quality', 'finetune', 'SELECT body AS input, label FROM items', params => '{\"d_model\": 32, \"layers\": 1, \"heads\": 2, \"epochs\": 2, \"vocab_size\": 300}', background => false)"
	as_pg "$(pg_config --bindir)/pg_basebackup" -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" \
		-D "$dir/data" -R -X stream -c fast >/dev/null 2>&1 &&
		start_server "$dir" <<-CONF
			port = $port
			unix_socket_directories = '$dir'
			hot_standby = on
		CONF
	check $? "a hot standby starts"
	answer=$(psql -X -q -t -A -h "$dir" -p "$port" -d "$DB" \
		-c "SELECT pg_is_in_recovery(), distill_predict('judge', 'Item 7 is bad.') IS NOT NULL" 2>&1)
	[ "$answer" = "t|t" ]
	check $? "distill_predict answers on a hot standby ($answer)"
	stop_server "$dir"
}

# OpenBLAS starts a pool of one thread per core when it is loaded; distill
# stops it in _PG_init, so the postmaster forks from one thread, and a
# backend starts OpenBLAS's threads only for distill.threads > 1.
openblas_threads() {
	local postmaster threads cores
	postmaster=$(head -1 "$PGHOST/data/postmaster.pid")
	threads=$(ls "/proc/$postmaster/task" | wc -l)
	[ "$threads" = 1 ]
	check $? "the postmaster runs one thread ($threads)"
	threads=$(sql -c "SELECT distill_predict('judge', 'Item 7 is bad.') IS NOT NULL" \
		-c "SELECT count(*) FROM pg_ls_dir('/proc/' || pg_backend_pid() || '/task')" | tail -1)
	[ "$threads" = 1 ]
	check $? "a backend that predicts with distill.threads = 1 runs one thread ($threads)"
	cores=$(nproc)
	threads=$(sql -c "SET distill.threads = $cores" \
		-c "SELECT distill_predict('judge', 'Item 7 is bad.') IS NOT NULL" \
		-c "SELECT count(*) FROM pg_ls_dir('/proc/' || pg_backend_pid() || '/task')" | tail -1)
	[ "$threads" = "$cores" ]
	check $? "with distill.threads = $cores, a predicting backend runs $cores threads ($threads)"
}

setup
cancel_within_a_second "an annotation" \
	"SELECT distill.annotate('quality', 'hung', 'SELECT id, body FROM items', background => false)"
cancel_within_a_second "a training" \
	"SELECT distill.train('big', 'quality', 'finetune', 'SELECT body AS input, label FROM items', params => '{\"d_model\": 256, \"layers\": 4, \"epochs\": 100}', background => false)"
[ "$(sql -c "SELECT count(*) FROM distill.models WHERE name = 'big'")" = 0 ]
check $? "a cancelled training leaves no model"
worker_crash_loses_nothing
wait_holds_no_memory
pg_cron_queues_jobs
other_database_is_refused
no_preload
standby_predicts
openblas_threads
cleanup
