-- bench/quality.sql - setup for bench/quality (run by it; see the header
-- there): load the paper's data, annotate the training and test sets with
-- the replay teacher through distill.annotate, and define bench.run(), which
-- trains one student, evaluates it on the test set and records the figures
-- in bench.results.
--
-- psql variables: teacher_url, train_limit, test_limit (0 = all).

SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS distill;

-- bench.raw (split, doc jsonb) holds the four JSONL files, loaded by
-- bench/quality (\copy does not expand psql variables).

-- One table per dataset and split. A limit (QUICK runs) keeps a fixed,
-- deterministic subset: the first rows in md5(id) order.
CREATE FUNCTION bench.load_split(dataset text, split text, lim int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$
        CREATE TABLE bench.%I AS
        SELECT doc->>'id' AS id, doc->>'input' AS input, doc->>'label' AS gold,
               CASE WHEN doc ? 'choices'
                    THEN ARRAY(SELECT jsonb_array_elements_text(doc->'choices')) END AS choices,
               doc->>'teacher_label' AS release_label
        FROM bench.raw WHERE split = %L
        ORDER BY md5(doc->>'id') %s$q$,
        dataset || '_' || split, dataset || '_' || split,
        CASE WHEN lim > 0 THEN 'LIMIT ' || lim ELSE '' END);
    EXECUTE format('ALTER TABLE bench.%I ADD PRIMARY KEY (id)', dataset || '_' || split);
END
$$;
SELECT bench.load_split('cqa', 'train', :train_limit), bench.load_split('cqa', 'test', :test_limit),
       bench.load_split('svamp', 'train', :train_limit), bench.load_split('svamp', 'test', :test_limit);
DROP TABLE bench.raw;

-- A fraction of a training set: the first round(n * fraction) rows in
-- md5(id) order, so the 25% set is the same for every method and run.
CREATE FUNCTION bench.subset(dataset text, fraction float8) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    tab text := format('%s_train_%s', dataset, round(fraction * 100)::int);
BEGIN
    IF to_regclass('bench.' || quote_ident(tab)) IS NULL THEN
        EXECUTE format($q$
            CREATE TABLE bench.%I AS
            SELECT * FROM bench.%I ORDER BY md5(id)
            LIMIT (SELECT round(count(*) * %s)::int FROM bench.%I)$q$,
            tab, dataset || '_train', fraction, dataset || '_train');
    END IF;
    RETURN tab;
END
$$;

-- The value of an arithmetic expression like "( 84.0 / 2.0 )" (NULL when it
-- is not one), to score the teacher on SVAMP the way distill.evaluate's
-- 'equation' metric scores the students: equal values, relative tolerance 1e-6.
CREATE FUNCTION bench.eq_value(expr text) RETURNS float8
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v float8;
BEGIN
    IF expr IS NULL OR expr !~ '^[0-9.+*/() \t-]+$' THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT (' || regexp_replace(expr, '([0-9]+(\.[0-9]+)?)', '(\1)::float8', 'g') || ')::float8'
        INTO v;
    RETURN v;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;
CREATE FUNCTION bench.eq_equal(a text, b text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(abs(bench.eq_value(a) - bench.eq_value(b))
                    <= greatest(1e-9, 1e-6 * greatest(abs(bench.eq_value(a)), abs(bench.eq_value(b)))),
                    false)
$$;

-- The teacher: the replay server answers with PaLM's recorded outputs; the
-- tasks are what a user would write (the replay teacher ignores the prompt's
-- demonstrations, so none are given). CQA has per-row choices, no label
-- set; SVAMP's answers are free-text equations after "The answer is".
SELECT distill.create_teacher('palm', :'teacher_url', 'palm-540b',
                              options => '{"concurrency": 16}');
SELECT distill.create_task('cqa', 'Answer the question by choosing one of the answer choices.');
SELECT distill.create_task('svamp', 'Answer the math word problem with an equation.',
                           answer_prefix => 'The answer is');
-- Training and test sets alike (the test annotations only give the teacher's
-- own accuracy, through distill's parser).
SELECT distill.annotate('cqa', 'palm', 'SELECT id, input FROM bench.cqa_train', background => false) IS NULL;
SELECT distill.annotate('cqa', 'palm', 'SELECT id, input FROM bench.cqa_test', background => false) IS NULL;
SELECT distill.annotate('svamp', 'palm', 'SELECT id, input FROM bench.svamp_train', background => false) IS NULL;
SELECT distill.annotate('svamp', 'palm', 'SELECT id, input FROM bench.svamp_test', background => false) IS NULL;

-- Is a teacher's answer right? SVAMP: the same value. CQA: the same text,
-- ignoring case (the teacher sometimes writes "America" for the choice
-- "america"; the paper's 78.2% counts those).
CREATE FUNCTION bench.correct(dataset text, answer text, gold text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN dataset = 'svamp' THEN bench.eq_equal(answer, gold)
                ELSE coalesce(lower(trim(answer)) = lower(trim(gold)), false) END
$$;

-- The teacher's accuracy per dataset and split: with distill's parser
-- (unparsed and failed items count as wrong) and with the labels of the
-- paper's release (teacher_label).
CREATE VIEW bench.teacher AS
SELECT d.dataset, s.split, count(*) AS n,
       avg(bench.correct(d.dataset, a.label, t.gold)::int) AS accuracy,
       avg(bench.correct(d.dataset, t.release_label, t.gold)::int) AS release_accuracy,
       count(*) FILTER (WHERE a.status IS DISTINCT FROM 'ok') AS not_ok
FROM (VALUES ('cqa'), ('svamp')) d (dataset)
CROSS JOIN (VALUES ('train'), ('test')) s (split)
CROSS JOIN LATERAL (SELECT * FROM bench.cqa_train WHERE d.dataset = 'cqa' AND s.split = 'train'
                    UNION ALL SELECT * FROM bench.cqa_test WHERE d.dataset = 'cqa' AND s.split = 'test'
                    UNION ALL SELECT * FROM bench.svamp_train WHERE d.dataset = 'svamp' AND s.split = 'train'
                    UNION ALL SELECT * FROM bench.svamp_test WHERE d.dataset = 'svamp' AND s.split = 'test') t
LEFT JOIN distill.annotations a ON a.task = d.dataset AND a.teacher = 'palm' AND a.item_id = t.id
GROUP BY d.dataset, s.split;

-- A reference point for SVAMP: always answering the most frequent value of
-- the training set's gold equations.
CREATE VIEW bench.svamp_majority AS
WITH top AS (
    SELECT bench.eq_value(gold) AS v FROM bench.svamp_train
    GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1)
SELECT top.v AS value, avg(bench.eq_equal(top.v::text, t.gold)::int) AS accuracy
FROM top, bench.svamp_test t GROUP BY top.v;

-- Reference points for CQA that use no question at all: always the
-- shortest choice, or the choice most often right in the training set.
CREATE VIEW bench.cqa_baselines AS
WITH g AS (SELECT gold, count(*) AS n FROM bench.cqa_train GROUP BY gold)
SELECT avg(((SELECT c FROM unnest(t.choices) WITH ORDINALITY u (c, i)
             ORDER BY length(c), i LIMIT 1) = t.gold)::int) AS shortest,
       avg(((SELECT c FROM unnest(t.choices) WITH ORDINALITY u (c, i)
             LEFT JOIN g ON g.gold = u.c ORDER BY coalesce(g.n, 0) DESC, i LIMIT 1) = t.gold)::int)
           AS most_frequent
FROM bench.cqa_test t;

CREATE TABLE bench.results (
    dataset        text,
    fraction       float8,
    method         text,
    seed           int,
    model          text,
    source_rows    bigint,
    train_examples int,
    val_examples   int,
    best_epoch     int,
    epochs         int,
    val_accuracy   float8,
    test_n         bigint,
    accuracy       float8,
    train_seconds  float8,
    eval_seconds   float8,
    n_params       bigint,
    params         jsonb,
    error          text,
    finished_at    timestamptz DEFAULT clock_timestamp()
);

-- Train one student and evaluate it on the test set. Errors are recorded
-- in bench.results (and the run goes on), not raised.
CREATE FUNCTION bench.run(dataset text, fraction float8, method text, params jsonb,
                          rationale_weight float8 DEFAULT 1.0, base text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tab      text := bench.subset(dataset, fraction);
    model    text := format('%s_%s_%s_s%s', dataset, round(fraction * 100)::int, method,
                            coalesce(params->>'seed', '1'));
    choices  text := CASE WHEN dataset = 'cqa' THEN ', t.choices' ELSE '' END;
    source   text;
    rows     bigint;
    t0       timestamptz;
    train_s  float8;
    eval_s   float8;
    ev       record;
    m        record;
BEGIN
    IF method = 'finetune' THEN
        source := format('SELECT t.input, t.gold AS label%s FROM bench.%I t ORDER BY t.id',
                         choices, tab);
    ELSE
        source := format($q$SELECT a.input, a.label%s%s
                            FROM distill.annotations a JOIN bench.%I t ON t.id = a.item_id
                            WHERE a.task = %L AND a.teacher = 'palm' AND a.status = 'ok'
                            ORDER BY a.item_id$q$,
                         CASE WHEN method = 'step_by_step' THEN ', a.rationale' ELSE '' END,
                         choices, tab, dataset);
    END IF;
    EXECUTE format('SELECT count(*) FROM (%s) s', source) INTO rows;
    BEGIN
        IF EXISTS (SELECT 1 FROM distill.models WHERE name = model) THEN
            PERFORM distill.drop_model(model);
        END IF;
        t0 := clock_timestamp();
        PERFORM distill.train(model, dataset, method, source,
                              rationale_weight => rationale_weight,
                              params => params, background => false, base => base);
        train_s := extract(epoch FROM clock_timestamp() - t0);
        t0 := clock_timestamp();
        SELECT * INTO ev FROM distill.evaluate(model,
            format('SELECT input, gold AS label%s FROM bench.%I t ORDER BY id',
                   choices, dataset || '_test'),
            metric => CASE WHEN dataset = 'svamp' THEN 'equation' ELSE 'exact' END);
        eval_s := extract(epoch FROM clock_timestamp() - t0);
        SELECT * INTO m FROM distill.models d WHERE d.name = model ORDER BY version DESC LIMIT 1;
        INSERT INTO bench.results (dataset, fraction, method, seed, model, source_rows,
                                   train_examples, val_examples, best_epoch, epochs,
                                   val_accuracy, test_n, accuracy, train_seconds,
                                   eval_seconds, n_params, params)
        VALUES (dataset, fraction, method, coalesce((params->>'seed')::int, 1), model, rows,
                (m.metrics->>'train_examples')::int, (m.metrics->>'validation_examples')::int,
                (m.metrics->>'best_epoch')::int, (m.params->>'epochs')::int,
                (m.metrics->>'val_accuracy')::float8, ev.n, ev.accuracy, train_s, eval_s,
                m.n_params, m.params);
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO bench.results (dataset, fraction, method, seed, model, source_rows,
                                   params, error)
        VALUES (dataset, fraction, method, coalesce((params->>'seed')::int, 1), model, rows,
                params, SQLERRM);
    END;
END
$$;
