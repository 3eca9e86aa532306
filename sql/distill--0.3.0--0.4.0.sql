-- distill 0.3.0 -> 0.4.0 (ALTER EXTENSION distill UPDATE): students
-- fine-tuned on an imported model (distill.train's base), LoRA adapters
-- that keep a reference to their base, training that goes on from the
-- checkpoint of a failed or cancelled job (distill.train's resume).
\echo Use "ALTER EXTENSION distill UPDATE TO '0.4.0'" to load this file. \quit

ALTER TABLE @extschema@.models ADD COLUMN base_id bigint REFERENCES @extschema@.models (id);

CREATE OR REPLACE FUNCTION @extschema@._job_args(kind text, args jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- argument -> the JSON types it may have
    types constant jsonb := CASE kind
        WHEN 'annotate' THEN '{"task": ["string"], "teacher": ["string"], "source": ["string"]}'
        WHEN 'train' THEN '{"model": ["string"], "task": ["string"], "method": ["string"],
                            "source": ["string", "null"], "rationale_weight": ["number"],
                            "params": ["object"], "base": ["string", "null"],
                            "resume": ["boolean"]}'
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
                                   'rationale_weight', 1.0, 'params', '{}'::jsonb,
                                   'base', NULL, 'resume', false) || args;
    ELSIF kind = 'evaluate' THEN
        args := jsonb_build_object('metric', 'exact') || args;
    END IF;
    RETURN args;
END
$$;

DROP FUNCTION @extschema@.train(text, text, text, text, double precision, jsonb, boolean);
-- Runs the caller's source query with the caller's search_path.
CREATE FUNCTION @extschema@.train(
    model            text,
    task             text,
    method           text DEFAULT 'step_by_step',
    source           text DEFAULT NULL,
    rationale_weight double precision DEFAULT 1.0,
    params           jsonb DEFAULT '{}',
    background       boolean DEFAULT true,
    base             text DEFAULT NULL,
    resume           boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'distill_train'
LANGUAGE C VOLATILE;

-- Raise if another model's adapters apply to a version of model name.
-- Called by _drop_model, whose rights see every role's models.
CREATE FUNCTION @extschema@._check_not_a_base(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    users text;
BEGIN
    SELECT string_agg(DISTINCT format('%s version %s', s.name, s.version), ', ')
    INTO users
    FROM @extschema@.models s JOIN @extschema@.models b ON b.id = s.base_id
    WHERE b.name = _check_not_a_base.name AND s.name <> b.name;
    IF users IS NOT NULL THEN
        RAISE EXCEPTION 'model "%" is the base of other models', name
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Their adapters apply to its weights: %s.', users),
                  HINT = 'Drop those models first.';
    END IF;
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
    PERFORM @extschema@._check_not_a_base(name);
    DELETE FROM @extschema@.training_log l
    WHERE l.model_id IN (SELECT id FROM @extschema@.models m WHERE m.name = _drop_model.name);
    DELETE FROM @extschema@.models m WHERE m.name = _drop_model.name;
    DELETE FROM @extschema@.deployments d WHERE d.model = _drop_model.name;
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.train(text, text, text, text, double precision, jsonb, boolean, text, boolean)
    TO distill_user;
