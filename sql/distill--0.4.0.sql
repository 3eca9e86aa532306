-- distill 0.4.0: teachers, tasks, annotation, students (from scratch or
-- fine-tuned on an imported model), imported pretrained models,
-- deployments, evaluations, background jobs.  Older databases reach it
-- through the distill--A--B.sql scripts (ALTER EXTENSION distill UPDATE).
\echo Use "CREATE EXTENSION distill" to load this file. \quit

-- Who may do what (docs/security.md):
--
-- * Users are members of the role distill_user, which may read distill's
--   tables and call its functions.  Nobody but the extension's owner may
--   write the tables directly: every change goes through a function.
-- * Each task, annotation, model, training log row, deployment, evaluation,
--   job and schedule has an owner, set by the server to the role calling
--   the function that made it (current_user), which no user can choose or
--   change.  A role sees the rows of the roles whose privileges it has
--   (row-level security), and only those.  A job runs as its owner.
-- * Teachers hold an endpoint and the name of an environment variable whose
--   value is sent there: only the extension's owner, and roles it grants
--   EXECUTE on create_teacher to, may create them.
-- * Functions that change tables are C functions that call their
--   `_`-prefixed twin (SECURITY DEFINER, not executable by users), passing
--   the calling role, which SQL cannot forge (src/pg/privileges.c).
-- * Every SQL function runs with search_path pinned to pg_catalog, pg_temp.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'distill_user') THEN
        CREATE ROLE distill_user NOLOGIN;
    END IF;
END
$$;

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
    owner         regrole NOT NULL,
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
    owner             regrole NOT NULL,   -- the task's owner
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
    owner       regrole NOT NULL,   -- the role that queued it, and that it runs as
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
CREATE INDEX ON @extschema@.jobs (finished_at);

CREATE TABLE @extschema@.schedules (
    name       text PRIMARY KEY,
    -- from a second to a century, measured in seconds (see _check_every)
    every      interval NOT NULL
               CHECK (extract(epoch FROM every) BETWEEN 1 AND 3155760000),
    kind       text NOT NULL CHECK (kind IN ('annotate', 'train', 'evaluate')),
    args       jsonb NOT NULL,
    owner      regrole NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    next_run   timestamptz NOT NULL,
    last_job   bigint,
    last_error text,                -- why the schedule stopped itself, if it did
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE @extschema@.models (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    version    integer NOT NULL,
    owner      regrole NOT NULL,    -- every version of a name has the owner of its first
    task       text,                -- NULL for an imported model
    method     text NOT NULL CHECK (method IN ('step_by_step', 'distill', 'finetune', 'imported')),
    params     jsonb NOT NULL,      -- every hyperparameter in force
    labels     text[],              -- the task's label set when trained
    n_params   bigint NOT NULL,
    tokenizer  bytea NOT NULL,
    weights    bytea NOT NULL,      -- the header; the data is in model_chunks
    metrics    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    base_id    bigint REFERENCES @extschema@.models (id),
                                    -- the base version whose weights this one's
                                    -- adapters apply to (LoRA), else NULL
    UNIQUE (name, version)
);

-- The weights' data, in pieces of at most 8 MB (src/pg/model_store.c), so
-- that a model of any size stays within PostgreSQL's 1 GB cap on a value
-- and loads a piece at a time.  (Models stored by 0.1.0 and 0.2.0 hold
-- everything in models.weights and have no chunks.)  Deferred: a model's
-- chunks are written before its row, whose header holds their checksum.
CREATE TABLE @extschema@.model_chunks (
    model_id bigint NOT NULL REFERENCES @extschema@.models (id)
                    ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    seq      integer NOT NULL,
    data     bytea NOT NULL,
    PRIMARY KEY (model_id, seq)
);
-- Weights do not compress: storing them as they are saves the attempt.
ALTER TABLE @extschema@.model_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- No foreign key: a background training logs progress before its model row exists.
CREATE TABLE @extschema@.training_log (
    model_id          bigint NOT NULL,
    job_id            bigint NOT NULL,
    owner             regrole NOT NULL,
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
CREATE INDEX ON @extschema@.training_log (job_id);

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

-- A role sees the rows of the roles whose privileges it has.  (Superusers
-- and the extension's owner, who owns the tables, see every row.)
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tasks', 'annotations', 'jobs', 'schedules', 'models', 'training_log',
                             'deployments', 'evaluations'] LOOP
        EXECUTE format('ALTER TABLE @extschema@.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY owner_only ON @extschema@.%I FOR SELECT'
                       ' USING (pg_catalog.pg_has_role(owner, ''USAGE''))', t);
    END LOOP;
END
$$;
-- A model's chunks are seen by whoever sees the model.
ALTER TABLE @extschema@.model_chunks ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON @extschema@.model_chunks FOR SELECT
    USING (EXISTS (SELECT FROM @extschema@.models m WHERE m.id = model_id));

-- pg_dump keeps every row of these tables, and their sequences' positions:
-- they hold what users made (the install script adds no row to any).
-- (One call per statement: each updates the extension's catalog row.)
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['teachers', 'tasks', 'annotations', 'jobs', 'schedules', 'models',
                             'model_chunks', 'training_log', 'deployments', 'evaluations',
                             'jobs_id_seq', 'models_id_seq', 'deployments_id_seq',
                             'evaluations_id_seq'] LOOP
        PERFORM pg_catalog.pg_extension_config_dump(format('@extschema@.%I', t)::regclass, '');
    END LOOP;
END
$$;

------------------------------------------------------------------------
-- Teachers
------------------------------------------------------------------------

-- NULL when the URL is a usable http(s) base URL, else why not (libcurl's parser).
CREATE FUNCTION @extschema@._endpoint_problem(url text) RETURNS text
    AS 'MODULE_PATHNAME', 'distill_endpoint_problem'
    LANGUAGE C IMMUTABLE STRICT;

-- The teacher options with defaults filled in; raises on anything unknown or out of range.
CREATE FUNCTION @extschema@._teacher_options(options jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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

-- Raise unless name may hold a teacher's API key: a variable name that
-- starts with distill.api_key_env_prefix, so that whoever creates teachers
-- cannot send the server's other secrets (PGPASSWORD, cloud credentials)
-- to an endpoint of their choosing.  Checked again at each use.
CREATE FUNCTION @extschema@._check_api_key_env(name text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prefix text := current_setting('distill.api_key_env_prefix');
BEGIN
    IF name IS NULL THEN
        RETURN;
    END IF;
    IF name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'invalid api_key_env "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'api_key_env is the name of an environment variable of the server process, not the key itself.',
                  HINT = format('Use a name like %sOPENAI_API_KEY, and set that variable in the environment PostgreSQL starts with.', prefix);
    END IF;
    IF NOT starts_with(name, prefix) THEN
        RAISE EXCEPTION 'api_key_env "%" does not start with "%"', name, prefix
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Teachers may only read server environment variables whose names start with distill.api_key_env_prefix.',
                  HINT = format('Put the key in a variable named like %s%s; a superuser may change distill.api_key_env_prefix.', prefix, name);
    END IF;
END
$$;

CREATE FUNCTION @extschema@._create_teacher(
    caller      regrole,
    name        text,
    endpoint    text,
    model       text,
    api         text,
    api_key_env text,
    options     jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text;
BEGIN
    IF coalesce(name, '') = '' THEN
        RAISE EXCEPTION 'teacher name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM @extschema@.teachers t WHERE t.name = _create_teacher.name) THEN
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
    PERFORM @extschema@._check_api_key_env(api_key_env);
    INSERT INTO @extschema@.teachers (name, endpoint, model, api, api_key_env, options)
    VALUES (name, endpoint, model, api, api_key_env, @extschema@._teacher_options(options));
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
AS 'MODULE_PATHNAME', 'distill_call_as_owner'
LANGUAGE C VOLATILE;

-- Refuse to drop a teacher or task that has annotations, unless cascade:
-- annotations cost teacher calls, so they never go silently.  Annotations
-- of roles the caller cannot see are never dropped by it.
CREATE FUNCTION @extschema@._check_annotations(caller regrole, kind text, name text, cascade boolean)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
    others bigint;
BEGIN
    EXECUTE format('SELECT count(*), count(*) FILTER (WHERE NOT pg_has_role($2, owner, ''USAGE''))'
                   ' FROM @extschema@.annotations WHERE %I = $1', kind)
    INTO n, others USING name, caller;
    IF others > 0 THEN
        RAISE EXCEPTION '% "%" has % annotations of other roles', kind, name, others
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'A superuser can drop it with cascade => true.';
    END IF;
    IF n > 0 AND NOT cascade THEN
        RAISE EXCEPTION '% "%" has % annotations', kind, name, n
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = format('Use distill.drop_%s(%L, cascade => true) to delete them too.', kind, name);
    END IF;
END
$$;

CREATE FUNCTION @extschema@._drop_teacher(caller regrole, name text, cascade boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM @extschema@.teachers t WHERE t.name = _drop_teacher.name) THEN
        RAISE EXCEPTION 'teacher "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM @extschema@._check_annotations(caller, 'teacher', name, cascade);
    DELETE FROM @extschema@.teachers t WHERE t.name = _drop_teacher.name;
END
$$;

CREATE FUNCTION @extschema@.drop_teacher(name text, cascade boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'distill_call_as_owner'
LANGUAGE C VOLATILE;

------------------------------------------------------------------------
-- Tasks
------------------------------------------------------------------------

CREATE FUNCTION @extschema@._check_examples(examples jsonb, labels text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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
    IF EXISTS (SELECT FROM unnest(labels) l WHERE coalesce(trim(l), '') = '') THEN
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

CREATE FUNCTION @extschema@._create_task(
    caller        regrole,
    name          text,
    instruction   text,
    labels        text[],
    examples      jsonb,
    answer_prefix text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(name, '') = '' THEN
        RAISE EXCEPTION 'task name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM @extschema@.tasks t WHERE t.name = _create_task.name) THEN
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
    INSERT INTO @extschema@.tasks (name, owner, instruction, labels, examples, answer_prefix)
    VALUES (name, caller, instruction, labels, coalesce(examples, '[]'), trim(answer_prefix));
END
$$;

CREATE FUNCTION @extschema@.create_task(
    name          text,
    instruction   text,
    labels        text[] DEFAULT NULL,
    examples      jsonb DEFAULT '[]',
    answer_prefix text DEFAULT 'So the answer is')
RETURNS void
AS 'MODULE_PATHNAME', 'distill_call_as_owner'
LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@._drop_task(caller regrole, name text, cascade boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner regrole;
BEGIN
    SELECT t.owner INTO owner FROM @extschema@.tasks t WHERE t.name = _drop_task.name;
    IF NOT FOUND OR NOT pg_has_role(caller, owner, 'USAGE') THEN
        RAISE EXCEPTION 'task "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM @extschema@._check_annotations(caller, 'task', name, cascade);
    DELETE FROM @extschema@.tasks t WHERE t.name = _drop_task.name;
END
$$;

CREATE FUNCTION @extschema@.drop_task(name text, cascade boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'distill_call_as_owner'
LANGUAGE C VOLATILE;

------------------------------------------------------------------------
-- Asking and annotating
------------------------------------------------------------------------

CREATE FUNCTION @extschema@.ask(
    teacher text, task text, input text,
    OUT rationale text, OUT label text, OUT raw text)
RETURNS record
AS 'MODULE_PATHNAME', 'distill_ask'
LANGUAGE C VOLATILE STRICT;

-- Runs the caller's source query with the caller's search_path.
CREATE FUNCTION @extschema@.annotate(
    task text, teacher text, source text, background boolean DEFAULT true)
RETURNS bigint
AS 'MODULE_PATHNAME', 'distill_annotate'
LANGUAGE C VOLATILE STRICT;

------------------------------------------------------------------------
-- Background jobs and schedules
------------------------------------------------------------------------

-- The arguments of a job of this kind, checked (every key known, every
-- value of its type) and completed with defaults.
CREATE FUNCTION @extschema@._job_args(kind text, args jsonb) RETURNS jsonb
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

-- Raise unless a background job can run as role: its worker logs in as it.
CREATE FUNCTION @extschema@._check_job_owner(role regrole) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    can_login boolean;
BEGIN
    SELECT rolcanlogin INTO can_login FROM pg_roles WHERE oid = role;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role % of this job no longer exists', role
            USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT can_login THEN
        RAISE EXCEPTION 'background jobs run as the role that queues them, and role % cannot log in', role
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Queue it as a role with LOGIN, or pass background => false to run it in this session.';
    END IF;
END
$$;

-- Record a job of owner: queued for a worker, or running in this session.
-- The only way jobs are made.
CREATE FUNCTION @extschema@._queue_job(owner regrole, kind text, args jsonb, here boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    args := @extschema@._job_args(kind, args);
    IF here THEN
        INSERT INTO @extschema@.jobs (kind, args, owner, status, started_at, worker_pid, attempts)
        VALUES (kind, args, owner, 'running', now(), pg_backend_pid(), 1)
        RETURNING id INTO job;
    ELSE
        PERFORM @extschema@._check_job_owner(owner);
        INSERT INTO @extschema@.jobs (kind, args, owner) VALUES (kind, args, owner)
        RETURNING id INTO job;
    END IF;
    RETURN job;
END
$$;

CREATE FUNCTION @extschema@.wait(job bigint, timeout interval DEFAULT NULL) RETURNS text
    AS 'MODULE_PATHNAME', 'distill_wait'
    LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@.cancel(job bigint) RETURNS text
    AS 'MODULE_PATHNAME', 'distill_cancel'
    LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION @extschema@._check_every(every interval) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Measured in seconds: '1 mon -29 days' is positive as a month counts
    -- 30 days, but would step backwards from Feb 1.
    IF every IS NULL OR NOT extract(epoch FROM every) BETWEEN 1 AND 3155760000 THEN
        RAISE EXCEPTION 'a schedule runs at most every second and at least once a century'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got every => %s.', coalesce(every::text, 'NULL')),
                  HINT = 'For cron-like times (every day at 03:00), call distill.annotate() from pg_cron; see the jobs documentation.';
    END IF;
END
$$;

CREATE FUNCTION @extschema@._schedule(caller regrole, name text, every interval, kind text, args jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(name, '') = '' THEN
        RAISE EXCEPTION 'schedule name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@._check_every(every);
    IF EXISTS (SELECT FROM @extschema@.schedules s WHERE s.name = _schedule.name) THEN
        RAISE EXCEPTION 'schedule "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = format('Remove it first with distill.unschedule(%L).', name);
    END IF;
    PERFORM @extschema@._check_job_owner(caller);
    INSERT INTO @extschema@.schedules (name, every, kind, args, owner, next_run)
    VALUES (name, every, kind, @extschema@._job_args(kind, args), caller, now());
END
$$;

CREATE FUNCTION @extschema@.schedule(name text, every interval, kind text, args jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'distill_call_as_owner'
LANGUAGE C VOLATILE;

-- The schedule's row, locked, once caller is known to own it.
CREATE FUNCTION @extschema@._owned_schedule(caller regrole, name text)
RETURNS @extschema@.schedules
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s @extschema@.schedules;
BEGIN
    SELECT * INTO s FROM @extschema@.schedules WHERE schedules.name = _owned_schedule.name FOR UPDATE;
    IF NOT FOUND OR NOT pg_has_role(caller, s.owner, 'USAGE') THEN
        RAISE EXCEPTION 'schedule "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN s;
END
$$;

CREATE FUNCTION @extschema@._unschedule(caller regrole, name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._owned_schedule(caller, name);
    DELETE FROM @extschema@.schedules s WHERE s.name = _unschedule.name;
END
$$;

CREATE FUNCTION @extschema@.unschedule(name text) RETURNS void
AS 'MODULE_PATHNAME', 'distill_call_as_owner'
LANGUAGE C VOLATILE;

-- Pause (enabled => false) or resume a schedule; resuming clears last_error.
CREATE FUNCTION @extschema@._enable_schedule(caller regrole, name text, enabled boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._owned_schedule(caller, name);
    UPDATE @extschema@.schedules s
    SET enabled = coalesce(_enable_schedule.enabled, true),
        last_error = CASE WHEN coalesce(_enable_schedule.enabled, true) THEN NULL ELSE last_error END
    WHERE s.name = _enable_schedule.name;
END
$$;

CREATE FUNCTION @extschema@.enable_schedule(name text, enabled boolean DEFAULT true) RETURNS void
AS 'MODULE_PATHNAME', 'distill_call_as_owner'
LANGUAGE C VOLATILE;

-- The launcher's work, in SQL; it runs these as the bootstrap superuser.

-- A job whose worker stopped without ending it (a crash, a restart, a
-- terminated worker) goes back to the queue while it has attempts left,
-- else fails with a message saying so.  With a job id: that job, whose
-- worker the launcher saw stop; without: every running job with no live
-- worker (when the launcher starts).
CREATE FUNCTION @extschema@._recover_jobs(job bigint DEFAULT NULL) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
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

-- The first run after last that is still to come, in whole periods of
-- every (in seconds, so that it always moves forward).
CREATE FUNCTION @extschema@._next_run(last timestamptz, every interval) RETURNS timestamptz
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    period float8 := extract(epoch FROM every);
    periods float8 := floor(extract(epoch FROM now() - last) / period) + 1;
BEGIN
    RETURN last + make_interval(secs => greatest(periods, 1) * period);
END
$$;

-- Queue a job for every due schedule whose previous job has ended.  A
-- schedule whose job cannot be queued (its owner was dropped, its
-- arguments no longer pass) stops itself with the reason in last_error;
-- the others go on.
CREATE FUNCTION @extschema@._fire_schedules() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s record;
    job bigint;
BEGIN
    FOR s IN SELECT * FROM @extschema@.schedules
             WHERE enabled AND next_run <= now()
               AND NOT EXISTS (SELECT FROM @extschema@.jobs j
                               WHERE j.id = last_job AND j.status IN ('queued', 'running'))
             FOR UPDATE SKIP LOCKED
    LOOP
        BEGIN
            job := @extschema@._queue_job(s.owner, s.kind, s.args);
            UPDATE @extschema@.schedules
            SET last_job = job, next_run = @extschema@._next_run(s.next_run, s.every)
            WHERE name = s.name;
        EXCEPTION WHEN OTHERS THEN
            UPDATE @extschema@.schedules SET enabled = false, last_error = SQLERRM
            WHERE name = s.name;
        END;
    END LOOP;
END
$$;

-- Mark queued jobs running, as many as there are free worker slots.  A job
-- whose owner can no longer log in fails instead: its worker could not.
CREATE FUNCTION @extschema@._claim_jobs(max_workers integer)
RETURNS TABLE (id bigint, owner oid)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    UPDATE @extschema@.jobs j
    SET status = 'failed', finished_at = now(),
        error = format('its owner, role %s, no longer exists or cannot log in', j.owner)
    WHERE j.status = 'queued'
      AND NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = j.owner AND r.rolcanlogin);
    RETURN QUERY
    UPDATE @extschema@.jobs j
    SET status = 'running', started_at = now(), attempts = j.attempts + 1, worker_pid = NULL
    FROM (SELECT q.id FROM @extschema@.jobs q WHERE q.status = 'queued' ORDER BY q.id
          LIMIT greatest(max_workers - (SELECT count(*) FROM @extschema@.jobs r
                                        WHERE r.status = 'running'), 0)
          FOR UPDATE SKIP LOCKED) claim
    WHERE j.id = claim.id
    RETURNING j.id, j.owner::oid;
END
$$;

-- Forget jobs that ended more than retention ago, with the training log of
-- those that left no model (a failed or cancelled training).
CREATE FUNCTION @extschema@._purge_jobs(retention interval) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (
        DELETE FROM @extschema@.jobs WHERE finished_at < now() - retention RETURNING id)
    DELETE FROM @extschema@.training_log l USING gone
    WHERE l.job_id = gone.id
      AND NOT EXISTS (SELECT FROM @extschema@.models m WHERE m.id = l.model_id);
$$;

------------------------------------------------------------------------
-- Students: training, models, prediction
------------------------------------------------------------------------

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

CREATE FUNCTION @extschema@._drop_model(caller regrole, name text) RETURNS void
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

CREATE FUNCTION @extschema@.drop_model(name text) RETURNS void
AS 'MODULE_PATHNAME', 'distill_call_as_owner'
LANGUAGE C VOLATILE;

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

-- Runs the caller's source query with the caller's search_path.
CREATE FUNCTION @extschema@.evaluate(
    model text, source text, metric text DEFAULT 'exact',
    OUT n bigint, OUT accuracy double precision, OUT per_label jsonb)
RETURNS record
AS 'MODULE_PATHNAME', 'distill_evaluate'
LANGUAGE C STABLE STRICT;

-- The same as a job, in the background or in this session; the result is
-- a row of distill.evaluations.  Returns the job's id.
CREATE FUNCTION @extschema@.evaluate(
    model text, source text, metric text, background boolean)
RETURNS bigint
AS 'MODULE_PATHNAME', 'distill_evaluate_job'
LANGUAGE C VOLATILE STRICT;

------------------------------------------------------------------------
-- Pretrained models (docs/pretrained.md)
------------------------------------------------------------------------

-- A checkpoint on the server's file system: a Hugging Face directory, a
-- GGUF file or a llama2.c .bin.  Like COPY FROM a file, for superusers and
-- members of pg_read_server_files (checked in C).  Returns the version.
CREATE FUNCTION @extschema@.import_model(
    name      text,
    path      text,
    format    text DEFAULT 'auto',
    tokenizer text DEFAULT NULL,
    params    jsonb DEFAULT '{}')
RETURNS integer
AS 'MODULE_PATHNAME', 'distill_import_model'
LANGUAGE C VOLATILE;

-- The same from the file's bytes (GGUF, or llama2.c with its tokenizer):
-- for any distill user, no server file access needed.
CREATE FUNCTION @extschema@.import_model(
    name      text,
    data      bytea,
    format    text DEFAULT 'auto',
    tokenizer bytea DEFAULT NULL,
    params    jsonb DEFAULT '{}')
RETURNS integer
AS 'MODULE_PATHNAME', 'distill_import_model_bytes'
LANGUAGE C VOLATILE;

-- The greedy continuation of prompt (without the prompt).
CREATE FUNCTION @extschema@.generate(model text, prompt text, max_tokens integer DEFAULT 64)
    RETURNS text
    AS 'MODULE_PATHNAME', 'distill_generate'
    LANGUAGE C STABLE PARALLEL SAFE STRICT;

-- The ids the model's tokenizer makes of input, without special tokens.
CREATE FUNCTION @extschema@.token_ids(model text, input text) RETURNS integer[]
    AS 'MODULE_PATHNAME', 'distill_token_ids'
    LANGUAGE C STABLE PARALLEL SAFE STRICT;

------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------

-- Tables: read through row-level security, written only through functions.
GRANT USAGE ON SCHEMA @extschema@ TO distill_user;
GRANT SELECT ON @extschema@.teachers, @extschema@.tasks, @extschema@.annotations,
                @extschema@.jobs, @extschema@.schedules, @extschema@.models,
                @extschema@.model_chunks, @extschema@.training_log, @extschema@.deployments,
                @extschema@.evaluations
    TO distill_user;

-- Functions: the API to distill_user, the rest (the `_` functions, the
-- launcher's) to nobody.  create_teacher and drop_teacher stay the
-- extension owner's, who may grant them to trusted roles.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.create_task(text, text, text[], jsonb, text),
    @extschema@.drop_task(text, boolean),
    @extschema@.ask(text, text, text),
    @extschema@.annotate(text, text, text, boolean),
    @extschema@.wait(bigint, interval),
    @extschema@.cancel(bigint),
    @extschema@.schedule(text, interval, text, jsonb),
    @extschema@.unschedule(text),
    @extschema@.enable_schedule(text, boolean),
    @extschema@.train(text, text, text, text, double precision, jsonb, boolean, text, boolean),
    @extschema@.drop_model(text),
    @extschema@.tokenize(text, text, text),
    @extschema@.model_cache(),
    @extschema@.evaluate(text, text, text),
    @extschema@.evaluate(text, text, text, boolean),
    @extschema@.deploy(text, text),
    @extschema@.deploy(text, integer),
    @extschema@.deployed_version(text),
    @extschema@.import_model(text, text, text, text, jsonb),
    @extschema@.import_model(text, bytea, text, bytea, jsonb),
    @extschema@.generate(text, text, integer),
    @extschema@.token_ids(text, text)
    TO distill_user;
REVOKE EXECUTE ON FUNCTION
    public.distill_predict(text, text),
    public.distill_predict(text, text, text[]),
    public.distill_predict_proba(text, text),
    public.distill_predict_proba(text, text, text[]),
    public.distill_explain(text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    public.distill_predict(text, text),
    public.distill_predict(text, text, text[]),
    public.distill_predict_proba(text, text),
    public.distill_predict_proba(text, text, text[]),
    public.distill_explain(text, text)
    TO distill_user;
