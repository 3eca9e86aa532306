-- Students fine-tuned on an imported model (distill.train's base,
-- docs/pretrained.md): stories260K, the one real pretrained model here,
-- learns which animal a story sentence names, in this session and as a
-- background job; its sequences are the task tags as text in the base's
-- vocabulary; what cannot work is refused with a hint.
\set SHOW_CONTEXT never
\getenv models DISTILL_MODELS
SELECT distill.import_model('stories', :'models' || '/stories260K.bin',
                            tokenizer => :'models' || '/tok512.bin') AS imported;
SELECT distill.create_task('animal', 'Which animal does the story name?',
                           labels => ARRAY['dog', 'cat', 'bird']) IS NOT NULL AS created;

-- 120 sentences, made up the same way each run; 100 to train on, 20 held out
CREATE TABLE stories AS
SELECT i,
       (ARRAY['Lily', 'Tom', 'Sue', 'Ben', 'Mia', 'Max', 'Anna', 'Sam'])[1 + (i * 7) % 8]
       || ' went to the '
       || (ARRAY['park', 'garden', 'house', 'forest', 'river', 'school'])[1 + (i * 5) % 6]
       || '. ' || (ARRAY['She', 'He'])[1 + (i / 3) % 2] || ' '
       || (ARRAY['saw', 'found', 'played with', 'ran after', 'liked'])[1 + (i * 3) % 5]
       || ' a big ' || (ARRAY['dog', 'cat', 'bird'])[1 + i % 3] || '.' AS body,
       (ARRAY['dog', 'cat', 'bird'])[1 + i % 3] AS animal
FROM generate_series(1, 120) i;

SELECT distill.train('storyteller', 'animal', 'step_by_step',
                     'SELECT body AS input, animal AS label,
                             ''The story says a '' || animal || ''.'' AS rationale
                      FROM stories WHERE i <= 100',
                     params => '{"epochs": 4, "lr": 0.003, "max_input_tokens": 32,
                                 "max_target_tokens": 16, "validation_fraction": 0.2}',
                     background => false, base => 'stories') > 0 AS trained;

-- the student keeps the base's shape and tokenizer, and says which base
SELECT s.version, s.method, s.task, s.n_params = b.n_params AS same_shape,
       s.tokenizer = b.tokenizer AS same_tokenizer, s.base_id IS NULL AS whole_model,
       s.params->>'base' AS base, s.params->>'base_version' AS base_version,
       s.params->>'dropout' AS dropout, s.params->>'prefix_lm' AS prefix_lm,
       s.params->>'lr' AS lr, s.params ? 'd_model' AS has_d_model,
       (s.metrics->>'val_accuracy')::float8 >= 0.9 AS learned
FROM distill.models s, distill.models b
WHERE s.name = 'storyteller' AND b.name = 'stories';

-- it answers the held-out sentences, and explains them
SELECT count(*) FILTER (WHERE distill_predict('storyteller', body) = animal) AS right,
       count(*) AS held_out
FROM stories WHERE i > 100;
SELECT distill_predict('storyteller', 'Tom went to the river. He saw a big cat.') AS answer,
       distill_explain('storyteller', 'Tom went to the river. He saw a big cat.') AS why;
SELECT distill_predict_proba('storyteller', 'Anna liked a big bird.')->>'bird' > '0.5' AS sure;

-- its sequences: <bos>, the tag "predict:" and the input as text, a newline
SELECT distill.tokenize('storyteller', 'A cat.');
SELECT distill.tokenize('storyteller', 'A cat.', 'explain');

-- the same as a background job: the worker loads the base itself
SELECT distill.train('storyteller', 'animal', 'distill',
                     'SELECT body AS input, animal AS label FROM stories WHERE i <= 60',
                     params => '{"epochs": 2, "lr": 0.003, "max_input_tokens": 32,
                                 "max_target_tokens": 8, "validation_fraction": 0}',
                     base => 'stories') AS job \gset
SELECT distill.wait(:job);
SELECT version, method, params->>'base' AS base, params->>'epochs' AS epochs,
       metrics->>'train_examples' AS rows
FROM distill.models WHERE name = 'storyteller' ORDER BY version;
SELECT count(*) FILTER (WHERE distill_predict('storyteller', body) = animal) >= 15 AS mostly_right
FROM stories WHERE i > 100;

-- LoRA: the new version stores rank-4 adapters and names its exact base
SELECT distill.train('storylora', 'animal', 'step_by_step',
                     'SELECT body AS input, animal AS label,
                             ''The story says a '' || animal || ''.'' AS rationale
                      FROM stories WHERE i <= 100',
                     params => '{"epochs": 4, "lr": 0.01, "max_input_tokens": 32,
                                 "max_target_tokens": 16, "validation_fraction": 0.2,
                                 "lora_rank": 4, "lora_targets": ["q", "v", "gate", "up", "down"]}',
                     background => false, base => 'stories') > 0 AS trained;
SELECT s.base_id = b.id AS on_its_base, s.n_params = b.n_params AS runs_the_base,
       (s.metrics->>'lora_params')::int AS lora_params,
       s.params->'lora_targets' AS targets, s.params->>'lora_alpha' AS alpha,
       (SELECT sum(length(data)) FROM distill.model_chunks WHERE model_id = s.id)
         < (SELECT sum(length(data)) FROM distill.model_chunks WHERE model_id = b.id) / 4
         AS adapters_only
FROM distill.models s, distill.models b
WHERE s.name = 'storylora' AND b.name = 'stories';
SELECT count(*) FILTER (WHERE distill_predict('storylora', body) = animal) AS right,
       count(*) AS held_out
FROM stories WHERE i > 100;
SELECT starts_with(distill_explain('storylora', 'Tom went to the river. He saw a big cat.'),
                   'The story says a cat.') AS explains;
-- the base answers as it did: its weights are not touched
SELECT distill.generate('stories', 'Once upon a time', 12);

-- a base that students' adapters use cannot be dropped before them
SELECT distill.drop_model('stories');
-- a new version of the base: the students keep theirs
SELECT distill.import_model('stories', :'models' || '/stories260K.bin',
                            tokenizer => :'models' || '/tok512.bin') AS imported;
SELECT b.version AS base_version FROM distill.models s JOIN distill.models b ON b.id = s.base_id
WHERE s.name = 'storylora';
SELECT distill_predict('storylora', 'Anna liked a big bird.') AS answer;
-- adapters in a background job
SELECT distill.train('storylora', 'animal', 'distill',
                     'SELECT body AS input, animal AS label FROM stories WHERE i <= 60',
                     params => '{"epochs": 2, "max_input_tokens": 32, "max_target_tokens": 8,
                                 "validation_fraction": 0, "lora_rank": 2}',
                     base => 'stories') AS job \gset
SELECT distill.wait(:job);
SELECT s.version, b.version AS base_version, s.params->>'lr' AS lr,
       s.params->>'lora_alpha' AS alpha, s.params->'lora_targets' AS targets
FROM distill.models s JOIN distill.models b ON b.id = s.base_id
WHERE s.name = 'storylora' ORDER BY s.version;

-- errors
SELECT distill.train('x', 'animal', 'distill', 'SELECT body AS input, animal AS label FROM stories',
                     base => 'nobody', background => false);
SELECT distill.train('x', 'animal', 'distill', 'SELECT body AS input, animal AS label FROM stories',
                     base => 'storyteller', background => false);
SELECT distill.train('x', 'animal', 'distill', 'SELECT body AS input, animal AS label FROM stories',
                     params => '{"d_model": 64}', base => 'stories');
SELECT distill.train('x', 'animal', 'distill', 'SELECT body AS input, animal AS label FROM stories',
                     base => '');
SELECT distill.train('x', 'animal', 'distill', 'SELECT body AS input, animal AS label FROM stories',
                     params => '{"max_input_tokens": 1000}', base => 'stories',
                     background => false);
SELECT distill.train('x', 'animal', 'distill', 'SELECT body AS input, animal AS label FROM stories',
                     params => '{"lora_rank": 4}');
SELECT distill.train('x', 'animal', 'distill', 'SELECT body AS input, animal AS label FROM stories',
                     params => '{"lora_targets": ["q", "attention"]}', base => 'stories');
SELECT distill.train('x', 'animal', 'distill', 'SELECT body AS input, animal AS label FROM stories',
                     params => '{"lora_targets": []}', base => 'stories');
SELECT distill.train('x', 'animal', 'distill', 'SELECT body AS input, animal AS label FROM stories',
                     params => '{"lora_rank": 300}', base => 'stories');
SELECT distill.train('x', 'animal', 'distill', 'SELECT body AS input, animal AS label FROM stories',
                     params => '{"lora_rank": 128}', base => 'stories', background => false);
SELECT distill.schedule('nightly', '1 day', 'train',
                        '{"model": "x", "task": "animal", "base": 7}');
SELECT count(*) AS no_model_x FROM distill.models WHERE name = 'x';

DROP TABLE stories;
SELECT distill.drop_model('storyteller');
SELECT distill.drop_model('storylora');
SELECT distill.drop_model('stories');
SELECT distill.drop_task('animal');
