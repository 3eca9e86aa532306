-- Security: who may do what, and the findings of the security review
-- (docs/security.md).  distill_victim and distill_mallory are both
-- ordinary users (members of distill_user); mallory tries what she should
-- not be able to do.
\set SHOW_CONTEXT never

\i test/helpers.psql
GRANT EXECUTE ON FUNCTION eventually, error_of TO PUBLIC;

SELECT pg_postmaster_start_time() AS started_at \gset

CREATE ROLE distill_victim LOGIN;
CREATE ROLE distill_mallory LOGIN;
CREATE ROLE distill_team NOLOGIN;
CREATE ROLE distill_outsider LOGIN;
GRANT distill_user TO distill_victim, distill_mallory, distill_team;
GRANT distill_team TO distill_victim;

CREATE TABLE raw_rows (doc jsonb);
\copy raw_rows FROM 'test/data/cqa_sample.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
CREATE TABLE questions AS SELECT doc->>'id' AS id, doc->>'input' AS body FROM raw_rows;
GRANT SELECT ON questions TO distill_victim, distill_mallory, distill_team;
SELECT distill.create_teacher('palm', 'http://127.0.0.1:8808/v1', 'palm');
SELECT distill.create_teacher('slow', 'http://127.0.0.1:8808/faults/latency_ms=200/v1', 'palm',
                              options => '{"concurrency": 1}');

-- The victim annotates, trains and schedules, as the documentation shows.
SET ROLE distill_victim;
SELECT distill.create_task('victim_task', 'Answer the question.');
SELECT distill.annotate('victim_task', 'palm', 'SELECT id, body FROM questions LIMIT 20',
                        background => false) > 0 AS annotated;
SELECT distill.train('victim_model', 'victim_task', 'distill', background => false,
                     params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1, "vocab_size": 300}') > 0 AS trained;
SELECT distill.schedule('victim_nightly', interval '1 day', 'annotate',
                        '{"task": "victim_task", "teacher": "palm", "source": "SELECT id, body FROM questions LIMIT 20"}');
SELECT distill.annotate('victim_task', 'slow', 'SELECT id, body FROM questions LIMIT 30') AS victim_job \gset
RESET ROLE;
SELECT owner, status IN ('queued', 'running') AS pending FROM distill.jobs WHERE id = :victim_job;

------------------------------------------------------------------------
-- 1. Jobs run as the role that submitted them, which nobody can choose.
------------------------------------------------------------------------
SET ROLE distill_mallory;
-- no direct writes to the jobs table, for any owner
INSERT INTO distill.jobs (kind, args, owner) VALUES ('annotate',
  '{"task": "cqa", "teacher": "palm", "source": "SELECT rolname::text, coalesce(rolpassword, ''-'') FROM pg_authid"}',
  'postgres');
UPDATE distill.jobs SET args = jsonb_set(args, '{source}', '"SELECT 1, 2"') WHERE id = :victim_job;
-- nor through the function that queues them
SELECT distill._queue_job('postgres', 'annotate', '{"task": "t", "teacher": "palm", "source": "SELECT 1, 2"}');
-- her own jobs are hers, and read only what she may read
SELECT distill.create_task('mallory_task', 'Answer the question.');
SELECT distill.annotate('mallory_task', 'palm',
                        'SELECT rolname::text, coalesce(rolpassword, ''-'') FROM pg_authid') AS mallory_job \gset
SELECT distill.wait(:mallory_job);
SELECT owner, status, error FROM distill.jobs WHERE id = :mallory_job;
-- the victim's job is invisible to her, so she cannot wait for it or cancel it
SELECT count(*) FROM distill.jobs WHERE id = :victim_job;
SELECT error_of(format('SELECT distill.wait(%s, interval ''1 second'')', :victim_job));
SELECT error_of(format('SELECT distill.cancel(%s)', :victim_job));
RESET ROLE;
SELECT args->>'source' LIKE 'SELECT id, body FROM questions%' AS untouched,
       status IN ('queued', 'running') AS still_pending
FROM distill.jobs WHERE id = :victim_job;
-- a member of the owner's role may cancel it
GRANT distill_victim TO distill_outsider;
SET ROLE distill_outsider;
SELECT distill.cancel(:victim_job);
RESET ROLE;
REVOKE distill_victim FROM distill_outsider;

-- A job runs as a role that can log in: a NOLOGIN role cannot queue one.
SET ROLE distill_team;
SELECT distill.create_task('team_task', 'Answer the question.');
SELECT distill.annotate('team_task', 'palm', 'SELECT id, body FROM questions LIMIT 1');
SELECT distill.annotate('team_task', 'palm', 'SELECT id, body FROM questions LIMIT 2',
                        background => false) > 0 AS annotated_here;
RESET ROLE;
-- a job whose owner cannot log in (any more) fails, saying why
INSERT INTO distill.jobs (kind, args, owner)
VALUES ('annotate', '{"task": "team_task", "teacher": "palm", "source": "SELECT 1, 2"}', 'distill_team');
SELECT eventually($$SELECT status = 'failed' FROM distill.jobs
                    WHERE owner = 'distill_team'::regrole AND args->>'source' = 'SELECT 1, 2'$$) AS failed;
SELECT status, error FROM distill.jobs
WHERE owner = 'distill_team'::regrole AND args->>'source' = 'SELECT 1, 2';

------------------------------------------------------------------------
-- 2. Job arguments of JSON null never reach a worker as a NULL pointer.
------------------------------------------------------------------------
SET ROLE distill_mallory;
SELECT distill.schedule('boom', interval '2 seconds', 'annotate',
                        '{"task": null, "teacher": null, "source": null}');
SELECT distill.schedule('boom', interval '2 seconds', 'annotate',
                        '{"task": "mallory_task", "teacher": "palm", "source": ""}');
SELECT distill.schedule('boom', interval '2 seconds', 'train',
                        '{"model": "m", "task": "mallory_task", "params": []}');
RESET ROLE;
-- rows written behind the functions' back (only the extension's owner can)
-- fail with a message, once, and the server stays up
INSERT INTO distill.jobs (kind, args, owner, max_attempts)
VALUES ('annotate', '{}', current_user::text::regrole, 1000),
       ('annotate', '{"task": null, "teacher": null, "source": null}', current_user::text::regrole, 1000),
       ('train', '{"model": "m", "task": "victim_task"}', current_user::text::regrole, 1000);
SELECT eventually($$SELECT count(*) = 3 FROM distill.jobs
                    WHERE max_attempts = 1000 AND status = 'failed'$$) AS all_failed;
SELECT kind, status, attempts, regexp_replace(error, '\d+', 'N') AS error
FROM distill.jobs WHERE max_attempts = 1000 ORDER BY id;
SELECT pg_postmaster_start_time() = :'started_at' AS no_crash;

------------------------------------------------------------------------
-- 3. One bad schedule cannot stop background work.
------------------------------------------------------------------------
SET ROLE distill_mallory;
SELECT distill.schedule('far', interval '300000 years', 'annotate',
                        '{"task": "mallory_task", "teacher": "palm", "source": "SELECT 1, 2"}');
SELECT distill.schedule('zero', interval '-1 year' + interval '365 days 6 hours', 'annotate',
                        '{"task": "mallory_task", "teacher": "palm", "source": "SELECT 1, 2"}');
SELECT distill.schedule('backwards', interval '1 mon -30 days', 'annotate',
                        '{"task": "mallory_task", "teacher": "palm", "source": "SELECT 1, 2"}');
SELECT distill.schedule('lapsed', interval '1 second', 'annotate',
                        '{"task": "mallory_task", "teacher": "palm", "source": "SELECT 1, 2"}');
RESET ROLE;
-- a schedule whose owner can no longer log in stops itself, saying why
ALTER ROLE distill_mallory NOLOGIN;
SELECT eventually($$SELECT NOT enabled FROM distill.schedules WHERE name = 'lapsed'$$) AS lapsed;
SELECT enabled, last_error FROM distill.schedules WHERE name = 'lapsed';
ALTER ROLE distill_mallory LOGIN;
SET ROLE distill_mallory;
SELECT distill.unschedule('lapsed');
RESET ROLE;
-- not even the extension's owner can store such an interval
\set VERBOSITY terse
UPDATE distill.schedules SET every = interval '300000 years' WHERE name = 'victim_nightly';
\set VERBOSITY default
-- a schedule broken behind the functions' back stops itself, with the reason
UPDATE distill.schedules SET args = '{"task": null}', next_run = now() WHERE name = 'victim_nightly';
SELECT eventually($$SELECT NOT enabled FROM distill.schedules WHERE name = 'victim_nightly'$$) AS stopped_itself;
SELECT enabled, last_error FROM distill.schedules WHERE name = 'victim_nightly';
-- and the others go on: a job queued now still runs
SELECT distill.annotate('victim_task', 'palm', 'SELECT id, body FROM questions LIMIT 3') AS after_job \gset
SELECT distill.wait(:after_job);
-- resuming clears the reason (it would fail again at once: no next_run change)
UPDATE distill.schedules SET args = '{"task": "victim_task", "teacher": "palm", "source": "SELECT id, body FROM questions LIMIT 20"}'::jsonb
WHERE name = 'victim_nightly';
SET ROLE distill_victim;
SELECT distill.enable_schedule('victim_nightly');
SELECT name, enabled, last_error FROM distill.schedules;
RESET ROLE;

------------------------------------------------------------------------
-- 4. search_path is pinned: an operator or function planted in public is
-- never called by distill's own SQL, which the launcher runs as superuser.
------------------------------------------------------------------------
SELECT count(*) > 20 AS pinned_functions,
       count(*) FILTER (WHERE NOT coalesce(proconfig, '{}') @> '{"search_path=pg_catalog, pg_temp"}') AS unpinned
FROM pg_proc WHERE pronamespace = 'distill'::regnamespace
               AND prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c');
SELECT count(*) > 15 AS internal_functions,
       count(*) FILTER (WHERE has_function_privilege('distill_mallory', oid, 'EXECUTE')) AS executable_by_users
FROM pg_proc WHERE pronamespace = 'distill'::regnamespace AND proname LIKE '\_%';
GRANT CREATE ON SCHEMA public TO distill_mallory;
SET ROLE distill_mallory;
-- the review's example, and one that an unpinned _next_run() would call
CREATE FUNCTION public.times(interval, numeric) RETURNS interval
LANGUAGE plpgsql AS $$
BEGIN
    ALTER ROLE distill_mallory SUPERUSER;
    RETURN $1 * $2::float8;
END $$;
CREATE OPERATOR public.* (LEFTARG = interval, RIGHTARG = numeric, FUNCTION = public.times);
CREATE FUNCTION public.divide(numeric, double precision) RETURNS double precision
LANGUAGE plpgsql AS $$
BEGIN
    ALTER ROLE distill_mallory SUPERUSER;
    RETURN $1::float8 / $2;
END $$;
CREATE OPERATOR public./ (LEFTARG = numeric, RIGHTARG = double precision, FUNCTION = public.divide);
SELECT distill.schedule('often', interval '1 second', 'annotate',
                        '{"task": "mallory_task", "teacher": "palm", "source": "SELECT id, body FROM questions LIMIT 1"}');
RESET ROLE;
SELECT eventually($$SELECT count(*) >= 2 FROM distill.jobs
                    WHERE owner = 'distill_mallory'::regrole AND args->>'source' LIKE '%LIMIT 1'$$) AS fired_twice;
SELECT rolsuper FROM pg_roles WHERE rolname = 'distill_mallory';
SET ROLE distill_mallory;
SELECT distill.unschedule('often');
DROP OPERATOR public.* (interval, numeric), public./ (numeric, double precision);
DROP FUNCTION public.times(interval, numeric), public.divide(numeric, double precision);
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM distill_mallory;

------------------------------------------------------------------------
-- 5. Each role sees and changes only its own rows.
------------------------------------------------------------------------
SELECT (SELECT count(*) FROM distill.tasks WHERE owner = 'distill_victim'::regrole) AS tasks,
       (SELECT count(*) FROM distill.annotations WHERE owner = 'distill_victim'::regrole) > 0 AS annotations,
       (SELECT count(*) FROM distill.models WHERE owner = 'distill_victim'::regrole) AS models,
       (SELECT count(*) FROM distill.training_log WHERE owner = 'distill_victim'::regrole) > 0 AS logged,
       (SELECT count(*) FROM distill.jobs WHERE owner = 'distill_victim'::regrole) > 0 AS jobs,
       (SELECT count(*) FROM distill.schedules WHERE owner = 'distill_victim'::regrole) AS schedules;
SET ROLE distill_mallory;
SELECT (SELECT count(*) FROM distill.tasks WHERE owner <> 'distill_mallory'::regrole) AS tasks,
       (SELECT count(*) FROM distill.annotations WHERE owner <> 'distill_mallory'::regrole) AS annotations,
       (SELECT count(*) FROM distill.models) AS models,
       (SELECT count(*) FROM distill.training_log) AS logged,
       (SELECT count(*) FROM distill.jobs WHERE owner <> 'distill_mallory'::regrole) AS jobs,
       (SELECT count(*) FROM distill.schedules WHERE owner <> 'distill_mallory'::regrole) AS schedules;
UPDATE distill.annotations SET label = 'poisoned' WHERE task = 'victim_task';
DELETE FROM distill.annotations WHERE task = 'victim_task';
UPDATE distill.jobs SET status = 'failed';
UPDATE distill.schedules SET enabled = false;
DELETE FROM distill.models;
BEGIN;
LOCK TABLE distill.jobs IN ACCESS EXCLUSIVE MODE;
ROLLBACK;
SELECT distill.drop_task('victim_task', cascade => true);
SELECT distill.drop_model('victim_model');
SELECT distill.unschedule('victim_nightly');
SELECT distill.enable_schedule('victim_nightly', false);
SELECT distill_predict('victim_model', 'What is 1+1?');
SELECT distill.annotate('victim_task', 'palm', 'SELECT id, body FROM questions LIMIT 1', background => false);
-- model names are shared: hers must differ from the victim's
SELECT distill.train('victim_model', 'mallory_task', 'distill');
-- teachers are configured by the extension's owner, and those it trusts
SELECT distill.create_teacher('exfil', 'http://127.0.0.1:8808/v1', 'palm');
SELECT distill.drop_teacher('palm', cascade => true);
RESET ROLE;
-- a role trusted with teachers still cannot drop other roles' annotations
GRANT EXECUTE ON FUNCTION distill.drop_teacher(text, boolean) TO distill_mallory;
SET ROLE distill_mallory;
SELECT error_of($$SELECT distill.drop_teacher('palm', cascade => true)$$);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION distill.drop_teacher(text, boolean) FROM distill_mallory;
SELECT count(*) AS victim_annotations_intact FROM distill.annotations
WHERE task = 'victim_task' AND label IS DISTINCT FROM 'poisoned';

-- a group role shares its rows with its members, and nobody else
SET ROLE distill_victim;
SELECT name, owner FROM distill.tasks ORDER BY name;
SELECT count(*) > 0 AS sees_team_annotations FROM distill.annotations WHERE task = 'team_task';
RESET ROLE;

-- roles outside distill_user get nothing
SET ROLE distill_outsider;
SELECT distill_predict('victim_model', 'What is 1+1?');
SELECT count(*) FROM distill.tasks;
RESET ROLE;

------------------------------------------------------------------------
-- 15. distill.wait: bounded timeouts, any isolation level, subtransactions.
------------------------------------------------------------------------
SELECT distill.wait(:after_job, interval '-1 second');
-- a timeout beyond 24.8 days (2^31 ms) is a timeout, not an immediate return
SELECT distill.annotate('victim_task', 'slow', 'SELECT id, body FROM questions ORDER BY id DESC LIMIT 3') AS slow_job \gset
SELECT distill.wait(:slow_job, interval '30 days');
-- under REPEATABLE READ the job's end is still seen
SELECT distill.annotate('victim_task', 'slow', 'SELECT id, body FROM questions ORDER BY id DESC LIMIT 5') AS rr_job \gset
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT status IN ('queued', 'running') AS pending_in_snapshot FROM distill.jobs WHERE id = :rr_job;
SELECT distill.wait(:rr_job);
COMMIT;
-- a job queued in a subtransaction of this transaction is ours too
BEGIN;
SAVEPOINT s;
SELECT distill.annotate('victim_task', 'palm', 'SELECT id, body FROM questions LIMIT 1') AS sub_job \gset
RELEASE SAVEPOINT s;
SELECT error_of(format('SELECT distill.wait(%s, interval ''1 second'')', :sub_job));
ROLLBACK;

------------------------------------------------------------------------
-- 17. Finished jobs are kept for distill.job_retention, then forgotten,
-- with the training log of those that left no model.
------------------------------------------------------------------------
SHOW distill.job_retention;
SET ROLE distill_victim;
SELECT distill.train('victim_model', 'victim_task', 'distill',
                     params => '{"d_model": 128, "layers": 2, "heads": 2, "epochs": 1000, "vocab_size": 300}') AS doomed \gset
SELECT eventually(format('SELECT count(*) > 0 FROM distill.training_log WHERE job_id = %s', :doomed)) AS logging;
SELECT distill.cancel(:doomed);
RESET ROLE;
UPDATE distill.jobs SET finished_at = now() - interval '2 hours' WHERE id IN (:doomed, :mallory_job);
ALTER SYSTEM SET distill.job_retention = '1h';
SELECT pg_reload_conf();
SELECT eventually(format('SELECT count(*) = 0 FROM distill.jobs WHERE id IN (%s, %s)', :doomed, :mallory_job)) AS purged;
SELECT count(*) AS orphan_log FROM distill.training_log WHERE job_id = :doomed;
SELECT count(*) > 0 AS recent_jobs_kept FROM distill.jobs WHERE id = :after_job;
SELECT count(*) > 0 AS model_log_kept FROM distill.training_log l JOIN distill.models m ON m.id = l.model_id;
ALTER SYSTEM RESET distill.job_retention;
SELECT pg_reload_conf();

------------------------------------------------------------------------
-- 21. A teacher can only send environment variables named with the prefix.
------------------------------------------------------------------------
SHOW distill.api_key_env_prefix;
SELECT distill.create_teacher('leak', 'http://127.0.0.1:8808/v1', 'palm', api_key_env => 'PGPASSWORD');
SELECT distill.create_teacher('leak', 'http://127.0.0.1:8808/v1', 'palm', api_key_env => 'AWS_SECRET_ACCESS_KEY');
SET ROLE distill_mallory;
SET distill.api_key_env_prefix = '';
RESET ROLE;
-- a superuser may widen it; a teacher made then is still checked at each use
SET distill.api_key_env_prefix = '';
SELECT distill.create_teacher('leak', 'http://127.0.0.1:8808/v1', 'palm', api_key_env => 'PGPASSWORD');
RESET distill.api_key_env_prefix;
SELECT * FROM distill.ask('leak', 'victim_task', 'What is 1+1?');
SELECT distill.drop_teacher('leak');

------------------------------------------------------------------------
-- clean up
------------------------------------------------------------------------
SET ROLE distill_victim;
SELECT distill.unschedule('victim_nightly');
RESET ROLE;
DO $$ BEGIN
    PERFORM distill.wait(id) FROM distill.jobs
    WHERE owner::text LIKE 'distill\_%' AND status IN ('queued', 'running');
END $$;
SET ROLE distill_victim;
SELECT distill.drop_model('victim_model');
SELECT distill.drop_task('victim_task', cascade => true);
SELECT distill.drop_task('team_task', cascade => true);
RESET ROLE;
SELECT distill.drop_task('mallory_task', cascade => true);
DELETE FROM distill.jobs WHERE owner::text LIKE 'distill\_%' OR max_attempts = 1000;
SELECT distill.drop_teacher('palm', cascade => true);
SELECT distill.drop_teacher('slow', cascade => true);
DROP TABLE questions, raw_rows;
DROP ROLE distill_victim, distill_mallory, distill_team, distill_outsider;
DROP FUNCTION eventually, error_of, launcher_planned, backend_memory;
