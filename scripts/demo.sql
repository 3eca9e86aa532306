-- The main job on the bundled sample: annotate CommonsenseQA questions with
-- the replay teacher (recorded PaLM 540B replies), train a student on the
-- rationales and labels, and let it answer held-out questions.
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;

DROP EXTENSION IF EXISTS distill CASCADE;
DROP TABLE IF EXISTS cqa_raw, questions, demo_train;
CREATE EXTENSION distill;

\echo '== 1. sample data: 200 CommonsenseQA questions (test/data/cqa_sample.jsonl)'
CREATE TABLE cqa_raw (doc jsonb);
\copy cqa_raw FROM 'test/data/cqa_sample.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
-- The last 40 questions are held out to test the student.
CREATE TABLE questions AS
  SELECT doc->>'id' AS id, doc->>'input' AS body, doc->>'label' AS gold,
         ARRAY(SELECT jsonb_array_elements_text(doc->'choices')) AS choices,
         CASE WHEN row_number() OVER () > 160 THEN 'test' ELSE 'train' END AS split
  FROM cqa_raw;

\echo '== 2. a teacher and a task'
\o /dev/null
SELECT distill.create_teacher('palm', :'teacher_url', 'palm-540b',
                              options => '{"concurrency": 8}');
SELECT distill.create_task('cqa', 'Answer the question by choosing one of the answer choices.',
  examples => $$[{"input": "Where would you put a plate after washing it?\nAnswer Choices:\n(a) table\n(b) cupboard\n(c) restaurant\n(d) sink\n(e) dishwasher",
                  "rationale": "The answer must be where clean plates are kept. Of the above choices, only a cupboard is where clean plates are stored.",
                  "label": "(b) cupboard"}]$$);
\o

-- Report a background job's progress every second until it ends.
CREATE FUNCTION pg_temp.follow(job bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    j record;
BEGIN
    LOOP
        SELECT status, progress, message INTO j FROM distill.jobs WHERE id = job;
        RAISE NOTICE 'job %: % %% (%)', job, round(100 * j.progress), coalesce(j.message, j.status);
        EXIT WHEN j.status NOT IN ('queued', 'running');
        PERFORM pg_sleep(1);
    END LOOP;
    RETURN j.status;
END $$;
SET client_min_messages = notice;

\echo '== 3. annotate every question, as a background job'
SELECT distill.annotate('cqa', 'palm', 'SELECT id, body FROM questions') AS job \gset
SELECT pg_temp.follow(:job);
SET client_min_messages = warning;
SELECT status, message FROM distill.jobs WHERE id = :job;

\echo '== 4. the annotations'
SELECT status, count(*) FROM distill.annotations GROUP BY status ORDER BY status;
SELECT item_id, left(rationale, 70) AS rationale, label
FROM distill.annotations ORDER BY item_id LIMIT 5;
SELECT round(100 * avg((a.label = q.gold)::int), 1) AS teacher_accuracy_pct,
       round(avg(a.latency_ms)::numeric, 1) AS mean_latency_ms,
       sum(a.prompt_tokens) AS prompt_tokens, sum(a.completion_tokens) AS completion_tokens
FROM distill.annotations a JOIN questions q ON q.id = a.item_id;

\echo '== 5. train a student on the teacher''s rationales and labels (step by step), in the background'
CREATE TABLE demo_train AS
  SELECT a.input, a.label, a.rationale, q.choices
  FROM distill.annotations a JOIN questions q ON q.id = a.item_id WHERE q.split = 'train';
SELECT distill.train('cqa_student', 'cqa', 'step_by_step',
  source => 'SELECT input, label, rationale, choices FROM demo_train',
  params => '{"d_model": 128, "layers": 2, "heads": 4, "epochs": 8, "vocab_size": 2048,
              "max_input_tokens": 96, "max_target_tokens": 48, "log_every": 2}') AS job \gset
SET client_min_messages = notice;
SELECT pg_temp.follow(:job);
SET client_min_messages = warning;
SELECT version, n_params, metrics->>'val_accuracy' AS val_accuracy, metrics->>'best_epoch' AS best_epoch
FROM distill.models WHERE name = 'cqa_student';
SELECT epoch, round(avg(label_loss)::numeric, 3) AS label_loss,
       round(avg(rationale_loss)::numeric, 3) AS rationale_loss,
       round(max(val_accuracy)::numeric, 3) AS val_accuracy, round(avg(tokens_per_second)) AS tokens_per_s
FROM distill.training_log GROUP BY epoch ORDER BY epoch;

\echo '== 6. the student answers held-out questions inside a SELECT'
SELECT left(replace(body, E'\n', ' '), 60) AS question,
       distill_predict('cqa_student', body, choices) AS student, gold
FROM questions WHERE split = 'test' ORDER BY id LIMIT 5;
SELECT left(distill_explain('cqa_student', body), 90) AS student_rationale
FROM questions WHERE split = 'test' ORDER BY id LIMIT 2;

\echo '== 7. student and teacher on the 40 held-out questions'
SELECT 'student (step by step)' AS who, round(100 * accuracy::numeric, 1) AS accuracy_pct
FROM distill.evaluate('cqa_student',
  $$SELECT body AS input, gold AS label, choices FROM questions WHERE split = 'test'$$)
UNION ALL
SELECT 'teacher (PaLM 540B)', round(100 * avg((a.label = q.gold)::int), 1)
FROM distill.annotations a JOIN questions q ON q.id = a.item_id WHERE q.split = 'test'
UNION ALL
SELECT 'chance (5 choices)', 20.0;
\echo 'A student trained from scratch on 160 rows knows no English: expect about chance.'
\echo 'bench/quality measures what it learns from thousands of rows.'
