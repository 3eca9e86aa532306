-- long trainings: progress in distill.jobs, checkpoints at the end of each
-- epoch, resume => true
\set SHOW_CONTEXT never

\i test/helpers.psql

CREATE TABLE reviews AS
SELECT i AS id,
       format('%s %s %s.', (ARRAY['The film', 'This book', 'The meal', 'Our trip', 'The show'])[1 + i % 5],
              (ARRAY['really', 'truly', 'quite', 'so'])[1 + i % 4],
              CASE WHEN i % 2 = 0
                   THEN (ARRAY['was wonderful', 'felt great', 'was a joy'])[1 + i % 3]
                   ELSE (ARRAY['was awful', 'felt terrible', 'was a waste'])[1 + i % 3] END) AS body,
       CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END AS label
FROM generate_series(1, 1200) i;
SELECT distill.create_task('mood', 'Is the review positive or negative?', ARRAY['positive', 'negative']);

-- the checkpoint files of this database's jobs
CREATE FUNCTION checkpoint_jobs() RETURNS SETOF bigint LANGUAGE sql AS $$
    SELECT substring(f FROM '^\d+_(\d+)\.state$')::bigint
    FROM pg_ls_dir('distill/checkpoints', true, false) f
    WHERE f LIKE (SELECT oid FROM pg_database WHERE datname = current_database()) || '\_%'
$$;

-- a training that logs the end of epoch 1 (its second row of that step)
-- waits for advisory lock 4242 first, so that a job can be stopped there
-- whatever its speed
CREATE FUNCTION hold_after_epoch_1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.epoch = 1 AND EXISTS (SELECT FROM distill.training_log l
                                 WHERE l.job_id = NEW.job_id AND l.step = NEW.step) THEN
        PERFORM pg_advisory_lock(4242);
        PERFORM pg_advisory_unlock(4242);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER hold_after_epoch_1 BEFORE INSERT ON distill.training_log
    FOR EACH ROW EXECUTE FUNCTION hold_after_epoch_1();

\set source 'SELECT body AS input, label FROM reviews ORDER BY id'
\set params '{"d_model": 256, "layers": 2, "heads": 4, "epochs": 3, "batch_size": 8, "vocab_size": 300, "lr": 0.003, "seed": 3, "log_every": 5, "validation_fraction": 0}'

-- nothing to resume yet: refused at once, in the background and here
SELECT distill.train('moody', 'mood', 'finetune', :'source', params => :'params', resume => true);
SELECT distill.train('moody', 'mood', 'finetune', :'source', params => :'params', resume => true,
                     background => false);
SELECT distill.train('moody', 'mood', 'finetune', :'source', params => :'params', resume => NULL);

-- a background training shows its progress, speed, time taken and left;
-- it saves a checkpoint after epoch 1, before it logs the epoch, and is
-- cancelled there
SELECT pg_advisory_lock(4242);
SELECT distill.train('moody', 'mood', 'finetune', :'source', params => :'params') AS job \gset
SELECT eventually(format($$SELECT message ~ '^train: epoch 1 of 3, step \d+ of 450, label loss [0-9.]+, \d+ tokens/s, [0-9a-z ]+ elapsed, about [0-9a-z ]+ left$'
                           FROM distill.jobs WHERE id = %s$$, :job), 60) AS progress_shows;
SELECT eventually($$SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted$$, 60)
       AS after_epoch_1;
SELECT array_agg(j) = ARRAY[:job]::bigint[] AS checkpoint_saved FROM checkpoint_jobs() j;
SELECT distill.cancel(:job);
SELECT pg_advisory_unlock(4242);
SELECT max(epoch) AS last_epoch FROM distill.training_log WHERE job_id = :job;

-- other arguments have no checkpoint; other rows do not fit it
SELECT distill.train('moody', 'mood', 'finetune', :'source', params => '{"epochs": 2}', resume => true);
\set resume_here 'SELECT distill.train(''moody'', ''mood'', ''finetune'', ' :'source' ', params => ' :'params' ', resume => true, background => false)'
INSERT INTO reviews VALUES (1201, 'A new review was great.', 'positive');
SELECT error_of(:'resume_here');
DELETE FROM reviews WHERE id = 1201;
UPDATE reviews SET label = 'negative' WHERE id = 8;
SELECT regexp_replace(error_of(:'resume_here'), 'fingerprint \S+ there, \S+ here', 'fingerprint X there, Y here');
UPDATE reviews SET label = 'positive' WHERE id = 8;

-- in this session, resume => true goes on from epoch 2 and leaves the
-- checkpoint where it was (a rolled back session would need it again)
SET client_min_messages = warning;
SELECT distill.train('moody', 'mood', 'finetune', :'source', params => :'params', resume => true,
                     background => false) AS here \gset
RESET client_min_messages;
SELECT message LIKE 'model "moody" version 1 (resumed after epoch 1 of job %' AS resumed
FROM distill.jobs WHERE id = :here;
SELECT count(*) FILTER (WHERE epoch = 1) AS epoch_1_rows, min(epoch) AS first_epoch
FROM distill.training_log WHERE job_id = :here;
SELECT array_agg(j) = ARRAY[:job]::bigint[] AS checkpoint_kept FROM checkpoint_jobs() j;

-- the same training straight through gives the same weights, bit for bit
SET client_min_messages = warning;
SELECT distill.train('moody', 'mood', 'finetune', :'source', params => :'params',
                     background => false) > 0 AS straight;
RESET client_min_messages;
SELECT count(DISTINCT (metrics, (SELECT string_agg(md5(c.data), ',' ORDER BY c.seq)
                                 FROM distill.model_chunks c WHERE c.model_id = m.id))) AS distinct_weights,
       count(*) AS versions
FROM distill.models m WHERE name = 'moody';

-- in the background, it takes the checkpoint over: once it succeeds,
-- neither its own nor the one it went on from is left
SELECT distill.train('moody', 'mood', 'finetune', :'source', params => :'params', resume => true) AS bg \gset
SELECT distill.wait(:bg);
SELECT message LIKE 'model "moody" version 3 (resumed after epoch 1 of job %' AS resumed
FROM distill.jobs WHERE id = :bg;
SELECT count(*) AS checkpoints_left FROM checkpoint_jobs();
SELECT count(DISTINCT (SELECT string_agg(md5(c.data), ',' ORDER BY c.seq)
                       FROM distill.model_chunks c WHERE c.model_id = m.id)) AS distinct_weights
FROM distill.models m WHERE name = 'moody';

-- fine-tuning an imported model resumes too, on the same version of it
\getenv models DISTILL_MODELS
SELECT distill.import_model('tale', :'models' || '/stories260K.bin',
                            tokenizer => :'models' || '/tok512.bin') AS imported;
CREATE TABLE stories AS
SELECT i, (ARRAY['Lily', 'Tom', 'Sue', 'Ben'])[1 + i % 4] || ' saw a big '
          || (ARRAY['dog', 'cat', 'bird'])[1 + i % 3] || '.' AS body,
       (ARRAY['dog', 'cat', 'bird'])[1 + i % 3] AS animal
FROM generate_series(1, 64) i;
SELECT distill.create_task('animal', 'Which animal?', ARRAY['dog', 'cat', 'bird']);
\set tale_args '''tale_student'', ''animal'', ''distill'', ''SELECT body AS input, animal AS label FROM stories ORDER BY i'', params => ''{"epochs": 2, "lr": 0.003, "max_input_tokens": 16, "max_target_tokens": 4, "validation_fraction": 0}'', base => ''tale'''
\set lora_args '''tale_lora'', ''animal'', ''distill'', ''SELECT body AS input, animal AS label FROM stories ORDER BY i'', params => ''{"epochs": 2, "lr": 0.003, "max_input_tokens": 16, "max_target_tokens": 4, "validation_fraction": 0, "lora_rank": 4}'', base => ''tale'''
SELECT pg_advisory_lock(4242);
SELECT distill.train(:tale_args) AS tale_job \gset
SELECT distill.train(:lora_args) AS lora_job \gset
SELECT eventually($$SELECT count(*) = 2 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted$$, 60)
       AS after_epoch_1;
SELECT distill.cancel(:tale_job), distill.cancel(:lora_job);
SELECT pg_advisory_unlock(4242);
SET client_min_messages = warning;
SELECT distill.train(:tale_args, resume => true, background => false) > 0 AS resumed,
       distill.train(:lora_args, resume => true, background => false) > 0 AS lora_resumed;
SELECT distill.train(:tale_args, background => false) > 0 AS straight,
       distill.train(:lora_args, background => false) > 0 AS lora_straight;
RESET client_min_messages;
-- (with LoRA, the adapters alone are stored, and saved)
SELECT name, count(DISTINCT (SELECT string_agg(md5(c.data), ',' ORDER BY c.seq)
                             FROM distill.model_chunks c WHERE c.model_id = m.id)) AS distinct_weights,
       count(*) AS versions, bool_and(base_id IS NOT NULL) AS adapters
FROM distill.models m WHERE name IN ('tale_student', 'tale_lora') GROUP BY name ORDER BY name;
-- a new version of the base: the checkpoint is of the old one
SELECT distill.import_model('tale', :'models' || '/stories260K.bin',
                            tokenizer => :'models' || '/tok512.bin') AS imported;
SELECT error_of(format('SELECT distill.train(%s, resume => true, background => false)', :'tale_args'));
SELECT distill.drop_model('tale_student');
SELECT distill.drop_model('tale_lora');
SELECT distill.drop_model('tale');
SELECT distill.drop_task('animal');
DROP TABLE stories;
DELETE FROM distill.jobs WHERE id IN (:tale_job, :lora_job);

-- the checkpoint of a job that is no longer there is swept away
SELECT pg_advisory_lock(4242);
SELECT distill.train('moody', 'mood', 'finetune', :'source', params => :'params') AS gone \gset
SELECT eventually($$SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted$$, 60)
       AS after_epoch_1;
SELECT distill.cancel(:gone);
SELECT pg_advisory_unlock(4242);
SELECT array_agg(j) = ARRAY[:gone]::bigint[] AS checkpoint_saved FROM checkpoint_jobs() j;
DELETE FROM distill.jobs WHERE id = :gone;
SELECT eventually('SELECT count(*) = 0 FROM checkpoint_jobs()') AS swept;

-- clean up (the log of trainings that left no model, too)
DELETE FROM distill.training_log WHERE job_id IN (:job, :tale_job, :lora_job, :gone);
SELECT distill.drop_model('moody');
SELECT distill.drop_task('mood');
DROP TABLE reviews;
DROP TRIGGER hold_after_epoch_1 ON distill.training_log;
DROP FUNCTION checkpoint_jobs, hold_after_epoch_1, eventually, error_of, launcher_planned, backend_memory;
