-- distill.annotate: many rows, concurrency, the fault matrix, re-runs, errors
\set SHOW_CONTEXT never

-- jobs before this test's (other tests share the database)
SELECT coalesce(max(id), 0) AS jobs_before FROM distill.jobs \gset

CREATE TABLE raw_rows (doc jsonb);
\copy raw_rows FROM 'test/data/cqa_sample.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
CREATE TABLE cqa AS
  SELECT doc->>'id' AS id, doc->>'input' AS input, doc->>'teacher_label' AS teacher_label
  FROM raw_rows;
TRUNCATE raw_rows;
\copy raw_rows FROM 'test/data/svamp_sample.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
CREATE TABLE svamp AS
  SELECT doc->>'id' AS id, doc->>'input' AS input, doc->>'teacher_label' AS teacher_label
  FROM raw_rows;
SELECT (SELECT count(*) FROM cqa) AS cqa, (SELECT count(*) FROM svamp) AS svamp;

SELECT distill.create_task('cqa', 'Answer the question.');
SELECT distill.create_task('svamp', 'Write an equation.', answer_prefix => 'The answer is');

-- The fault matrix: 10% HTTP 500, 5% 429 with Retry-After, 5% malformed JSON,
-- 2% dropped connections.  Every item still ends 'ok', after retries.
SELECT distill.create_teacher('chaos',
  'http://127.0.0.1:8808/faults/p500=0.1,p429=0.05,malformed=0.05,drop=0.02,seed=1/v1', 'palm',
  options => '{"concurrency": 16, "max_retries": 8, "retry_base_ms": 20}');
SELECT distill.annotate('cqa', 'chaos', 'SELECT id, input FROM cqa', background => false) > 0 AS done;
SELECT status, count(*), sum(attempts) > count(*) AS retried
FROM distill.annotations WHERE teacher = 'chaos' GROUP BY status;

-- the parser agrees with the paper's own parse of these replies
SELECT count(*) FILTER (WHERE a.label = c.teacher_label) AS agree, count(*) AS n
FROM distill.annotations a JOIN cqa c ON c.id = a.item_id WHERE a.teacher = 'chaos';

-- raw text, latency and token counts are kept
SELECT count(*) FILTER (WHERE raw_output IS NOT NULL AND latency_ms > 0
                          AND prompt_tokens > 0 AND completion_tokens > 0) AS complete
FROM distill.annotations WHERE teacher = 'chaos';

-- a re-run sends nothing: everything is already ok
SELECT distill.annotate('cqa', 'chaos', 'SELECT id, input FROM cqa', background => false) > 0 AS done;

-- Ollama, and SVAMP's equations
SELECT distill.create_teacher('llama', 'http://127.0.0.1:8808', 'palm', api => 'ollama');
SELECT distill.annotate('svamp', 'llama', 'SELECT id, input FROM svamp', background => false) > 0 AS done;
SELECT a.status, count(*), count(*) FILTER (WHERE a.label = s.teacher_label) AS same_as_paper
FROM distill.annotations a JOIN svamp s ON s.id = a.item_id
WHERE a.teacher = 'llama' GROUP BY a.status ORDER BY a.status;
SELECT a.label, s.teacher_label FROM distill.annotations a JOIN svamp s ON s.id = a.item_id
WHERE a.teacher = 'llama' AND a.label <> s.teacher_label ORDER BY a.item_id LIMIT 5;

-- a reply cut off by the token limit inside its answer is not an answer
CREATE TABLE svamp_cut AS
  SELECT doc->>'id' AS id, doc->>'input' AS input FROM raw_rows WHERE false;
\copy raw_rows FROM 'test/data/svamp_cut_off.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
INSERT INTO svamp_cut SELECT doc->>'id', doc->>'input' FROM raw_rows WHERE doc->>'id' = 'svamp-train-319';
SELECT distill.annotate('svamp', 'llama', 'SELECT id, input FROM svamp_cut', background => false) > 0 AS done;
SELECT item_id, status, label, error, raw_output IS NOT NULL AS kept_raw
FROM distill.annotations WHERE item_id = 'svamp-train-319';

-- A teacher that always fails: every item 'failed' with the reason, none dropped.
SELECT distill.create_teacher('dead', 'http://127.0.0.1:8808/faults/p500=1/v1', 'palm',
  options => '{"concurrency": 8, "max_retries": 2, "retry_base_ms": 5}');
SELECT distill.annotate('cqa', 'dead', 'SELECT id, input FROM cqa LIMIT 20', background => false) > 0 AS done;
SELECT status, error, attempts, raw_output, count(*)
FROM distill.annotations WHERE teacher = 'dead' GROUP BY 1, 2, 3, 4;

-- a re-run retries the failed items and counts their attempts
SELECT distill.annotate('cqa', 'dead', 'SELECT id, input FROM cqa LIMIT 20', background => false) > 0 AS done;
SELECT DISTINCT attempts FROM distill.annotations WHERE teacher = 'dead';

-- A hung teacher is cut off at timeout_ms.
SELECT distill.create_teacher('hung', 'http://127.0.0.1:8808/faults/hang=1/v1', 'palm',
  options => '{"concurrency": 8, "timeout_ms": 300, "max_retries": 0}');
SELECT distill.annotate('cqa', 'hung', 'SELECT id, input FROM cqa LIMIT 8', background => false) > 0 AS done;
SELECT status, error, http_failed, count(*) FROM (
  SELECT status, error, raw_output IS NULL AS http_failed FROM distill.annotations WHERE teacher = 'hung') s
GROUP BY 1, 2, 3;

-- A cancel ends a running annotation and, being one statement, it rolls back.
-- The teacher never answers (its hang lasts a day, the timeout an hour), so
-- only the cancel can end the statement: a cancel seen late is seen never,
-- and the run fails on test/run.sh's limit on the whole of pg_regress.
SELECT distill.create_teacher('hung_long', 'http://127.0.0.1:8808/faults/hang=1,hang_s=86400/v1', 'palm',
  options => '{"timeout_ms": 3600000, "max_retries": 0}');
CREATE FUNCTION cancelled_annotate(teacher text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM distill.annotate('cqa', teacher, 'SELECT id, input FROM cqa LIMIT 4', background => false);
    RETURN 'finished';
EXCEPTION WHEN query_canceled THEN
    RETURN SQLERRM;
END $$;
SET statement_timeout = '500ms';
SELECT cancelled_annotate('hung_long');
RESET statement_timeout;
SELECT count(*) FROM distill.annotations WHERE teacher = 'hung_long';

-- A wrong key: 'failed' rows that say 401, and the key shows nowhere.
SELECT distill.create_teacher('wrong_key', 'http://127.0.0.1:8808/faults/key=sk-test-123/v1', 'palm',
  api_key_env => 'DISTILL_WRONG_KEY');
SELECT distill.annotate('cqa', 'wrong_key', 'SELECT id, input FROM cqa LIMIT 5', background => false) > 0 AS done;
SELECT status, error, attempts, count(*) FROM distill.annotations WHERE teacher = 'wrong_key' GROUP BY 1, 2, 3;
SELECT count(*) AS leaks FROM distill.annotations a
WHERE strpos(a::text, 'sk-wrong-' || '456') > 0 OR strpos(a::text, 'sk-test-' || '123') > 0;
SELECT count(*) AS leaks FROM pg_stat_activity
WHERE strpos(query, 'sk-wrong-' || '456') > 0 OR strpos(query, 'sk-test-' || '123') > 0;
SELECT count(*) AS leaks FROM distill.teachers t WHERE strpos(t::text, 'sk-wrong-' || '456') > 0;

-- Inputs the teacher has no answer for are kept as 'unparsed', with the raw reply.
SELECT distill.create_teacher('palm', 'http://127.0.0.1:8808/v1', 'palm');
SELECT distill.annotate('cqa', 'palm', $$SELECT 'u' || i, 'Unknown question ' || i FROM generate_series(1, 3) i$$,
                        background => false) > 0 AS done;
SELECT item_id, status, error, raw_output FROM distill.annotations
WHERE teacher = 'palm' ORDER BY item_id;

-- Any id type goes; ids are compared as text.
SELECT distill.annotate('cqa', 'palm', 'SELECT 1000 + row_number() OVER (), input FROM cqa LIMIT 2',
                        background => false) > 0 AS done;

-- The source is read a batch of 1000 rows at a time, and checked whole
-- (ids unique and not NULL) before the first request: a duplicate in the
-- third batch costs no teacher call.
SELECT distill.create_teacher('echo', 'http://127.0.0.1:8808/faults/echo=1/v1', 'palm',
                              options => '{"concurrency": 16}');
SELECT distill.annotate('cqa', 'echo', $$SELECT 'e' || i, 'Echo ' || i || '. So the answer is ' || i
                                         FROM generate_series(1, 2500) i$$,
                        background => false) > 0 AS done;
SELECT count(*), count(DISTINCT item_id), bool_and(status = 'ok' AND label = substr(item_id, 2)) AS answered
FROM distill.annotations WHERE teacher = 'echo';
SELECT distill.annotate('cqa', 'echo', $$SELECT CASE i WHEN 2400 THEN 'f1' ELSE 'f' || i END, 'Echo ' || i
                                         FROM generate_series(1, 2500) i$$,
                        background => false);
SELECT count(*) AS sent FROM distill.annotations WHERE teacher = 'echo' AND item_id LIKE 'f%';
-- a re-run of a part skips what is done and sends the rest
SELECT distill.annotate('cqa', 'echo', $$SELECT 'e' || i, 'Echo ' || i || '. So the answer is ' || i
                                         FROM generate_series(2001, 3200) i$$,
                        background => false) > 0 AS done;
SELECT count(*) AS echoed FROM distill.annotations WHERE teacher = 'echo';
SELECT distill.drop_teacher('echo', cascade => true);

-- Source mistakes
SELECT distill.annotate('cqa', 'palm', 'SELECT id FROM cqa', background => false);
SELECT distill.annotate('cqa', 'palm', 'SELECT id, input, 1 FROM cqa', background => false);
SELECT distill.annotate('cqa', 'palm', 'SELECT id, input FROM no_such_table', background => false);
SELECT distill.annotate('cqa', 'palm', 'SELECT id, input FROM', background => false);
SELECT distill.annotate('cqa', 'palm', 'UPDATE cqa SET input = input', background => false);
SELECT distill.annotate('cqa', 'palm', 'SELECT 1; SELECT 2', background => false);
SELECT distill.annotate('cqa', 'palm', $$SELECT 'same', input FROM cqa LIMIT 2$$, background => false);
SELECT distill.annotate('cqa', 'palm', 'SELECT NULL::text, input FROM cqa LIMIT 1', background => false);
SELECT distill.annotate('cqa', 'palm', 'SELECT id, NULL::text FROM cqa LIMIT 1', background => false);
SELECT distill.annotate('cqa', 'nobody', 'SELECT id, input FROM cqa', background => false);
SELECT distill.annotate('nothing', 'palm', 'SELECT id, input FROM cqa', background => false);

-- An empty source is fine.
SELECT distill.annotate('cqa', 'palm', 'SELECT id, input FROM cqa WHERE false', background => false) > 0 AS done;

-- every synchronous run is in distill.jobs
SELECT kind, status, count(*) FROM distill.jobs WHERE id > :jobs_before GROUP BY 1, 2;

-- dropping what has annotations needs cascade
SELECT distill.drop_task('cqa');
SELECT distill.drop_task('cqa', cascade => true);
SELECT distill.drop_task('svamp', cascade => true);
SELECT distill.drop_teacher(name) FROM distill.teachers;
SELECT count(*) FROM distill.annotations;
DROP TABLE raw_rows, cqa, svamp, svamp_cut;
DROP FUNCTION cancelled_annotate;
