-- distill 0.2.0 -> 0.3.0 (ALTER EXTENSION distill UPDATE): imported
-- pretrained models, and weights stored in chunks.  Models stored before
-- keep their whole weights in models.weights and load as they did.
\echo Use "ALTER EXTENSION distill UPDATE TO '0.3.0'" to load this file. \quit

ALTER TABLE @extschema@.models ALTER COLUMN task DROP NOT NULL;
ALTER TABLE @extschema@.models DROP CONSTRAINT models_method_check,
    ADD CONSTRAINT models_method_check
        CHECK (method IN ('step_by_step', 'distill', 'finetune', 'imported'));

CREATE TABLE @extschema@.model_chunks (
    model_id bigint NOT NULL REFERENCES @extschema@.models (id)
                    ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    seq      integer NOT NULL,
    data     bytea NOT NULL,
    PRIMARY KEY (model_id, seq)
);
ALTER TABLE @extschema@.model_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
ALTER TABLE @extschema@.model_chunks ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON @extschema@.model_chunks FOR SELECT
    USING (EXISTS (SELECT FROM @extschema@.models m WHERE m.id = model_id));
SELECT pg_catalog.pg_extension_config_dump('@extschema@.model_chunks', '');
GRANT SELECT ON @extschema@.model_chunks TO distill_user;

CREATE FUNCTION @extschema@.import_model(
    name      text,
    path      text,
    format    text DEFAULT 'auto',
    tokenizer text DEFAULT NULL,
    params    jsonb DEFAULT '{}')
RETURNS integer
AS 'MODULE_PATHNAME', 'distill_import_model'
LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@.import_model(
    name      text,
    data      bytea,
    format    text DEFAULT 'auto',
    tokenizer bytea DEFAULT NULL,
    params    jsonb DEFAULT '{}')
RETURNS integer
AS 'MODULE_PATHNAME', 'distill_import_model_bytes'
LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@.generate(model text, prompt text, max_tokens integer DEFAULT 64)
    RETURNS text
    AS 'MODULE_PATHNAME', 'distill_generate'
    LANGUAGE C STABLE PARALLEL SAFE STRICT;

CREATE FUNCTION @extschema@.token_ids(model text, input text) RETURNS integer[]
    AS 'MODULE_PATHNAME', 'distill_token_ids'
    LANGUAGE C STABLE PARALLEL SAFE STRICT;

REVOKE EXECUTE ON FUNCTION
    @extschema@.import_model(text, text, text, text, jsonb),
    @extschema@.import_model(text, bytea, text, bytea, jsonb),
    @extschema@.generate(text, text, integer),
    @extschema@.token_ids(text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.import_model(text, text, text, text, jsonb),
    @extschema@.import_model(text, bytea, text, bytea, jsonb),
    @extschema@.generate(text, text, integer),
    @extschema@.token_ids(text, text)
    TO distill_user;
