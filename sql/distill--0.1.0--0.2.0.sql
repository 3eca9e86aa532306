-- distill 0.1.0 -> 0.2.0 (ALTER EXTENSION distill UPDATE): model
-- deployments, evaluation jobs, and every user row kept by pg_dump.
\echo Use "ALTER EXTENSION distill UPDATE TO '0.2.0'" to load this file. \quit

ALTER TABLE @extschema@.schedules DROP CONSTRAINT schedules_kind_check,
    ADD CONSTRAINT schedules_kind_check CHECK (kind IN ('annotate', 'train', 'evaluate'));

-- Which version of a model distill_predict uses: that of the model's last
-- deployment, or its newest version when that is 'most_recent' or there
-- is none (see deployed_version).  The history is what rollback walks.
CREATE TABLE @extschema@.deployments (
    id               bigserial PRIMARY KEY,
    model            text NOT NULL,
    version          integer NOT NULL,   -- the version deployed (the newest, for most_recent)
    strategy         text NOT NULL
                     CHECK (strategy IN ('most_recent', 'best_score', 'rollback', 'version')),
    previous_version integer,            -- the version that served until then
    owner            regrole NOT NULL,   -- the model's
    deployed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON @extschema@.deployments (model, id);

-- The results of evaluation jobs (distill.evaluate(..., background => ...)).
CREATE TABLE @extschema@.evaluations (
    id           bigserial PRIMARY KEY,
    job_id       bigint NOT NULL,
    owner        regrole NOT NULL,
    model        text NOT NULL,
    version      integer NOT NULL,       -- the version evaluated: the one deployed then
    source       text NOT NULL,
    metric       text NOT NULL,
    n            bigint NOT NULL,
    accuracy     double precision,
    per_label    jsonb,
    evaluated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON @extschema@.evaluations (model, version);

ALTER TABLE @extschema@.deployments ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON @extschema@.deployments FOR SELECT
    USING (pg_catalog.pg_has_role(owner, 'USAGE'));
ALTER TABLE @extschema@.evaluations ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON @extschema@.evaluations FOR SELECT
    USING (pg_catalog.pg_has_role(owner, 'USAGE'));

-- pg_dump keeps every row of these tables, and their sequences' positions:
-- they hold what users made (the install script adds no row to any).
-- (One call per statement: each updates the extension's catalog row.)
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['teachers', 'tasks', 'annotations', 'jobs', 'schedules', 'models',
                             'training_log', 'deployments', 'evaluations', 'jobs_id_seq',
                             'models_id_seq', 'deployments_id_seq', 'evaluations_id_seq'] LOOP
        PERFORM pg_catalog.pg_extension_config_dump(format('@extschema@.%I', t)::regclass, '');
    END LOOP;
END
$$;

-- The arguments of a job of this kind, checked (every key known, every
-- value of its type) and completed with defaults.
CREATE OR REPLACE FUNCTION @extschema@._job_args(kind text, args jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- argument -> the JSON types it may have
    types constant jsonb := CASE kind
        WHEN 'annotate' THEN '{"task": ["string"], "teacher": ["string"], "source": ["string"]}'
        WHEN 'train' THEN '{"model": ["string"], "task": ["string"], "method": ["string"],
                            "source": ["string", "null"], "rationale_weight": ["number"],
                            "params": ["object"]}'
        WHEN 'evaluate' THEN '{"model": ["string"], "source": ["string"], "metric": ["string"]}' END;
    required constant text[] := CASE kind WHEN 'annotate' THEN ARRAY['task', 'teacher', 'source']
                                          WHEN 'train' THEN ARRAY['model', 'task']
                                          WHEN 'evaluate' THEN ARRAY['model', 'source'] END;
    key text;
BEGIN
    IF types IS NULL THEN
        RAISE EXCEPTION 'unknown job kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Schedule ''annotate'', ''train'' or ''evaluate''.';
    END IF;
    IF jsonb_typeof(args) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'job arguments must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example: {"task": "nli", "teacher": "gpt", "source": "SELECT id, body FROM t"}.';
    END IF;
    FOR key IN SELECT k FROM jsonb_object_keys(args) k LOOP
        IF NOT types ? key THEN
            RAISE EXCEPTION 'unknown % job argument "%"', kind, key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Arguments: ' || (SELECT string_agg(k, ', ') FROM jsonb_object_keys(types) k) || '.';
        END IF;
        IF NOT types->key ? jsonb_typeof(args->key) THEN
            RAISE EXCEPTION '% job argument "%" must be a JSON %', kind, key,
                            (SELECT string_agg(t, ' or ') FROM jsonb_array_elements_text(types->key) t)
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Got %s.', args->key);
        END IF;
        IF jsonb_typeof(args->key) = 'string' AND args->>key = '' THEN
            RAISE EXCEPTION '% job argument "%" must not be empty', kind, key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOREACH key IN ARRAY required LOOP
        IF NOT args ? key THEN
            RAISE EXCEPTION '% job needs the argument "%"', kind, key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    IF kind = 'train' THEN
        args := jsonb_build_object('method', 'step_by_step', 'source', NULL,
                                   'rationale_weight', 1.0, 'params', '{}'::jsonb) || args;
    ELSIF kind = 'evaluate' THEN
        args := jsonb_build_object('metric', 'exact') || args;
    END IF;
    RETURN args;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@._drop_model(caller regrole, name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner regrole;
BEGIN
    SELECT m.owner INTO owner FROM @extschema@.models m WHERE m.name = _drop_model.name LIMIT 1;
    IF NOT FOUND OR NOT pg_has_role(caller, owner, 'USAGE') THEN
        RAISE EXCEPTION 'model "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    DELETE FROM @extschema@.training_log l
    WHERE l.model_id IN (SELECT id FROM @extschema@.models m WHERE m.name = _drop_model.name);
    DELETE FROM @extschema@.models m WHERE m.name = _drop_model.name;
    DELETE FROM @extschema@.deployments d WHERE d.model = _drop_model.name;
END
$$;

-- The version of a model that distill_predict uses; NULL when the caller
-- sees no model of that name.
CREATE FUNCTION @extschema@.deployed_version(model text) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN d.strategy IS DISTINCT FROM 'most_recent' AND d.version IS NOT NULL
                THEN d.version
                ELSE (SELECT max(m.version) FROM @extschema@.models m WHERE m.name = $1) END
    FROM (SELECT) one
    LEFT JOIN LATERAL (SELECT d.strategy, d.version FROM @extschema@.deployments d
                       WHERE d.model = $1 ORDER BY d.id DESC LIMIT 1) d ON true
    WHERE EXISTS (SELECT FROM @extschema@.models m WHERE m.name = $1);
$$;

-- The owner of model name, if caller may change it; else an error.
CREATE FUNCTION @extschema@._model_owner(caller regrole, name text) RETURNS regrole
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner regrole;
BEGIN
    SELECT m.owner INTO owner FROM @extschema@.models m WHERE m.name = _model_owner.name LIMIT 1;
    IF NOT FOUND OR NOT pg_has_role(caller, owner, 'USAGE') THEN
        RAISE EXCEPTION 'model "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT DISTINCT name FROM distill.models lists the models you can see.';
    END IF;
    RETURN owner;
END
$$;

-- Make version the one distill_predict uses; returns it.
CREATE FUNCTION @extschema@._record_deployment(caller regrole, model text, version integer, strategy text)
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM @extschema@.models m
                   WHERE m.name = _record_deployment.model AND m.version = _record_deployment.version) THEN
        RAISE EXCEPTION 'model "%" has no version %', model, version
            USING ERRCODE = 'undefined_object',
                  HINT = format('Its versions: %s.',
                                (SELECT string_agg(m.version::text, ', ' ORDER BY m.version)
                                 FROM @extschema@.models m WHERE m.name = _record_deployment.model));
    END IF;
    INSERT INTO @extschema@.deployments (model, version, strategy, previous_version, owner)
    VALUES (model, version, strategy, @extschema@.deployed_version(model),
            @extschema@._model_owner(caller, model));
    RETURN version;
END
$$;

-- The version a strategy picks: the newest, the best validation accuracy,
-- or the one that served before the current one.
CREATE FUNCTION @extschema@._deploy(caller regrole, model text, strategy text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    serving integer;
    target integer;
    last record;
BEGIN
    IF model IS NULL OR strategy IS NULL THEN
        RAISE EXCEPTION 'model and strategy must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM @extschema@._model_owner(caller, model);
    -- one deployment of a name at a time, so that rollback reads a settled history
    PERFORM pg_advisory_xact_lock(hashtext('distill.deployments'), hashtext(model));
    serving := @extschema@.deployed_version(model);
    CASE strategy
    WHEN 'most_recent' THEN
        target := (SELECT max(m.version) FROM @extschema@.models m WHERE m.name = _deploy.model);
    WHEN 'best_score' THEN
        SELECT m.version INTO target FROM @extschema@.models m
        WHERE m.name = _deploy.model AND jsonb_typeof(m.metrics->'val_accuracy') = 'number'
        ORDER BY (m.metrics->>'val_accuracy')::float8 DESC, m.version DESC LIMIT 1;
        IF target IS NULL THEN
            RAISE EXCEPTION 'no version of model "%" has a validation accuracy', model
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Deploy a version by number: distill.deploy(model, version).';
        END IF;
    WHEN 'rollback' THEN
        SELECT d.strategy, d.version INTO last
        FROM @extschema@.deployments d WHERE d.model = _deploy.model ORDER BY d.id DESC LIMIT 1;
        IF last IS NULL OR (last.strategy = 'most_recent' AND serving > last.version) THEN
            -- following the newest version, which training has moved on since
            target := (SELECT max(m.version) FROM @extschema@.models m
                       WHERE m.name = _deploy.model AND m.version < serving);
        ELSE
            -- what served before the last deployment that changed the version
            target := (SELECT d.previous_version FROM @extschema@.deployments d
                       WHERE d.model = _deploy.model AND d.version <> d.previous_version
                       ORDER BY d.id DESC LIMIT 1);
        END IF;
        IF target IS NULL THEN
            RAISE EXCEPTION 'model "%" has no earlier deployment to roll back to', model
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Version %s is the only one that has served.', serving);
        END IF;
    ELSE
        RAISE EXCEPTION 'unknown deployment strategy "%"', strategy
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''most_recent'', ''best_score'', ''rollback'', or a version number.';
    END CASE;
    RETURN @extschema@._record_deployment(caller, model, target, strategy);
END
$$;

CREATE FUNCTION @extschema@._deploy(caller regrole, model text, version integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF model IS NULL OR version IS NULL THEN
        RAISE EXCEPTION 'model and version must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM @extschema@._model_owner(caller, model);
    PERFORM pg_advisory_xact_lock(hashtext('distill.deployments'), hashtext(model));
    RETURN @extschema@._record_deployment(caller, model, version, 'version');
END
$$;

-- Choose the version distill_predict uses (docs/prediction.md).
CREATE FUNCTION @extschema@.deploy(model text, strategy text DEFAULT 'most_recent') RETURNS integer
AS 'MODULE_PATHNAME', 'distill_call_as_owner'
LANGUAGE C VOLATILE;
CREATE FUNCTION @extschema@.deploy(model text, version integer) RETURNS integer
AS 'MODULE_PATHNAME', 'distill_call_as_owner'
LANGUAGE C VOLATILE;

-- The same as a job, in the background or in this session; the result is
-- a row of distill.evaluations.  Returns the job's id.
CREATE FUNCTION @extschema@.evaluate(
    model text, source text, metric text, background boolean)
RETURNS bigint
AS 'MODULE_PATHNAME', 'distill_evaluate_job'
LANGUAGE C VOLATILE STRICT;

REVOKE EXECUTE ON FUNCTION
    @extschema@.deployed_version(text),
    @extschema@._model_owner(regrole, text),
    @extschema@._record_deployment(regrole, text, integer, text),
    @extschema@._deploy(regrole, text, text),
    @extschema@._deploy(regrole, text, integer),
    @extschema@.deploy(text, text),
    @extschema@.deploy(text, integer),
    @extschema@.evaluate(text, text, text, boolean)
    FROM PUBLIC;
GRANT SELECT ON @extschema@.deployments, @extschema@.evaluations TO distill_user;
GRANT EXECUTE ON FUNCTION
    @extschema@.evaluate(text, text, text, boolean),
    @extschema@.deploy(text, text),
    @extschema@.deploy(text, integer),
    @extschema@.deployed_version(text)
    TO distill_user;
