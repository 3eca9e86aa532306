-- The main job on the bundled sample: annotate CommonsenseQA questions with
-- the replay teacher (recorded PaLM 540B replies), then look at the results.
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;

DROP EXTENSION IF EXISTS distill CASCADE;
CREATE EXTENSION distill;

\echo '== 1. sample data: 200 CommonsenseQA questions (test/data/cqa_sample.jsonl)'
CREATE TEMP TABLE cqa_raw (doc jsonb);
\copy cqa_raw FROM 'test/data/cqa_sample.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
CREATE TEMP TABLE questions AS
  SELECT doc->>'id' AS id, doc->>'input' AS body, doc->>'label' AS gold FROM cqa_raw;

\echo '== 2. a teacher and a task'
\o /dev/null
SELECT distill.create_teacher('palm', :'teacher_url', 'palm-540b',
                              options => '{"concurrency": 8}');
SELECT distill.create_task('cqa', 'Answer the question by choosing one of the answer choices.',
  examples => $$[{"input": "Where would you put a plate after washing it?\nAnswer Choices:\n(a) table\n(b) cupboard\n(c) restaurant\n(d) sink\n(e) dishwasher",
                  "rationale": "The answer must be where clean plates are kept. Of the above choices, only a cupboard is where clean plates are stored.",
                  "label": "(b) cupboard"}]$$);
\o

\echo '== 3. annotate every question'
\timing on
SELECT distill.annotate('cqa', 'palm', 'SELECT id, body FROM questions', background => false) AS job;
\timing off
SELECT status, message FROM distill.jobs ORDER BY id DESC LIMIT 1;

\echo '== 4. the annotations'
SELECT status, count(*) FROM distill.annotations GROUP BY status ORDER BY status;
SELECT item_id, left(rationale, 70) AS rationale, label
FROM distill.annotations ORDER BY item_id LIMIT 5;
SELECT round(100 * avg((a.label = q.gold)::int), 1) AS teacher_accuracy_pct,
       round(avg(a.latency_ms)::numeric, 1) AS mean_latency_ms,
       sum(a.prompt_tokens) AS prompt_tokens, sum(a.completion_tokens) AS completion_tokens
FROM distill.annotations a JOIN questions q ON q.id = a.item_id;
