-- background jobs: queue, launcher, workers, wait, cancel, schedules
\set SHOW_CONTEXT never

\i test/helpers.psql

CREATE TABLE questions (id text, body text);
CREATE TABLE raw_rows (doc jsonb);
\copy raw_rows FROM 'test/data/cqa_sample.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
INSERT INTO questions SELECT doc->>'id', doc->>'input' FROM raw_rows;
SELECT distill.create_task('cqa', 'Answer the question.');
SELECT distill.create_teacher('palm', 'http://127.0.0.1:8808/v1', 'palm');
SELECT distill.create_teacher('slow', 'http://127.0.0.1:8808/faults/latency_ms=200/v1', 'palm',
                              options => '{"concurrency": 1}');
-- a teacher that never answers (for 10 minutes): its jobs run until cancelled
SELECT distill.create_teacher('stuck', 'http://127.0.0.1:8808/faults/hang=1/v1', 'palm',
                              options => '{"timeout_ms": 3600000, "max_retries": 0}');

-- a background annotation returns its job id at once and finishes by itself
SELECT distill.annotate('cqa', 'palm', 'SELECT id, body FROM questions LIMIT 50') AS job \gset
SELECT status IN ('queued', 'running') AS pending FROM distill.jobs WHERE id = :job;
SELECT distill.wait(:job);
SELECT kind, status, progress, message, error, attempts, worker_pid IS NOT NULL AS had_worker,
       started_at IS NOT NULL AND finished_at IS NOT NULL AS timed
FROM distill.jobs WHERE id = :job;
SELECT status, count(*) FROM distill.annotations WHERE teacher = 'palm' GROUP BY status;

-- wait with a timeout returns the status at that time
SELECT distill.annotate('cqa', 'slow', 'SELECT id, body FROM questions LIMIT 200') AS slow_job \gset
SELECT distill.wait(:slow_job, interval '50 milliseconds') IN ('queued', 'running') AS still_pending;

-- progress is visible while it runs, and so are the finished rows
SELECT eventually(format('SELECT progress > 0 FROM distill.jobs WHERE id = %s', :slow_job)) AS progress_shows;
SELECT eventually($$SELECT count(*) > 0 FROM distill.annotations WHERE teacher = 'slow'$$) AS rows_show;
SELECT eventually(format($$SELECT count(*) = 1 FROM pg_stat_activity
                           WHERE backend_type = 'distill worker' AND query LIKE 'distill job %s: annotate: %% of 200 items'$$,
                         :slow_job)) AS activity_shows;

-- cancelling a running annotation stops it and keeps the rows it finished
-- (the teacher takes 200 ms an item, one at a time: 40 s for them all)
SELECT distill.cancel(:slow_job);
SELECT status, error FROM distill.jobs WHERE id = :slow_job;
SELECT count(*) BETWEEN 1 AND 199 AS kept_some FROM distill.annotations WHERE teacher = 'slow';

-- two workers run jobs at the same time (distill.max_workers = 2)
SELECT distill.annotate('cqa', 'stuck', 'SELECT id, body FROM questions ORDER BY id LIMIT 40') AS a \gset
SELECT distill.annotate('cqa', 'stuck', 'SELECT id, body FROM questions ORDER BY id DESC LIMIT 40') AS b \gset
SELECT eventually(format($$SELECT count(*) = 2 FROM distill.jobs WHERE id IN (%s, %s) AND status = 'running'$$,
                         :a, :b)) AS two_at_once;
-- a third waits in the queue (the launcher plans, and starts nothing), and
-- can be cancelled there
SELECT distill.annotate('cqa', 'palm', 'SELECT id, body FROM questions') AS c \gset
SELECT launcher_planned() AS planned;
SELECT id = :c AS is_c, status FROM distill.jobs WHERE id IN (:a, :b, :c) ORDER BY id;
SELECT distill.cancel(:c);
SELECT status, error FROM distill.jobs WHERE id = :c;
SELECT distill.cancel(:a), distill.cancel(:b);

-- distill.wait holds no memory while it polls (each poll has its own SPI
-- connection; it used to keep every poll's result, ~8 KiB each): the
-- backend's memory contexts, read in the same row right after a wait of
-- about 3 polls and after one of about 30, hold the same number of bytes
-- (a first wait warms up; the waits are as long as their timeouts because
-- the job never ends, and the same statement text runs each time)
SELECT distill.annotate('cqa', 'stuck', 'SELECT id, body FROM questions LIMIT 1') AS w \gset
\set t '0.1 s'
SELECT distill.wait(:w, :'t'::interval) AS warm_status, backend_memory() AS warm \gset
\set t '0.3 s'
SELECT distill.wait(:w, :'t'::interval) AS short_status, backend_memory() AS after_short \gset
\set t '3 s'
SELECT distill.wait(:w, :'t'::interval) AS long_status, backend_memory() AS after_long \gset
SELECT :'short_status' AS short_wait, :'long_status' AS long_wait, :after_long = :after_short AS held_nothing;
SELECT distill.cancel(:w);

-- a training job, with its log committed as it goes
SELECT distill.train('bg_student', 'cqa', 'step_by_step',
                     params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 2, "vocab_size": 400}') AS t \gset
SELECT distill.wait(:t);
SELECT kind, status, message LIKE 'model "bg_student" version 1:%' AS summary FROM distill.jobs WHERE id = :t;
SELECT count(*) > 0 AS logged FROM distill.training_log
WHERE model_id = (SELECT id FROM distill.models WHERE name = 'bg_student');

-- a job whose worker is terminated goes back to the queue while it has attempts left
SELECT distill.annotate('cqa', 'slow', 'SELECT id, body FROM questions ORDER BY id LIMIT 12') AS r \gset
UPDATE distill.jobs SET max_attempts = 2 WHERE id = :r;
SELECT eventually(format('SELECT worker_pid IS NOT NULL FROM distill.jobs WHERE id = %s', :r)) AS started;
SELECT pg_terminate_backend(worker_pid) FROM distill.jobs WHERE id = :r;
SELECT distill.wait(:r);
SELECT status, attempts, error FROM distill.jobs WHERE id = :r;

-- a job's ERROR becomes the job's error
SELECT distill.annotate('cqa', 'palm', 'SELECT id, body FROM no_such_table') AS bad \gset
SELECT distill.wait(:bad);
SELECT status, error FROM distill.jobs WHERE id = :bad;
SELECT distill.train('x', 'cqa', 'step_by_step', 'SELECT input, label, rationale FROM nowhere') AS bad2 \gset
SELECT distill.wait(:bad2);
SELECT status, error FROM distill.jobs WHERE id = :bad2;
DELETE FROM distill.tasks WHERE false;
SELECT distill.create_task('doomed', 'x');
-- (one transaction, so that the task is gone when the job can start)
BEGIN;
SELECT distill.annotate('doomed', 'palm', 'SELECT id, body FROM questions LIMIT 1') AS bad3 \gset
SELECT distill.drop_task('doomed');
COMMIT;
SELECT distill.wait(:bad3);
SELECT status, error FROM distill.jobs WHERE id = :bad3;

-- a job runs as its owner: it cannot read what its owner cannot
CREATE ROLE distill_alice LOGIN;
GRANT distill_user TO distill_alice;
CREATE TABLE bobs_secrets (id text, body text);
INSERT INTO bobs_secrets SELECT id, body FROM questions LIMIT 3;
SET ROLE distill_alice;
SELECT distill.create_task('alice_cqa', 'Answer the question.');
SELECT distill.annotate('alice_cqa', 'palm', 'SELECT id, body FROM bobs_secrets') AS alice \gset
RESET ROLE;
SELECT distill.wait(:alice);
SELECT owner, status, error FROM distill.jobs WHERE id = :alice;

-- schedules fire repeatedly, never overlap, and stop when removed
SELECT distill.schedule('every_second', interval '1 second', 'annotate',
                        '{"task": "cqa", "teacher": "palm", "source": "SELECT id, body FROM questions LIMIT 5"}');
SELECT name, every, kind, args, enabled FROM distill.schedules;
SELECT eventually($$SELECT count(*) >= 2 FROM distill.jobs j JOIN distill.schedules s ON true
                    WHERE j.args = s.args AND j.status = 'succeeded'$$) AS fired_twice;
-- (its next run read and the schedule removed at once, so that it cannot fire in between)
BEGIN;
SELECT next_run AS every_second_due FROM distill.schedules WHERE name = 'every_second' FOR UPDATE \gset
SELECT distill.unschedule('every_second');
COMMIT;
SELECT count(*) AS fired_before FROM distill.jobs WHERE args->>'source' LIKE '%LIMIT 5' \gset
-- past the time it would have fired, the launcher plans and queues nothing more
SELECT eventually(format('SELECT clock_timestamp() > %L::timestamptz', :'every_second_due')) AS past_due;
SELECT launcher_planned() AS planned;
SELECT count(*) = :fired_before AS stopped FROM distill.jobs WHERE args->>'source' LIKE '%LIMIT 5';
-- a schedule whose job outlasts its period never runs two at once: while its
-- job hangs, the launcher plans past the schedule's next run and fires
-- nothing; once the job ends, the schedule fires again
SELECT distill.schedule('overlapping', interval '1 second', 'annotate',
                        '{"task": "cqa", "teacher": "stuck", "source": "SELECT id, body FROM questions ORDER BY id DESC LIMIT 1"}');
SELECT eventually($$SELECT count(*) = 1 FROM distill.jobs j JOIN distill.schedules s ON j.id = s.last_job
                    WHERE s.name = 'overlapping' AND j.status = 'running'$$) AS fired;
SELECT eventually($$SELECT next_run < clock_timestamp() FROM distill.schedules WHERE name = 'overlapping'$$) AS due_again;
SELECT launcher_planned() AS planned;
SELECT count(*) AS jobs, count(*) FILTER (WHERE status = 'running') AS running
FROM distill.jobs WHERE args->>'source' LIKE '%DESC LIMIT 1';
SELECT distill.cancel(id) FROM distill.jobs WHERE args->>'source' LIKE '%DESC LIMIT 1' AND status = 'running';
SELECT eventually($$SELECT count(*) = 2 FROM distill.jobs WHERE args->>'source' LIKE '%DESC LIMIT 1'$$) AS fired_again;
SELECT distill.unschedule('overlapping');
SELECT count(*) AS left_running, bool_and(distill.cancel(id) = 'cancelled') AS stopped_the_last
FROM distill.jobs WHERE args->>'source' LIKE '%DESC LIMIT 1' AND status IN ('queued', 'running');

-- mistakes
BEGIN;
SELECT distill.annotate('cqa', 'palm', 'SELECT id, body FROM questions LIMIT 1') AS uncommitted \gset
SELECT error_of(format('SELECT distill.wait(%s)', :uncommitted));
ROLLBACK;
SELECT distill.wait(999999);
SELECT distill.cancel(999999);
SELECT distill.schedule('s', interval '1 hour', 'cook', '{}');
SELECT distill.schedule('s', interval '1 hour', 'annotate', '{"task": "cqa"}');
SELECT distill.schedule('s', interval '1 hour', 'annotate', '{"task": "cqa", "teacher": "palm", "source": "x", "when": 1}');
SELECT distill.schedule('s', interval '1 millisecond', 'annotate', '{"task": "cqa", "teacher": "palm", "source": "x"}');
SELECT distill.unschedule('nothing');
SET ROLE distill_alice;
SELECT error_of(format('SELECT distill.cancel(%s)', :t));
RESET ROLE;

-- clean up
SELECT distill.drop_model('bg_student');
SELECT distill.drop_task('cqa', cascade => true);
SELECT distill.drop_teacher(name) FROM distill.teachers;
DROP TABLE questions, raw_rows, bobs_secrets;
SELECT distill.drop_task('alice_cqa');
DELETE FROM distill.jobs WHERE owner = 'distill_alice'::regrole;
DROP ROLE distill_alice;
DROP FUNCTION eventually, error_of, launcher_planned, backend_memory;
