-- distill.train, the models table, prediction, the model cache, evaluation
\set SHOW_CONTEXT never
\i test/helpers.psql

-- jobs before this test's (other tests share the database)
SELECT coalesce(max(id), 0) AS jobs_before FROM distill.jobs \gset

-- A small synthetic task a tiny student can learn in seconds.
CREATE TABLE reviews AS
SELECT i AS id,
       format('%s %s.', (ARRAY['The film', 'This book', 'The meal', 'Our trip', 'The hotel'])[1 + i % 5],
              CASE WHEN i % 2 = 0
                   THEN (ARRAY['was wonderful', 'felt great', 'was a joy', 'made us happy'])[1 + i % 4]
                   ELSE (ARRAY['was awful', 'felt terrible', 'was a waste', 'made us sad'])[1 + i % 4] END) AS body,
       CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END AS label,
       CASE WHEN i % 2 = 0 THEN 'Words like that praise it.' ELSE 'Words like that complain.' END AS rationale
FROM generate_series(1, 120) i;

SELECT distill.create_task('sentiment', 'Is the review positive or negative?',
                           ARRAY['positive', 'negative']);

SET client_min_messages = warning;
SELECT distill.train('critic', 'sentiment', 'step_by_step',
                     'SELECT body AS input, label, rationale FROM reviews',
                     params => '{"d_model": 32, "layers": 2, "heads": 2, "epochs": 8, "batch_size": 16,
                                 "vocab_size": 300, "lr": 0.003, "dropout": 0, "seed": 7}',
                     background => false) > 0 AS trained;
RESET client_min_messages;

SELECT name, version, task, method, labels, n_params > 0 AS has_params,
       length(tokenizer) > 0 AS has_tokenizer,
       (SELECT sum(length(c.data)) FROM distill.model_chunks c WHERE c.model_id = m.id)
           = 4 * n_params AS has_weights,
       params->>'d_model' AS d_model, params->>'rationale_weight' AS rationale_weight,
       (metrics->>'train_examples')::int + (metrics->>'validation_examples')::int AS examples,
       (metrics->>'rationale_examples')::int AS rationale_examples
FROM distill.models m;

-- progress: a row per logging step and per epoch
SELECT count(DISTINCT epoch) AS epochs, count(*) FILTER (WHERE val_accuracy IS NOT NULL) AS epoch_rows,
       bool_and(label_loss > 0) AS label_losses, bool_and(rationale_loss > 0) AS rationale_losses
FROM distill.training_log;
SELECT (SELECT label_loss FROM distill.training_log ORDER BY step DESC LIMIT 1) <
       (SELECT label_loss FROM distill.training_log ORDER BY step LIMIT 1) AS loss_went_down;

-- prediction inside ordinary queries
SELECT avg((distill_predict('critic', body) = label)::int) > 0.9 AS learned FROM reviews;
SELECT distill_predict('critic', 'The film was wonderful.');
SELECT distill_predict('critic', 'The meal felt terrible.');
SELECT jsonb_object_keys(distill_predict_proba('critic', 'The film was wonderful.')) AS label ORDER BY 1;
SELECT abs((SELECT sum(value::float8) FROM jsonb_each_text(distill_predict_proba('critic', body))) - 1) < 1e-6 AS sums_to_one
FROM reviews LIMIT 3;
SELECT distill_predict('critic', 'Our trip was a joy.', ARRAY['negative', 'positive']) AS choice;
SELECT jsonb_object_keys(distill_predict_proba('critic', 'x', ARRAY['positive', 'negative', 'neutral'])) ORDER BY 1;
SELECT length(distill_explain('critic', 'The hotel made us sad.')) > 0 AS explains;
SELECT distill_predict('critic', NULL) IS NULL AS strict;

-- the tokens the model reads: they spell the prefix; the input is cut at
-- max_input_tokens; a lone byte of a multibyte character shows as <0xNN>
SELECT array_to_string(distill.tokenize('critic', 'Our trip felt great.'), '') AS prefix,
       array_to_string(distill.tokenize('critic', 'Our trip felt great.', 'explain'), '') AS explain_prefix;
SELECT cardinality(distill.tokenize('critic', repeat('Our trip felt great. ', 100)))
       - cardinality(distill.tokenize('critic', '')) = (params->>'max_input_tokens')::int AS cut
FROM distill.models WHERE name = 'critic';
SELECT distill.tokenize('critic', 'Prix: 5 €');

-- evaluation, with per-label precision and recall
SELECT n, accuracy > 0.9 AS accurate, jsonb_object_keys(per_label) AS label
FROM distill.evaluate('critic', 'SELECT body AS input, label FROM reviews') ORDER BY label;
SELECT n, accuracy > 0.9 AS accurate, per_label
FROM distill.evaluate('critic', $$SELECT body AS input, label, ARRAY['negative', 'positive'] AS choices FROM reviews$$);

-- parallel query gives the same answers
CREATE TABLE serial_answers AS SELECT id, distill_predict('critic', body) AS answer FROM reviews;
-- (force_parallel_mode became debug_parallel_query in PostgreSQL 16)
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'on', false);
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SELECT count(*) AS differ FROM reviews r JOIN serial_answers s USING (id)
WHERE distill_predict('critic', r.body) <> s.answer;
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'off', false);
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;

-- read-only transactions (as on a hot standby) can predict
BEGIN TRANSACTION READ ONLY;
SELECT distill_predict('critic', 'The film was wonderful.');
COMMIT;

-- the backend's cache notices a new version
CREATE TABLE before_retrain AS SELECT distill_predict_proba('critic', body) AS p FROM reviews LIMIT 5;
SET client_min_messages = warning;
SELECT distill.train('critic', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews',
                     params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1, "vocab_size": 300, "seed": 8}',
                     background => false) > 0 AS trained;
RESET client_min_messages;
SELECT version, method, params->>'rationale_weight' AS rationale_weight FROM distill.models ORDER BY version;
SELECT count(*) AS unchanged FROM (SELECT distill_predict_proba('critic', body) AS p FROM reviews LIMIT 5) now
WHERE now.p IN (SELECT p FROM before_retrain);

-- a cancel ends a running training, which leaves the models as they were;
-- the training would run for hours (1000 epochs at d_model 256), so a cancel
-- seen late is seen never, and the run fails on test/run.sh's limit on the
-- whole of pg_regress
CREATE FUNCTION cancelled_train() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM distill.train('critic', 'sentiment', 'distill',
                          'SELECT body AS input, label FROM reviews, generate_series(1, 20)',
                          params => '{"d_model": 256, "layers": 4, "epochs": 1000, "vocab_size": 300}',
                          background => false);
    RETURN 'finished';
EXCEPTION WHEN query_canceled THEN
    RETURN SQLERRM;
END $$;
SET statement_timeout = '1s';
SELECT cancelled_train();
RESET statement_timeout;
SELECT max(version) AS still_version_2 FROM distill.models WHERE name = 'critic';

-- finetune on gold labels, without rationales
SET client_min_messages = warning;
SELECT distill.train('gold', 'sentiment', 'finetune', 'SELECT body AS input, label FROM reviews',
                     params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1, "vocab_size": 300}',
                     background => false) > 0 AS trained;
RESET client_min_messages;
SELECT name, method, (metrics->>'rationale_examples')::int AS rationale_examples FROM distill.models WHERE name = 'gold';

-- every training is in distill.jobs
SELECT kind, status, count(*) FROM distill.jobs WHERE id > :jobs_before GROUP BY 1, 2;

-- mistakes
SELECT distill.train('m', 'sentiment', 'magic', 'SELECT body AS input, label FROM reviews', background => false);
SELECT distill.train('m', 'sentiment', 'finetune', background => false);
SELECT distill.train('m', 'nothing', 'distill', 'SELECT body AS input, label FROM reviews', background => false);
SELECT distill.train('', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews', background => false);
SELECT distill.train(NULL, 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews', background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews',
                     params => '{"epoch": 3}', background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews',
                     params => '{"epochs": "3"}', background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews',
                     params => '{"epochs": 2.5}', background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews',
                     params => '{"epochs": 0}', background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews',
                     params => '{"d_model": 30, "heads": 4}', background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews',
                     params => '{"dropout": 1.5}', background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews',
                     params => '{"prefix_lm": 1}', background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews',
                     params => '[]', background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews',
                     params => '{"validation_metric": "value"}', background => false);
SELECT distill.train('m', 'sentiment', 'step_by_step', 'SELECT body AS input, label FROM reviews', background => false);
SELECT distill.train('m', 'sentiment', 'step_by_step', 'SELECT body AS input, label, NULL::text AS rationale FROM reviews',
                     background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS text, label FROM reviews', background => false);
SELECT distill.train('m', 'sentiment', 'distill', $$SELECT body AS input, 'maybe' AS label FROM reviews$$,
                     background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'SELECT body AS input, label FROM reviews LIMIT 1',
                     background => false);
SELECT distill.train('m', 'sentiment', 'distill', 'DELETE FROM reviews', background => false);
SELECT * FROM distill.evaluate('critic', 'DELETE FROM reviews');
SELECT distill.train('m', 'sentiment', 'distill', $$SELECT body AS input, label, 'x' AS choices FROM reviews$$,
                     background => false);
SELECT count(*) AS no_model_m FROM distill.models WHERE name = 'm';

SELECT distill_predict('nobody', 'x');
SELECT distill_predict('critic', 'x', ARRAY[]::text[]);
SELECT distill_predict('critic', 'x', ARRAY['a', NULL]);
SELECT distill_predict('critic', 'x', ARRAY[['a', 'b'], ['c', 'd']]);
SELECT * FROM distill.evaluate('critic', 'SELECT body AS input FROM reviews');
SELECT * FROM distill.evaluate('critic', 'SELECT body AS input, label FROM reviews', metric => 'fuzzy');

-- a damaged model row is refused with a clear error, never a crash
INSERT INTO distill.models (name, version, owner, task, method, params, labels, n_params, tokenizer, weights, metrics)
SELECT 'broken', 1, owner, task, method, params, labels, n_params, tokenizer,
       substring(weights FROM 1 FOR length(weights) / 2), metrics
FROM distill.models WHERE name = 'gold';
SELECT distill_predict('broken', 'x');
-- (a whole header whose data is missing)
INSERT INTO distill.models (name, version, owner, task, method, params, labels, n_params, tokenizer, weights, metrics)
SELECT 'headless', 1, owner, task, method, params, labels, n_params, tokenizer, weights, metrics
FROM distill.models WHERE name = 'gold';
SELECT distill_predict('headless', 'x');
INSERT INTO distill.models (name, version, owner, task, method, params, labels, n_params, tokenizer, weights, metrics)
SELECT 'foreign', 1, owner, task, method, params, labels, n_params, '\x00'::bytea, '\xdeadbeef'::bytea, metrics
FROM distill.models WHERE name = 'gold';
SELECT distill_predict('foreign', 'x');

-- a prediction keeps no memory: once a first query has warmed up (loaded
-- the model into the cache, compiled backend_memory()), the backend's
-- memory contexts hold the same number of bytes after each of 12,000 calls
-- in one query (a few bytes kept a call would take a new block)
SELECT count(*) AS warm_up FROM (SELECT distill_predict('critic', body), backend_memory() FROM reviews) s;
-- (LATERAL: the rounds one after the other, each over the reviews in order)
-- (min and max, whose states take no memory, unlike a count(DISTINCT)'s sort)
SELECT count(*) AS calls, max(mem) - min(mem) AS bytes_apart
FROM (SELECT i, r.id, distill_predict('critic', r.body) AS p, backend_memory() AS mem
      FROM generate_series(1, 100) i, LATERAL (SELECT id, body FROM reviews WHERE i > 0 ORDER BY id) r) s;

SELECT distill.drop_model('critic');
SELECT distill.drop_model('critic');
-- free text, validated by value: the metric is kept with the model's params
SELECT distill.create_task('sums', 'Write an equation for the total.');
SET client_min_messages = warning;
SELECT distill.train('adder', 'sums', 'distill',
                     $$SELECT format('%s apples and %s more', i % 7, i % 5) AS input,
                              format('%s + %s', i % 7, i % 5) AS label
                       FROM generate_series(1, 40) i$$,
                     params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1, "vocab_size": 300,
                                 "validation_fraction": 0.25, "validation_metric": "equation"}',
                     background => false) > 0 AS trained;
RESET client_min_messages;
SELECT params->>'validation_metric' AS validation_metric,
       (metrics->>'val_accuracy')::float8 BETWEEN 0 AND 1 AS has_accuracy,
       (metrics->>'validation_examples')::int AS validation_examples
FROM distill.models WHERE name = 'adder';

-- per-row choices: a label in another case takes the choice's spelling, and a
-- label that is none of the row's choices is skipped, with a notice
SET client_min_messages = warning;
SELECT distill.train('chooser', 'sums', 'distill',
                     $$SELECT format('%s apples', i) AS input,
                              CASE WHEN i % 10 = 0 THEN 'none' WHEN i % 2 = 0 THEN 'EVEN' ELSE 'odd' END AS label,
                              ARRAY['even', 'odd'] AS choices
                       FROM generate_series(1, 40) i$$,
                     params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1, "vocab_size": 300}',
                     background => false) > 0 AS trained;
RESET client_min_messages;
SELECT (metrics->>'train_examples')::int + (metrics->>'validation_examples')::int AS examples
FROM distill.models WHERE name = 'chooser';
SELECT distill.train('chooser', 'sums', 'distill',
                     $$SELECT 'a' AS input, 'c' AS label, ARRAY['a', 'b'] AS choices
                       FROM generate_series(1, 3)$$, background => false);

SELECT distill.drop_model(name) FROM (SELECT DISTINCT name FROM distill.models) m;
-- every model's log went with it (that of a job cancelled before it made a
-- model, as docs/jobs.md's may be once it logged its first step, stays
-- until the job is purged)
SELECT count(*) FROM distill.training_log l JOIN distill.jobs j ON j.id = l.job_id
WHERE j.status = 'succeeded';
SELECT distill.drop_task('sentiment');
SELECT distill.drop_task('sums');
DROP TABLE reviews, serial_answers, before_retrain;
DROP FUNCTION backend_memory, cancelled_train, eventually, error_of, launcher_planned;
