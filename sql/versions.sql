-- Model versions: which one distill_predict uses (distill.deploy), evaluation
-- as a job, and candidates given more than once.
\set SHOW_CONTEXT never
\i test/helpers.psql

CREATE TABLE notes AS
SELECT i AS id,
       format('%s %s.', (ARRAY['The film', 'This book', 'The meal', 'Our trip'])[1 + i % 4],
              CASE WHEN i % 2 = 0 THEN (ARRAY['was wonderful', 'felt great', 'made us happy'])[1 + i % 3]
                   ELSE (ARRAY['was awful', 'felt terrible', 'made us sad'])[1 + i % 3] END) AS body,
       CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END AS label
FROM generate_series(1, 80) i;
SELECT distill.create_task('mood', 'Is the note positive or negative?', ARRAY['positive', 'negative']);

-- version 1 learns the task; versions 2 and 3 barely move from their start
CREATE FUNCTION train_version(lr float8, epochs int) RETURNS boolean LANGUAGE sql AS $$
    SELECT distill.train('judge', 'mood', 'finetune', 'SELECT body AS input, label FROM notes',
                         params => jsonb_build_object('d_model', 32, 'layers', 1, 'heads', 2,
                                                      'vocab_size', 300, 'seed', 3, 'dropout', 0,
                                                      'lr', lr, 'epochs', epochs),
                         background => false) > 0;
$$;
SET client_min_messages = warning;
SELECT train_version(0.003, 8) AS trained;
RESET client_min_messages;
CREATE TABLE v1_answers AS SELECT id, distill_predict_proba('judge', body) AS p FROM notes;
SET client_min_messages = warning;
SELECT train_version(1e-7, 1) AS trained;
RESET client_min_messages;

-- without a deployment, the newest version answers
SELECT distill.deployed_version('judge') AS deployed;
SELECT count(*) AS answers_of_v1 FROM notes JOIN v1_answers USING (id)
WHERE distill_predict_proba('judge', body) = p;

-- pinned: version 1 answers, in this backend too (its cache holds version 2)
SELECT distill.deploy('judge', 1) AS deployed;
SELECT count(*) AS answers_of_v1 FROM notes JOIN v1_answers USING (id)
WHERE distill_predict_proba('judge', body) = p;
-- and stays pinned when a new version is trained
SET client_min_messages = warning;
SELECT train_version(1e-7, 1) AS trained;
RESET client_min_messages;
SELECT distill.deployed_version('judge') AS deployed, max(version) AS newest
FROM distill.models WHERE name = 'judge';

-- most_recent follows the newest version again; rollback returns to the
-- version that served before, and a second rollback undoes the first
SELECT distill.deploy('judge', 'most_recent') AS deployed;
SELECT distill.deploy('judge') AS deployed;
SELECT distill.deploy('judge', 'rollback') AS deployed;
SELECT distill.deploy('judge', 'rollback') AS deployed;
-- best_score: the version with the best validation accuracy
SELECT distill.deploy('judge', 'best_score') AS deployed,
       (SELECT version FROM distill.models WHERE name = 'judge'
        ORDER BY (metrics->>'val_accuracy')::float8 DESC, version DESC LIMIT 1) AS best;
SELECT count(*) AS answers_of_v1 FROM notes JOIN v1_answers USING (id)
WHERE distill_predict_proba('judge', body) = p;
SELECT model, version, strategy, previous_version, owner = current_user::regrole AS mine
FROM distill.deployments ORDER BY id;

-- following the newest version, which a training moves on: rollback goes
-- to the version trained before the newest
SELECT distill.deploy('judge', 'most_recent') AS deployed;
SET client_min_messages = warning;
SELECT train_version(1e-7, 1) AS trained;
RESET client_min_messages;
SELECT distill.deployed_version('judge') AS deployed;
SELECT distill.deploy('judge', 'rollback') AS deployed;

-- mistakes
SELECT distill.deploy('judge', 9);
SELECT distill.deploy('judge', 'newest');
SELECT distill.deploy('nobody', 'most_recent');
SELECT distill.deploy('judge', NULL::integer);
SELECT distill.deploy('judge', NULL::text);
SELECT distill.deployed_version('nobody') IS NULL AS no_such_model;
SET client_min_messages = warning;
SELECT distill.train('single', 'mood', 'finetune', 'SELECT body AS input, label FROM notes',
                     params => '{"d_model": 16, "layers": 1, "heads": 1, "vocab_size": 300, "epochs": 1}',
                     background => false) > 0 AS trained;
RESET client_min_messages;
SELECT distill.deploy('single', 'rollback');
-- best_score needs a validation accuracy, which a training without validation lacks
SET client_min_messages = warning;
SELECT distill.train('unvalidated', 'mood', 'finetune', 'SELECT body AS input, label FROM notes',
                     params => '{"d_model": 16, "layers": 1, "heads": 1, "vocab_size": 300, "epochs": 1,
                                 "validation_fraction": 0}',
                     background => false) > 0 AS trained;
RESET client_min_messages;
SELECT distill.deploy('unvalidated', 'best_score');
SELECT distill.deploy('single', 'best_score') AS deployed;

-- another role may not deploy a model it cannot see
CREATE ROLE versions_other LOGIN IN ROLE distill_user;
SET ROLE versions_other;
SELECT distill.deploy('judge', 2);
SELECT count(*) AS deployments_seen FROM distill.deployments;
RESET ROLE;
DROP ROLE versions_other;

-- evaluation as a job: in this session, or in the background
SELECT distill.deploy('judge', 1) AS deployed;
SET client_min_messages = warning;
SELECT distill.evaluate('judge', 'SELECT body AS input, label FROM notes', 'exact', background => false) AS here \gset
RESET client_min_messages;
SELECT distill.evaluate('judge', 'SELECT body AS input, label FROM notes WHERE id <= 40', 'exact',
                        background => true) AS queued \gset
SELECT distill.wait(:queued);
SELECT j.id = :here AS here, j.kind, j.status, e.version, e.metric, e.n, e.accuracy > 0.9 AS accurate,
       jsonb_object_keys(e.per_label) AS label
FROM distill.jobs j JOIN distill.evaluations e ON e.job_id = j.id
WHERE j.id IN (:here, :queued) ORDER BY j.id, label;
-- the same figures as distill.evaluate at once
SELECT (e.n, e.accuracy, e.per_label) = (x.n, x.accuracy, x.per_label) AS same
FROM distill.evaluations e, distill.evaluate('judge', 'SELECT body AS input, label FROM notes') x
WHERE e.job_id = :here;
-- a source without rows: n 0, accuracy NULL
SET client_min_messages = warning;
SELECT distill.evaluate('judge', 'SELECT body AS input, label FROM notes WHERE false', 'exact', false) AS empty \gset
RESET client_min_messages;
SELECT n, accuracy FROM distill.evaluations WHERE job_id = :empty;
-- schedulable; refused early when wrong
SELECT distill.schedule('nightly judge', '1 day', 'evaluate',
                        '{"model": "judge", "source": "SELECT body AS input, label FROM notes"}');
SELECT args FROM distill.schedules WHERE name = 'nightly judge';
SELECT distill.unschedule('nightly judge');
SELECT distill.schedule('broken', '1 day', 'evaluate', '{"model": "judge"}');
SELECT distill.evaluate('judge', 'SELECT body AS input, label FROM notes', 'fuzzy', true);
SELECT distill.evaluate('nobody', 'SELECT body AS input, label FROM notes', 'exact', true);
SELECT distill.evaluate('judge', 'SELECT body AS input FROM notes', 'exact', false);

-- a candidate given twice is scored once: probabilities sum to 1
SELECT distill_predict_proba('judge', 'The meal was wonderful.', ARRAY['positive', 'positive', 'negative'])
     = distill_predict_proba('judge', 'The meal was wonderful.', ARRAY['positive', 'negative']) AS same_as_distinct;
SELECT round(sum(value::numeric), 5) AS total
FROM jsonb_each_text(distill_predict_proba('judge', 'Our trip felt terrible.',
                                           ARRAY['negative', 'positive', 'negative', 'negative']));
SELECT distill_predict('judge', 'Our trip felt terrible.', ARRAY['positive', 'negative', 'positive', 'negative']);
SELECT (x.n, x.accuracy) = (y.n, y.accuracy) AS evaluate_same
FROM distill.evaluate('judge', $$SELECT body AS input, label, ARRAY['positive', 'negative', 'negative'] AS choices FROM notes$$) x,
     distill.evaluate('judge', $$SELECT body AS input, label, ARRAY['positive', 'negative'] AS choices FROM notes$$) y;

-- dropping a model drops its deployments
SELECT distill.drop_model('judge');
SELECT count(*) AS deployments_left FROM distill.deployments WHERE model = 'judge';
SELECT distill.drop_model('single');
SELECT distill.drop_model('unvalidated');
SELECT distill.drop_task('mood', cascade => true);
DROP TABLE notes, v1_answers;
DROP FUNCTION train_version, eventually, error_of, launcher_planned, backend_memory;
