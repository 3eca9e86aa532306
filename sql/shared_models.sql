-- distill.shared_models: one copy of a model's weights per server, in a
-- file under the data directory that every backend predicting with it maps
\set SHOW_CONTEXT never
SHOW distill.shared_models;

CREATE TABLE shared_reviews AS
SELECT i AS id, CASE WHEN i % 2 = 0 THEN 'A joy, a delight.' ELSE 'A waste, a bore.' END AS body,
       CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END AS label
FROM generate_series(1, 40) i;
SELECT distill.create_task('shared_sentiment', 'Positive or negative?', ARRAY['positive', 'negative']);
SET client_min_messages = warning;
SELECT distill.train(name, 'shared_sentiment', 'finetune', 'SELECT body AS input, label FROM shared_reviews',
                     params => '{"d_model": 16, "layers": 1, "heads": 2, "epochs": 2, "vocab_size": 280,
                                 "seed": 1}',
                     background => false) > 0 AS trained
FROM unnest(ARRAY['sharer', 'other_sharer']) name;
RESET client_min_messages;

-- The image of a model version, as a path in the data directory; its size
-- when it is there; whether this backend maps it
CREATE FUNCTION shared_image(model text, version integer) RETURNS text
LANGUAGE sql AS $$
    SELECT format('pg_dynshmem/distill/%s/%s.image', d.oid, m.id)
    FROM distill.models m, pg_database d
    WHERE m.name = model AND m.version = shared_image.version AND d.datname = current_database() $$;
CREATE FUNCTION shared_images(model text) RETURNS TABLE (version integer, bytes bigint)
LANGUAGE sql AS $$
    SELECT m.version, (pg_stat_file(shared_image(m.name, m.version), true)).size
    FROM distill.models m
    WHERE m.name = model AND (pg_stat_file(shared_image(m.name, m.version), true)).size IS NOT NULL
    ORDER BY 1 $$;
CREATE FUNCTION mapped(path text) RETURNS boolean
LANGUAGE sql AS $$
    SELECT count(*) > 0 FROM regexp_split_to_table(pg_read_file('/proc/self/maps'), E'\n') l
    WHERE l LIKE '%/' || path $$;
-- Files of a model's versions that are not images: writers' temporary files
CREATE FUNCTION shared_leftovers(model text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*) FROM distill.models m,
           pg_ls_dir(regexp_replace(shared_image(m.name, m.version), '/[^/]*$', '')) f
    WHERE m.name = model AND f LIKE m.id || '.image.%' $$;

-- The first prediction writes the image, and the backend maps it
SELECT count(*) AS no_image_yet FROM shared_images('sharer');
SELECT distill_predict_proba('sharer', 'A joy.') AS v1_proba \gset
SELECT version, bytes > 4096 AS has_weights FROM shared_images('sharer');
SELECT mapped(shared_image('sharer', 1)) AS mapped_here;
SELECT bytes AS shared_bytes FROM distill.model_cache() WHERE model = 'sharer' \gset
SELECT (pg_stat_file(shared_image('sharer', 1))).modification AS written \gset

-- Another session maps the same file, written once
\c
SELECT distill_predict_proba('sharer', 'A joy.') = :'v1_proba' AS same_answer;
SELECT mapped(shared_image('sharer', 1)) AS mapped_here,
       (pg_stat_file(shared_image('sharer', 1))).modification = :'written' AS same_file;

-- Without sharing, a backend loads the weights into its own memory
\c
SET distill.shared_models = off;
SELECT distill_predict_proba('sharer', 'A joy.') = :'v1_proba' AS same_answer;
SELECT mapped(shared_image('sharer', 1)) AS mapped_here;
SELECT bytes > 2 * :shared_bytes AS more_memory FROM distill.model_cache() WHERE model = 'sharer';
RESET distill.shared_models;

-- A parallel query's workers map it too (here the workers alone predict,
-- and the other model has no image yet: they write it)
SET distill.shared_models = off;
SELECT string_agg(distill_predict_proba('other_sharer', body)::text, ' ' ORDER BY id) AS serial
FROM shared_reviews WHERE id <= 2 \gset
RESET distill.shared_models;
SELECT count(*) AS other_image_yet FROM shared_images('other_sharer');
\c
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT distill_predict_proba('other_sharer', body) FROM shared_reviews;
SELECT string_agg(p::text, ' ' ORDER BY id) = :'serial' AS same_answers
FROM (SELECT id, distill_predict_proba('other_sharer', body) p FROM shared_reviews WHERE id <= 2) s;
SELECT count(*) FILTER (WHERE distill_predict('other_sharer', body) IS NOT NULL) AS predicted
FROM shared_reviews;
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET parallel_leader_participation;
SELECT version FROM shared_images('other_sharer');
SELECT shared_leftovers('other_sharer') AS leftovers;

-- A new version is a new image, with the new weights (as a backend of its
-- own loads them); the image of the version no longer deployed goes
SET client_min_messages = warning;
SELECT distill.train('sharer', 'shared_sentiment', 'finetune', 'SELECT body AS input, label FROM shared_reviews',
                     params => '{"d_model": 16, "layers": 1, "heads": 2, "epochs": 2, "vocab_size": 280,
                                 "seed": 2}',
                     background => false) > 0 AS trained;
RESET client_min_messages;
SELECT distill_predict_proba('sharer', 'A joy.') AS v2_proba \gset
SELECT :'v2_proba' <> :'v1_proba' AS new_weights;
SELECT version FROM shared_images('sharer');
\c
SET distill.shared_models = off;
SELECT distill_predict_proba('sharer', 'A joy.') = :'v2_proba' AS as_loaded;
RESET distill.shared_models;
-- back to version 1: its image is written again, version 2's goes
SELECT distill.deploy('sharer', 1);
SELECT distill_predict_proba('sharer', 'A joy.') = :'v1_proba' AS version_1_again;
SELECT version FROM shared_images('sharer');

-- A damaged image is noticed and written again, the answers unchanged
\c
SELECT format('COPY (SELECT %L) TO %L', 'not an image',
              current_setting('data_directory') || '/' || shared_image('sharer', 1)) AS damage \gset
:damage;
SELECT bytes AS damaged_bytes FROM shared_images('sharer');
SELECT distill_predict_proba('sharer', 'A joy.') = :'v1_proba' AS same_answer;
SELECT version, bytes > 4096 AS has_weights FROM shared_images('sharer');

-- A writer's temporary file that outlived it (a crash) goes at the next sweep
SELECT format('COPY (SELECT 1) TO %L',
              current_setting('data_directory') || '/' || shared_image('sharer', 1) || '.4242.tmp')
       AS leftover \gset
:leftover;
SELECT shared_leftovers('sharer') AS leftovers;
\c
SELECT distill_predict('sharer', 'A joy.') IS NOT NULL AS predicted;
SELECT shared_leftovers('sharer') AS leftovers;

-- A dropped model's image goes at the next sweep: the next backend's
SELECT shared_image('sharer', 1) AS sharer_image \gset
SELECT distill.drop_model('sharer');
SELECT (pg_stat_file(:'sharer_image', true)).size > 0 AS still_there;
\c
SELECT distill_predict('other_sharer', 'A joy.') IS NOT NULL AS predicted;
SELECT (pg_stat_file(:'sharer_image', true)).size IS NULL AS gone;

-- Turning it off is for superusers: it decides what the server writes
CREATE ROLE shared_models_user;
SET ROLE shared_models_user;
SET distill.shared_models = off;
RESET ROLE;
DROP ROLE shared_models_user;

SELECT distill.drop_model('other_sharer');
SELECT distill.drop_task('shared_sentiment');
DROP FUNCTION shared_image, shared_images, mapped, shared_leftovers;
DROP TABLE shared_reviews;
