-- Bounded memory and time, whatever the input: long inputs and candidates,
-- many candidates, weights that cannot be stored or are not numbers, the
-- training's memory_mb and cancels, the model cache, distill.threads
\set SHOW_CONTEXT never

CREATE TABLE limit_reviews AS
SELECT i AS id,
       format('%s %s.', (ARRAY['The film', 'This book', 'The meal'])[1 + i % 3],
              CASE WHEN i % 2 = 0 THEN 'was wonderful' ELSE 'was awful' END) AS body,
       CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END AS label
FROM generate_series(1, 60) i;
SELECT distill.create_task('limits', 'Is the review positive or negative?',
                           ARRAY['positive', 'negative']);
SET client_min_messages = warning;
SELECT distill.train('limiter', 'limits', 'distill', 'SELECT body AS input, label FROM limit_reviews',
                     params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 2, "vocab_size": 300,
                                 "seed": 3}',
                     background => false) > 0 AS trained;
RESET client_min_messages;

-- A long input is read only as far as the model reads (max_input_tokens):
-- the answer on 20 MB is the one on its first 4 KB.
SELECT distill.tokenize('limiter', repeat('abc ', 5000000)) =
       distill.tokenize('limiter', repeat('abc ', 1000)) AS same_tokens;
SELECT distill_predict('limiter', repeat('The film was wonderful. ', 1000000)) =
       distill_predict('limiter', repeat('The film was wonderful. ', 1000)) AS same_answer;
SELECT distill_predict_proba('limiter', repeat('abc ', 5000000)) =
       distill_predict_proba('limiter', repeat('abc ', 1000)) AS same_probabilities;
-- and a candidate as far as max_target_tokens
SELECT (distill_predict_proba('limiter', 'The meal was awful.',
                              ARRAY['negative', repeat('abc ', 5000000)]) ->> 'negative') =
       (distill_predict_proba('limiter', 'The meal was awful.',
                              ARRAY['negative', repeat('abc ', 1000)]) ->> 'negative') AS same_score;

-- At most 1000 candidates a call
SELECT distill_predict('limiter', 'The film was wonderful.', array_agg('c' || i)) IS NOT NULL AS answered
FROM generate_series(1, 1000) i;
SELECT distill_predict('limiter', 'The film was wonderful.', array_agg('c' || i))
FROM generate_series(1, 1001) i;
SELECT distill_predict_proba('limiter', 'x', array_agg(i::text)) FROM generate_series(1, 5000) i;
SELECT * FROM distill.evaluate('limiter', $$SELECT 'x' AS input, 'c1' AS label,
                                           (SELECT array_agg('c' || i) FROM generate_series(1, 1001) i) AS choices$$);

-- Weights that are not numbers (a table owner can write any bytea): refused
-- at load as corrupt, with the checksum right; so is any damaged row.
CREATE FUNCTION pg_temp.crc32c(data bytea) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    crc bigint := 4294967295;
    byte_crc bigint[] := '{}';
    c bigint;
BEGIN
    FOR n IN 0..255 LOOP
        c := n;
        FOR k IN 1..8 LOOP
            c := CASE WHEN c & 1 = 1 THEN (c >> 1) # 2197175160 ELSE c >> 1 END;  -- 0x82F63B78
        END LOOP;
        byte_crc := byte_crc || c;
    END LOOP;
    FOR i IN 0 .. length(data) - 1 LOOP
        crc := byte_crc[((crc # get_byte(data, i)) & 255) + 1] # (crc >> 8);
    END LOOP;
    RETURN crc # 4294967295;
END $$;
CREATE FUNCTION pg_temp.le32(v bigint) RETURNS bytea LANGUAGE sql AS $$
    SELECT set_byte(set_byte(set_byte(set_byte('\x00000000'::bytea,
           0, (v & 255)::int), 1, ((v >> 8) & 255)::int), 2, ((v >> 16) & 255)::int), 3, (v >> 24)::int) $$;
-- A copy of model source as version 1 of model target, with its last
-- weights (of model.norm.weight, the last tensor, as many as value holds
-- floats) replaced by value when it is given.  The weights' data is one
-- chunk here; the header in models.weights ends in the data's CRC-32C,
-- then the CRC-32C of the model header (after the 20-byte student header).
CREATE FUNCTION pg_temp.copy_model(source text, target text, value bytea DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    m distill.models;
    data bytea;
    header bytea;
    copy_id bigint := nextval('distill.models_id_seq');
BEGIN
    SELECT * INTO m FROM distill.models WHERE name = source;
    SELECT c.data INTO data FROM distill.model_chunks c WHERE c.model_id = m.id AND c.seq = 0;
    header := m.weights;
    IF value IS NOT NULL THEN
        data := overlay(data PLACING value FROM length(data) + 1 - length(value));
        header := overlay(header PLACING pg_temp.le32(pg_temp.crc32c(data)) FROM length(header) - 7);
        header := overlay(header PLACING pg_temp.le32(pg_temp.crc32c(
                      substring(header FROM 21 FOR length(header) - 24))) FROM length(header) - 3);
    END IF;
    INSERT INTO distill.model_chunks (model_id, seq, data) VALUES (copy_id, 0, data);
    INSERT INTO distill.models (id, name, version, owner, task, method, params, labels, n_params,
                                tokenizer, weights, metrics)
    VALUES (copy_id, target, 1, m.owner, m.task, m.method, m.params, m.labels, m.n_params,
            m.tokenizer, header, m.metrics);
END $$;
SELECT pg_temp.copy_model('limiter', 'poisoned', '\x0000c07f');    -- NaN
-- (the weight before the last, in place of the last)
SELECT pg_temp.copy_model('limiter', 'unpoisoned',
                          (SELECT substring(c.data FROM length(c.data) - 7 FOR 4)
                           FROM distill.model_chunks c JOIN distill.models m ON m.id = c.model_id
                           WHERE m.name = 'limiter'));
SELECT distill_predict('unpoisoned', 'The film was wonderful.') AS patching_works;
SELECT distill_predict('poisoned', 'The film was wonderful.');
SELECT distill_predict_proba('poisoned', 'The film was wonderful.');
DO $$
BEGIN
    PERFORM distill_predict_proba('poisoned', 'x');
EXCEPTION WHEN data_corrupted THEN
    RAISE NOTICE 'data_corrupted: %', SQLERRM;
END $$;
-- Weights that are finite numbers but overflow float arithmetic (every gain
-- of the final norm, 32 of them, the largest float) load, and scoring
-- refuses them with the SQLSTATE of a damaged model, not of an internal error
SELECT pg_temp.copy_model('limiter', 'overflowing', decode(repeat('ffff7f7f', 32), 'hex'));
DO $$
BEGIN
    PERFORM distill_predict('overflowing', 'The film was wonderful.');
EXCEPTION WHEN data_corrupted THEN
    RAISE NOTICE 'data_corrupted: %', SQLERRM;
END $$;

-- Training parameters that are not numbers, and a model too large to store
SELECT distill.train('m', 'limits', 'distill', 'SELECT body AS input, label FROM limit_reviews',
                     rationale_weight => 'NaN', background => false);
SELECT distill.train('m', 'limits', 'step_by_step', 'SELECT body AS input, label FROM limit_reviews',
                     rationale_weight => 'Infinity', background => false);
SELECT distill.train('m', 'limits', 'distill', 'SELECT body AS input, label FROM limit_reviews',
                     params => '{"d_model": 2048, "layers": 16, "heads": 16, "vocab_size": 65536}',
                     background => false);
SELECT count(*) AS no_job_left FROM distill.jobs WHERE args->>'model' = 'm';

-- memory_mb bounds the model's state: weights, gradients, AdamW's moments,
-- the best epoch's copy
SELECT distill.train('m', 'limits', 'distill', 'SELECT body AS input, label FROM limit_reviews',
                     params => '{"d_model": 1024, "heads": 8, "layers": 2, "vocab_size": 300, "memory_mb": 16}',
                     background => false);
-- then the tokenizer's training (here 15,000 distinct words)
SELECT distill.train('m', 'limits', 'distill',
                     $$SELECT string_agg(translate(md5(i || '-' || j), '0123456789', 'ghijklmnop'), ' ') AS input,
                              'positive' AS label
                       FROM generate_series(1, 3000) i, generate_series(1, 5) j GROUP BY i$$,
                     params => '{"d_model": 32, "heads": 2, "layers": 1, "vocab_size": 300, "memory_mb": 16}',
                     background => false);
-- and the activations of one sequence (of 4,000 tokens here)
SELECT distill.train('m', 'limits', 'distill',
                     'SELECT repeat(body || '' '', 1000) AS input, label FROM limit_reviews',
                     params => '{"d_model": 512, "heads": 8, "layers": 1, "vocab_size": 300,
                                 "memory_mb": 80, "max_input_tokens": 4000}',
                     background => false);
-- which is a limit (program_limit_exceeded), not a wrong argument
DO $$
BEGIN
    PERFORM distill.train('m', 'limits', 'distill', 'SELECT body AS input, label FROM limit_reviews',
                          params => '{"d_model": 1024, "heads": 8, "layers": 2, "vocab_size": 300, "memory_mb": 16}',
                          background => false);
EXCEPTION WHEN program_limit_exceeded THEN
    RAISE NOTICE 'program_limit_exceeded: %', SQLERRM;
END $$;
-- A budget that holds fewer sequences than a batch runs each batch as
-- micro-batches: metrics say how many sequences at a time
SET client_min_messages = warning;
SELECT distill.train('m_' || mb, 'limits', 'distill',
                     'SELECT repeat(body || '' '', 40) AS input, label FROM limit_reviews',
                     params => format('{"d_model": 64, "heads": 2, "layers": 1, "vocab_size": 300,
                                        "batch_size": 16, "epochs": 1, "max_input_tokens": 256,
                                        "memory_mb": %s}', mb)::jsonb,
                     background => false) > 0 AS trained
FROM (VALUES (32), (256)) budgets (mb);
RESET client_min_messages;
SELECT name, params->>'memory_mb' AS memory_mb, params->>'batch_size' AS batch_size,
       metrics->>'micro_batch' AS micro_batch
FROM distill.models WHERE name IN ('m_32', 'm_256') ORDER BY name;
SELECT distill.drop_model(name) FROM (VALUES ('m_32'), ('m_256')) models (name);

-- A cancel reaches training while it sets up: the tokenizer's training on
-- 6 MB of distinct words takes seconds
CREATE TABLE long_rows AS
SELECT string_agg(translate(md5(i || '-' || j), '0123456789', 'ghijklmnop'), ' ') AS input,
       CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END AS label
FROM generate_series(1, 20000) i, generate_series(1, 10) j GROUP BY i;
SET statement_timeout = '1s';
SELECT distill.train('m', 'limits', 'distill', 'SELECT input, label FROM long_rows',
                     params => '{"memory_mb": 2048, "vocab_size": 65536, "epochs": 1}', background => false);
RESET statement_timeout;
SELECT count(*) AS no_model_m FROM distill.models WHERE name = 'm';

-- The model cache holds at most distill.model_cache_mb between
-- transactions; a transaction keeps what it uses until it ends.  (It
-- counts a backend's own memory: models loaded into it, here, rather than
-- shared, whose weights are not the backend's.)
SET distill.shared_models = off;
SELECT count(pg_temp.copy_model('limiter', 'copy_' || i)) FROM generate_series(1, 12) i;
SELECT distill_predict('copy_1', 'The film was wonderful.') IS NOT NULL AS loaded;
SELECT bytes AS model_bytes FROM distill.model_cache() WHERE model = 'copy_1' \gset
SELECT :model_bytes > 2 * bytes AS shared_weights_not_counted
FROM distill.model_cache() WHERE model = 'limiter';
SELECT set_config('distill.model_cache_mb', '1', false) AS model_cache_mb;
SELECT 12 * :model_bytes > 1024 * 1024 AS twelve_do_not_fit;
BEGIN;
SELECT count(distill_predict('copy_' || i, 'The film was wonderful.')) FROM generate_series(1, 12) i;
SELECT count(*) AS held, bool_and(in_use) AS in_use FROM distill.model_cache() WHERE model LIKE 'copy_%';
COMMIT;
SELECT count(*) BETWEEN 1 AND 11 AS some_evicted, sum(bytes) <= 1024 * 1024 AS within_bound,
       bool_or(in_use) AS in_use
FROM distill.model_cache();
-- one statement is a transaction too
SELECT count(distill_predict('copy_' || i, 'The film was wonderful.')) FROM generate_series(1, 12) i;
SELECT sum(bytes) <= 1024 * 1024 AS within_bound FROM distill.model_cache();
SET distill.model_cache_mb = 0;
SELECT distill_predict('limiter', 'The film was wonderful.');
SELECT count(*) AS cached FROM distill.model_cache();
RESET distill.model_cache_mb;
RESET distill.shared_models;

-- distill.threads: at most the machine's cores
\set VERBOSITY terse
SET distill.threads = 1000;
SET distill.threads = 2000;
\set VERBOSITY default
SHOW distill.threads;

SELECT distill.drop_model(name) FROM (SELECT DISTINCT name FROM distill.models) m;
SELECT distill.drop_task('limits');
DROP TABLE limit_reviews, long_rows;
