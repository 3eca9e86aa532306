-- Imported pretrained models (docs/pretrained.md): stories260K, a real
-- llama2.c model, imported from its llama2.c files and from the Hugging Face
-- and GGUF files scripts/pretrained/convert.py made of it, must generate the
-- golden greedy texts of llama2.c byte for byte; bad checkpoints get clear
-- errors.  DISTILL_MODELS is the directory test/env.sh prepares.
\set SHOW_CONTEXT never
\getenv models DISTILL_MODELS
\set bos_text `cat test/data/stories260K/gen_bos_200.txt`
\set zoo_text `cat test/data/stories260K/gen_zoo_60.txt`
\set dog_text `cat test/data/stories260K/gen_prompt.txt`
CREATE TABLE golden (bos text, zoo text, dog text);
INSERT INTO golden VALUES (:'bos_text', :'zoo_text', :'dog_text');
SELECT length(bos), length(zoo), length(dog) FROM golden;

-- The three golden texts of a model: greedy from <bos> alone, after "Zoo"
-- and after "The little dog", for 200, 60 and 120 positions as llama2.c
-- counts them: each position of <bos> and the prompt but the last is
-- spent reading, each other one writes a token.
CREATE FUNCTION golden_texts(model text, OUT bos boolean, OUT zoo boolean, OUT dog boolean)
LANGUAGE sql AS $$
    SELECT distill.generate(model, '', 200) = g.bos,
           'Zoo' || distill.generate(model, 'Zoo',
                                     60 - cardinality(distill.token_ids(model, 'Zoo'))) = g.zoo,
           'The little dog' || distill.generate(model, 'The little dog',
                                     120 - cardinality(distill.token_ids(model, 'The little dog'))) = g.dog
    FROM golden g
$$;

-- llama2.c, from files on the server
SELECT distill.import_model('stories', :'models' || '/stories260K.bin',
                            tokenizer => :'models' || '/tok512.bin');
SELECT version, method, task, n_params, labels,
       metrics->>'format' AS format, metrics->>'architecture' AS arch,
       metrics->>'source_dtype' AS dtype, metrics->>'context_length' AS context,
       metrics->>'n_kv_heads' AS kv_heads, jsonb_array_length(metrics->'files') AS files
FROM distill.models WHERE name = 'stories';
-- the SHA-256 of each file read, as sha256sum gives them (test/data/stories260K/README.md)
SELECT f->>'sha256' AS sha256, (f->>'bytes')::bigint AS bytes
FROM distill.models, jsonb_array_elements(metrics->'files') f
WHERE name = 'stories' ORDER BY 2 DESC;
SELECT * FROM golden_texts('stories');

-- the llama2.c encoder's ids (scores-greedy BPE, a space put before the text)
SELECT distill.token_ids('stories', 'Zoo');
SELECT distill.token_ids('stories', 'The little dog');
SELECT distill.token_ids('stories', '');
SELECT distill.tokenize('stories', 'Once upon a time');
SELECT distill.generate('stories', 'Once upon a time', 0) = '' AS nothing_asked;

-- Hugging Face directories: float32, sharded, and stored in the dtype they came in
SELECT distill.import_model('stories_hf', :'models' || '/hf');
SELECT * FROM golden_texts('stories_hf');
SELECT distill.import_model('stories_sharded', :'models' || '/hf-sharded', 'hf');
SELECT * FROM golden_texts('stories_sharded');
SELECT distill.import_model('stories_bf16', :'models' || '/hf-bf16');
SELECT m.metrics->>'source_dtype' AS dtype, sum(length(c.data)) AS stored_bytes,
       sum(length(c.data)) * 2 <= (SELECT sum(length(c2.data)) FROM distill.model_chunks c2
                                  JOIN distill.models m2 ON m2.id = c2.model_id
                                  WHERE m2.name = 'stories_hf') AS half
FROM distill.models m JOIN distill.model_chunks c ON c.model_id = m.id
WHERE m.name = 'stories_bf16' GROUP BY 1;

-- GGUF: float32 gives the texts; so does f16 (as llama.cpp's and a float64
-- forward on its weights do); q8_0 departs from them after the 49th token
-- of "Zoo" (test/data/pretrained/README.md), so up to there only
SELECT distill.import_model('stories_gguf', :'models' || '/stories260K-f32.gguf');
SELECT * FROM golden_texts('stories_gguf');
SELECT distill.token_ids('stories_gguf', 'The little dog') =
       distill.token_ids('stories', 'The little dog') AS same_ids;
SELECT distill.import_model('stories_f16', :'models' || '/stories260K-f16.gguf');
SELECT distill.import_model('stories_q8', :'models' || '/stories260K-q8_0.gguf');
SELECT name, metrics->>'source_dtype' AS dtype
FROM distill.models WHERE name IN ('stories_f16', 'stories_q8') ORDER BY name;
SELECT * FROM golden_texts('stories_f16');
SELECT starts_with(zoo, 'Zoo' || distill.generate('stories_q8', 'Zoo', 40)) AS q8_zoo_40
FROM golden;

-- A new session loads the chunks again and answers the same.
\c
\set SHOW_CONTEXT never
SELECT * FROM golden_texts('stories');

-- Zero-shot choices with a prompt template
SELECT distill.import_model('stories_qa', :'models' || '/stories260K.bin',
                            tokenizer => :'models' || '/tok512.bin',
                            params => '{"prompt_template": "{input} She loved to play with her"}');
SELECT distill_predict('stories_qa', 'Lily had a red ball.', ARRAY['ball', 'cloud', 'ball']);
-- (to six decimals: the sixth significant digit depends on the CPU's exp())
SELECT key AS candidate, round(value::numeric, 6) AS probability
FROM jsonb_each_text(distill_predict_proba('stories_qa', 'Lily had a red ball.',
                                           ARRAY['ball', 'cloud']));
SELECT length(distill_predict('stories_qa', 'Lily had a red ball.')) > 0 AS continues;
SELECT (distill.evaluate('stories_qa',
        $$SELECT 'Tom saw a dog.' AS input, 'ball' AS label, ARRAY['ball', 'cloud'] AS choices$$)).n;

-- Errors
SELECT distill_explain('stories', 'Once');
SELECT distill.generate('stories', 'Zoo', -1);
SELECT distill.generate('stories', repeat('Zoo ', 600));
SELECT distill.import_model('broken', '/no/such/model.bin');
SELECT distill.import_model('broken', 'relative/model.bin');
SELECT distill.import_model('broken', '/', 'gguf');
SELECT distill.import_model('broken', '/dev/null', 'hf');
SELECT distill.import_model('broken', :'models' || '/stories260K.bin', 'onnx');
SELECT distill.import_model('broken', :'models' || '/stories260K.bin',
                            params => '{"temperature": 1}');
SELECT distill.import_model('broken', :'models' || '/stories260K.bin',
                            params => '{"max_seq_len": 4}');
SELECT distill.import_model('', :'models' || '/stories260K.bin');
SELECT distill.import_model('broken', '\x00010203'::bytea, 'gguf');
SELECT distill.import_model('broken', '\x47475546'::bytea);
SELECT distill.import_model('broken', '\x0102'::bytea, 'hf');
SELECT distill.import_model('broken', pg_read_binary_file(:'models' || '/stories260K.bin'));
SELECT distill.import_model('broken', pg_read_binary_file(:'models' || '/stories260K.bin', 0, 5000),
                            tokenizer => pg_read_binary_file(:'models' || '/tok512.bin'));
SELECT distill.import_model('broken', pg_read_binary_file(:'models' || '/stories260K-f32.gguf', 0, 100000));
SELECT count(*) AS nothing_stored FROM distill.models WHERE name = 'broken';

-- A distill user without server file access imports from bytes.
CREATE ROLE pretrained_user IN ROLE distill_user;
GRANT SELECT ON golden TO pretrained_user;
\set gguf_base64 `base64 -w0 "$DISTILL_MODELS/stories260K-f32.gguf"`
SET ROLE pretrained_user;
SELECT distill.import_model('mine', :'models' || '/stories260K-f32.gguf');
SELECT distill.import_model('mine', decode(:'gguf_base64', 'base64'));
SELECT * FROM golden_texts('mine');
-- others' chunks stay hidden
SELECT count(*) AS chunks_seen FROM distill.model_chunks c
WHERE NOT EXISTS (SELECT FROM distill.models m WHERE m.id = c.model_id AND m.name = 'mine');
SELECT distill.import_model('stories', decode(:'gguf_base64', 'base64'));
RESET ROLE;

SELECT distill.drop_model(name) FROM (SELECT DISTINCT name FROM distill.models) m;
SELECT count(*) AS chunks_left FROM distill.model_chunks;
DROP FUNCTION golden_texts;
DROP TABLE golden;
DROP ROLE pretrained_user;
