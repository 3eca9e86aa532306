-- distill 0.1.0: teachers, tasks, annotation
\echo Use "CREATE EXTENSION distill" to load this file. \quit

------------------------------------------------------------------------
-- Catalog tables
------------------------------------------------------------------------

CREATE TABLE @extschema@.teachers (
    name        text PRIMARY KEY,
    endpoint    text NOT NULL,
    model       text NOT NULL,
    api         text NOT NULL CHECK (api IN ('openai', 'ollama')),
    api_key_env text,               -- name of a server environment variable, never the key
    options     jsonb NOT NULL,     -- every option, defaults filled in
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE @extschema@.tasks (
    name          text PRIMARY KEY,
    instruction   text NOT NULL,
    labels        text[],           -- NULL = free text or per-row choices
    examples      jsonb NOT NULL,   -- [{"input", "rationale", "label"}, ...]
    answer_prefix text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE @extschema@.annotations (
    task              text NOT NULL REFERENCES @extschema@.tasks ON DELETE CASCADE,
    teacher           text NOT NULL REFERENCES @extschema@.teachers ON DELETE CASCADE,
    item_id           text NOT NULL,
    input             text NOT NULL,
    rationale         text,
    label             text,
    raw_output        text,         -- the teacher's reply verbatim, kept for re-parsing
    status            text NOT NULL CHECK (status IN ('ok', 'unparsed', 'failed')),
    error             text,
    attempts          integer NOT NULL,
    latency_ms        double precision,
    prompt_tokens     integer,
    completion_tokens integer,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, teacher, item_id)
);

CREATE TABLE @extschema@.jobs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('annotate', 'train', 'evaluate')),
    args        jsonb NOT NULL,
    owner       regrole NOT NULL DEFAULT current_user::text::regrole,
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress    real NOT NULL DEFAULT 0,
    message     text,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    worker_pid  integer,
    attempts    integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 1   -- a job whose worker died is queued again while attempts < max_attempts
);
CREATE INDEX ON @extschema@.jobs (status) WHERE status IN ('queued', 'running');

------------------------------------------------------------------------
-- Teachers
------------------------------------------------------------------------

-- NULL when the URL is a usable http(s) base URL, else why not (libcurl's parser).
CREATE FUNCTION @extschema@._endpoint_problem(url text) RETURNS text
    AS 'MODULE_PATHNAME', 'distill_endpoint_problem'
    LANGUAGE C IMMUTABLE STRICT;

-- The teacher options with defaults filled in; raises on anything unknown or out of range.
CREATE FUNCTION @extschema@._teacher_options(options jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    -- key -> [default, min, max, integer?]
    spec constant jsonb := '{
        "temperature":   [0,     0,   2,       false],
        "max_tokens":    [256,   1,   32768,   true],
        "timeout_ms":    [30000, 100, 3600000, true],
        "concurrency":   [8,     1,   256,     true],
        "max_retries":   [4,     0,   20,      true],
        "retry_base_ms": [500,   1,   60000,   true]}';
    result jsonb := '{}';
    key text;
    value jsonb;
    number numeric;
BEGIN
    IF options IS NULL THEN
        options := '{}';
    END IF;
    IF jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'teacher options must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got a JSON %s.', jsonb_typeof(options)),
                  HINT = 'For example: {"temperature": 0, "concurrency": 8}.';
    END IF;
    FOR key IN SELECT k FROM jsonb_object_keys(options) k LOOP
        IF NOT spec ? key THEN
            RAISE EXCEPTION 'unknown teacher option "%"', key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Known options: ' || (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(spec) k) || '.';
        END IF;
    END LOOP;
    FOR key, value IN SELECT * FROM jsonb_each(spec) LOOP
        IF NOT options ? key THEN
            result := result || jsonb_build_object(key, value->0);
            CONTINUE;
        END IF;
        IF jsonb_typeof(options->key) <> 'number' THEN
            RAISE EXCEPTION 'teacher option "%" must be a number', key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Got %s.', options->key);
        END IF;
        number := (options->>key)::numeric;
        IF (value->>3)::boolean AND number <> trunc(number) THEN
            RAISE EXCEPTION 'teacher option "%" must be an integer', key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Got %s.', number);
        END IF;
        IF number < (value->>1)::numeric OR number > (value->>2)::numeric THEN
            RAISE EXCEPTION 'teacher option "%" is out of range', key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Got %s; allowed: %s to %s.', number, value->1, value->2);
        END IF;
        result := result || jsonb_build_object(key, options->key);
    END LOOP;
    RETURN result;
END
$$;

CREATE FUNCTION @extschema@.create_teacher(
    name        text,
    endpoint    text,
    model       text,
    api         text DEFAULT 'openai',
    api_key_env text DEFAULT NULL,
    options     jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    problem text;
BEGIN
    IF coalesce(name, '') = '' THEN
        RAISE EXCEPTION 'teacher name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.teachers t WHERE t.name = create_teacher.name) THEN
        RAISE EXCEPTION 'teacher "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = format('Drop it first with distill.drop_teacher(%L), or choose another name.', name);
    END IF;
    problem := @extschema@._endpoint_problem(coalesce(endpoint, ''));
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'invalid teacher endpoint "%"', endpoint
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = problem || '.',
                  HINT = 'Give the base URL of the server, like http://127.0.0.1:8000/v1 (OpenAI-compatible) or http://127.0.0.1:11434 (Ollama).';
    END IF;
    IF coalesce(model, '') = '' THEN
        RAISE EXCEPTION 'teacher model must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the model name the server expects, like gpt-4o-mini or llama3.1.';
    END IF;
    IF api IS NULL OR api NOT IN ('openai', 'ollama') THEN
        RAISE EXCEPTION 'unknown teacher api "%"', api
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''openai'' for any OpenAI-compatible Chat Completions server (OpenAI, vLLM, llama.cpp server, LM Studio) or ''ollama'' for Ollama''s /api/chat.';
    END IF;
    IF api_key_env !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'invalid api_key_env "%"', api_key_env
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'api_key_env is the name of an environment variable of the server process, not the key itself.',
                  HINT = 'Use a name like OPENAI_API_KEY, and set that variable in the environment PostgreSQL starts with.';
    END IF;
    INSERT INTO @extschema@.teachers (name, endpoint, model, api, api_key_env, options)
    VALUES (name, endpoint, model, api, api_key_env, @extschema@._teacher_options(options));
END
$$;

-- Refuse to drop a teacher or task that has annotations, unless cascade:
-- annotations cost teacher calls, so they never go silently.
CREATE FUNCTION @extschema@._check_annotations(kind text, name text, cascade boolean)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM @extschema@.annotations WHERE %I = $1', kind)
    INTO n USING name;
    IF n > 0 AND NOT cascade THEN
        RAISE EXCEPTION '% "%" has % annotations', kind, name, n
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = format('Use distill.drop_%s(%L, cascade => true) to delete them too.', kind, name);
    END IF;
END
$$;

CREATE FUNCTION @extschema@.drop_teacher(name text, cascade boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.teachers t WHERE t.name = drop_teacher.name) THEN
        RAISE EXCEPTION 'teacher "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM @extschema@._check_annotations('teacher', name, cascade);
    DELETE FROM @extschema@.teachers t WHERE t.name = drop_teacher.name;
END
$$;

------------------------------------------------------------------------
-- Tasks
------------------------------------------------------------------------

CREATE FUNCTION @extschema@._check_examples(examples jsonb, labels text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    example jsonb;
    n integer := 0;
    key text;
BEGIN
    IF jsonb_typeof(examples) <> 'array' THEN
        RAISE EXCEPTION 'task examples must be a JSON array'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got a JSON %s.', jsonb_typeof(examples)),
                  HINT = 'For example: [{"input": "...", "rationale": "...", "label": "..."}].';
    END IF;
    FOR example IN SELECT e FROM jsonb_array_elements(examples) e LOOP
        n := n + 1;
        IF jsonb_typeof(example) <> 'object' THEN
            RAISE EXCEPTION 'task example % is not a JSON object', n
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Each example is {"input": "...", "rationale": "...", "label": "..."}.';
        END IF;
        FOR key IN SELECT k FROM jsonb_object_keys(example) k LOOP
            IF key NOT IN ('input', 'rationale', 'label') THEN
                RAISE EXCEPTION 'task example % has unknown key "%"', n, key
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Each example is {"input": "...", "rationale": "...", "label": "..."}.';
            END IF;
        END LOOP;
        FOREACH key IN ARRAY ARRAY['input', 'rationale', 'label'] LOOP
            IF coalesce(jsonb_typeof(example->key), 'missing') <> 'string' OR example->>key = '' THEN
                RAISE EXCEPTION 'task example % needs a non-empty string "%"', n, key
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Each example is {"input": "...", "rationale": "...", "label": "..."}.';
            END IF;
        END LOOP;
        IF labels IS NOT NULL AND NOT lower(example->>'label') = ANY (SELECT lower(l) FROM unnest(labels) l) THEN
            RAISE EXCEPTION 'task example % has label "%", which is not in the label set', n, example->>'label'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Labels: %s.', array_to_string(labels, ', ')),
                      HINT = 'Fix the example''s label or add it to labels.';
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION @extschema@._check_labels(labels text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF labels IS NULL THEN
        RETURN;
    END IF;
    IF array_ndims(labels) > 1 THEN
        RAISE EXCEPTION 'labels must be a one-dimensional array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(labels) < 2 THEN
        RAISE EXCEPTION 'a label set needs at least two labels'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass labels => NULL for free-text answers or per-row choices.';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(labels) l WHERE coalesce(trim(l), '') = '') THEN
        RAISE EXCEPTION 'labels must not be NULL or empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT count(DISTINCT lower(l)) FROM unnest(labels) l) < cardinality(labels) THEN
        RAISE EXCEPTION 'labels must be distinct, ignoring case'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Labels: %s.', array_to_string(labels, ', '));
    END IF;
END
$$;

CREATE FUNCTION @extschema@.create_task(
    name          text,
    instruction   text,
    labels        text[] DEFAULT NULL,
    examples      jsonb DEFAULT '[]',
    answer_prefix text DEFAULT 'So the answer is')
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(name, '') = '' THEN
        RAISE EXCEPTION 'task name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.tasks t WHERE t.name = create_task.name) THEN
        RAISE EXCEPTION 'task "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = format('Drop it first with distill.drop_task(%L), or choose another name.', name);
    END IF;
    IF instruction IS NULL THEN
        RAISE EXCEPTION 'task instruction must not be NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say what the teacher should answer about each input; an empty string is allowed.';
    END IF;
    IF coalesce(trim(answer_prefix), '') = '' THEN
        RAISE EXCEPTION 'answer_prefix must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It is the phrase that precedes the answer in a reply, like ''So the answer is''.';
    END IF;
    PERFORM @extschema@._check_labels(labels);
    PERFORM @extschema@._check_examples(coalesce(examples, '[]'), labels);
    INSERT INTO @extschema@.tasks (name, instruction, labels, examples, answer_prefix)
    VALUES (name, instruction, labels, coalesce(examples, '[]'), trim(answer_prefix));
END
$$;

CREATE FUNCTION @extschema@.drop_task(name text, cascade boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.tasks t WHERE t.name = drop_task.name) THEN
        RAISE EXCEPTION 'task "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM @extschema@._check_annotations('task', name, cascade);
    DELETE FROM @extschema@.tasks t WHERE t.name = drop_task.name;
END
$$;

------------------------------------------------------------------------
-- Asking and annotating
------------------------------------------------------------------------

CREATE FUNCTION @extschema@.ask(
    teacher text, task text, input text,
    OUT rationale text, OUT label text, OUT raw text)
RETURNS record
AS 'MODULE_PATHNAME', 'distill_ask'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION @extschema@.annotate(
    task text, teacher text, source text, background boolean DEFAULT true)
RETURNS bigint
AS 'MODULE_PATHNAME', 'distill_annotate'
LANGUAGE C VOLATILE STRICT;

------------------------------------------------------------------------
-- Background jobs and schedules
------------------------------------------------------------------------

CREATE FUNCTION @extschema@.wait(job bigint, timeout interval DEFAULT NULL) RETURNS text
    AS 'MODULE_PATHNAME', 'distill_wait'
    LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@.cancel(job bigint) RETURNS text
    AS 'MODULE_PATHNAME', 'distill_cancel'
    LANGUAGE C VOLATILE STRICT;

CREATE TABLE @extschema@.schedules (
    name       text PRIMARY KEY,
    every      interval NOT NULL CHECK (every >= interval '1 second'),
    kind       text NOT NULL CHECK (kind IN ('annotate', 'train')),
    args       jsonb NOT NULL,
    owner      regrole NOT NULL DEFAULT current_user::text::regrole,
    enabled    boolean NOT NULL DEFAULT true,
    next_run   timestamptz NOT NULL,
    last_job   bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The arguments of a job of this kind, checked and completed.
CREATE FUNCTION @extschema@._job_args(kind text, args jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    required text[] := CASE kind WHEN 'annotate' THEN ARRAY['task', 'teacher', 'source']
                                 WHEN 'train' THEN ARRAY['model', 'task'] END;
    allowed text[] := CASE kind WHEN 'annotate' THEN ARRAY['task', 'teacher', 'source']
                                WHEN 'train' THEN ARRAY['model', 'task', 'method', 'source',
                                                        'rationale_weight', 'params'] END;
    key text;
BEGIN
    IF required IS NULL THEN
        RAISE EXCEPTION 'unknown job kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Schedule ''annotate'' or ''train''.';
    END IF;
    IF jsonb_typeof(args) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'job arguments must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example: {"task": "nli", "teacher": "gpt", "source": "SELECT id, body FROM t"}.';
    END IF;
    FOR key IN SELECT k FROM jsonb_object_keys(args) k LOOP
        IF NOT key = ANY (allowed) THEN
            RAISE EXCEPTION 'unknown argument "%" for a % job', key, kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Arguments: ' || array_to_string(allowed, ', ') || '.';
        END IF;
    END LOOP;
    FOREACH key IN ARRAY required LOOP
        IF NOT args ? key THEN
            RAISE EXCEPTION 'a % job needs the argument "%"', kind, key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    IF kind = 'train' THEN
        args := jsonb_build_object('method', 'step_by_step', 'source', NULL,
                                   'rationale_weight', 1.0, 'params', '{}'::jsonb) || args;
    END IF;
    RETURN args;
END
$$;

CREATE FUNCTION @extschema@.schedule(name text, every interval, kind text, args jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(name, '') = '' THEN
        RAISE EXCEPTION 'schedule name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF every IS NULL OR every < interval '1 second' THEN
        RAISE EXCEPTION 'a schedule runs at most every second'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got every => %s.', coalesce(every::text, 'NULL')),
                  HINT = 'For cron-like times (every day at 03:00), call distill.annotate() from pg_cron; see the jobs documentation.';
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.schedules s WHERE s.name = schedule.name) THEN
        RAISE EXCEPTION 'schedule "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = format('Remove it first with distill.unschedule(%L).', name);
    END IF;
    INSERT INTO @extschema@.schedules (name, every, kind, args, next_run)
    VALUES (name, every, kind, @extschema@._job_args(kind, args), now());
END
$$;

CREATE FUNCTION @extschema@.unschedule(name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM @extschema@.schedules s WHERE s.name = unschedule.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schedule "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

-- The launcher's work, in SQL.  A job whose worker stopped without ending
-- it (a crash, a restart, a terminated worker) goes back to the queue while
-- it has attempts left, else fails with a message saying so.  With a job
-- id: that job, whose worker the launcher saw stop; without: every running
-- job with no live worker (when the launcher starts).
CREATE FUNCTION @extschema@._recover_jobs(job bigint DEFAULT NULL) RETURNS void
LANGUAGE sql AS $$
    UPDATE @extschema@.jobs
    SET status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
        error = CASE WHEN attempts < max_attempts THEN error
                     ELSE 'the worker running this job stopped (server restart, crash or termination)' END,
        message = CASE WHEN attempts < max_attempts THEN 'queued again after its worker stopped' ELSE message END,
        finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END,
        worker_pid = NULL
    WHERE status = 'running'
      AND CASE WHEN job IS NULL
               THEN coalesce(worker_pid, 0) NOT IN (SELECT pid FROM pg_stat_activity
                                                    WHERE backend_type = 'distill worker')
               ELSE id = job END;
$$;

-- Queue a job for every due schedule whose previous job has ended.
CREATE FUNCTION @extschema@._fire_schedules() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    job bigint;
BEGIN
    FOR s IN SELECT * FROM @extschema@.schedules
             WHERE enabled AND next_run <= now()
               AND NOT EXISTS (SELECT 1 FROM @extschema@.jobs j
                               WHERE j.id = last_job AND j.status IN ('queued', 'running'))
             FOR UPDATE SKIP LOCKED
    LOOP
        INSERT INTO @extschema@.jobs (kind, args, owner) VALUES (s.kind, s.args, s.owner)
        RETURNING id INTO job;
        UPDATE @extschema@.schedules
        SET last_job = job,
            next_run = s.next_run + s.every * (floor(extract(epoch FROM now() - s.next_run)
                                                     / extract(epoch FROM s.every)) + 1)
        WHERE name = s.name;
    END LOOP;
END
$$;

-- Mark queued jobs running, as many as there are free worker slots.
CREATE FUNCTION @extschema@._claim_jobs(max_workers integer)
RETURNS TABLE (id bigint, owner oid)
LANGUAGE sql AS $$
    UPDATE @extschema@.jobs j
    SET status = 'running', started_at = now(), attempts = j.attempts + 1, worker_pid = NULL
    FROM (SELECT q.id FROM @extschema@.jobs q WHERE q.status = 'queued' ORDER BY q.id
          LIMIT greatest(max_workers - (SELECT count(*) FROM @extschema@.jobs r
                                        WHERE r.status = 'running'), 0)
          FOR UPDATE SKIP LOCKED) claim
    WHERE j.id = claim.id
    RETURNING j.id, j.owner::oid;
$$;

------------------------------------------------------------------------
-- Students: training, models, prediction
------------------------------------------------------------------------

CREATE TABLE @extschema@.models (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    version    integer NOT NULL,
    task       text NOT NULL,
    method     text NOT NULL CHECK (method IN ('step_by_step', 'distill', 'finetune')),
    params     jsonb NOT NULL,      -- every hyperparameter in force
    labels     text[],              -- the task's label set when trained
    n_params   bigint NOT NULL,
    tokenizer  bytea NOT NULL,
    weights    bytea NOT NULL,
    metrics    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);

-- No foreign key: a background training logs progress before its model row exists.
CREATE TABLE @extschema@.training_log (
    model_id          bigint NOT NULL,
    step              integer NOT NULL,
    epoch             integer NOT NULL,
    label_loss        double precision,
    rationale_loss    double precision,
    lr                double precision,
    val_accuracy      double precision,
    tokens_per_second double precision,
    logged_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON @extschema@.training_log (model_id, step);

CREATE FUNCTION @extschema@.train(
    model            text,
    task             text,
    method           text DEFAULT 'step_by_step',
    source           text DEFAULT NULL,
    rationale_weight double precision DEFAULT 1.0,
    params           jsonb DEFAULT '{}',
    background       boolean DEFAULT true)
RETURNS bigint
AS 'MODULE_PATHNAME', 'distill_train'
LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@.drop_model(name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.models m WHERE m.name = drop_model.name) THEN
        RAISE EXCEPTION 'model "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    DELETE FROM @extschema@.training_log l
    WHERE l.model_id IN (SELECT id FROM @extschema@.models m WHERE m.name = drop_model.name);
    DELETE FROM @extschema@.models m WHERE m.name = drop_model.name;
END
$$;

-- Prediction functions are top-level so that they read naturally in queries.
CREATE FUNCTION public.distill_predict(model text, input text) RETURNS text
    AS 'MODULE_PATHNAME', 'distill_predict'
    LANGUAGE C STABLE PARALLEL SAFE STRICT;
CREATE FUNCTION public.distill_predict(model text, input text, candidates text[]) RETURNS text
    AS 'MODULE_PATHNAME', 'distill_predict_choice'
    LANGUAGE C STABLE PARALLEL SAFE STRICT;
CREATE FUNCTION public.distill_predict_proba(model text, input text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'distill_predict_proba'
    LANGUAGE C STABLE PARALLEL SAFE STRICT;
CREATE FUNCTION public.distill_predict_proba(model text, input text, candidates text[]) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'distill_predict_proba_choice'
    LANGUAGE C STABLE PARALLEL SAFE STRICT;
CREATE FUNCTION public.distill_explain(model text, input text) RETURNS text
    AS 'MODULE_PATHNAME', 'distill_explain'
    LANGUAGE C STABLE PARALLEL SAFE STRICT;
-- The tokens the model reads for input (<bos>, the task's tag, the input cut
-- to the model's max_input_tokens, <sep>), each as text.
CREATE FUNCTION @extschema@.tokenize(model text, input text, task text DEFAULT 'predict')
    RETURNS text[]
    AS 'MODULE_PATHNAME', 'distill_tokenize'
    LANGUAGE C STABLE PARALLEL SAFE STRICT;
-- The models this backend keeps loaded (distill.model_cache_mb), their
-- memory, and whether the current transaction uses them.
CREATE FUNCTION @extschema@.model_cache(
    OUT model text, OUT version integer, OUT bytes bigint, OUT in_use boolean)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'distill_model_cache'
    LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION @extschema@.evaluate(
    model text, source text, metric text DEFAULT 'exact',
    OUT n bigint, OUT accuracy double precision, OUT per_label jsonb)
RETURNS record
AS 'MODULE_PATHNAME', 'distill_evaluate'
LANGUAGE C STABLE STRICT;
