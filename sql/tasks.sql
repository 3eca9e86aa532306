-- create_task / drop_task: every way to get it wrong
\set SHOW_CONTEXT never

SELECT distill.create_task('nli', 'Does the premise entail the hypothesis?',
                           ARRAY['entailment', 'neutral', 'contradiction'],
                           '[{"input": "P: A man sleeps. H: A man is awake.",
                              "rationale": "Sleeping people are not awake.",
                              "label": "Contradiction"}]',
                           'So the answer is');
SELECT distill.create_task('free', '');
SELECT name, instruction, labels, examples, answer_prefix FROM distill.tasks ORDER BY name;

-- names and fields
SELECT distill.create_task('', 'x');
SELECT distill.create_task('nli', 'x');
SELECT distill.create_task('x', NULL);
SELECT distill.create_task('x', 'x', answer_prefix => '  ');
SELECT distill.create_task('x', 'x', answer_prefix => NULL);

-- label sets
SELECT distill.create_task('x', 'x', ARRAY['only']);
SELECT distill.create_task('x', 'x', ARRAY[]::text[]);
SELECT distill.create_task('x', 'x', ARRAY['a', NULL]);
SELECT distill.create_task('x', 'x', ARRAY['a', ' ']);
SELECT distill.create_task('x', 'x', ARRAY['Yes', 'no', 'YES']);
SELECT distill.create_task('x', 'x', ARRAY[['a', 'b'], ['c', 'd']]);

-- examples
SELECT distill.create_task('x', 'x', examples => '{"input": "a"}');
SELECT distill.create_task('x', 'x', examples => '["a"]');
SELECT distill.create_task('x', 'x', examples => '[{"input": "a", "rationale": "b", "label": "c", "answer": "d"}]');
SELECT distill.create_task('x', 'x', examples => '[{"input": "a", "rationale": "b"}]');
SELECT distill.create_task('x', 'x', examples => '[{"input": "a", "rationale": "", "label": "c"}]');
SELECT distill.create_task('x', 'x', examples => '[{"input": 1, "rationale": "b", "label": "c"}]');
SELECT distill.create_task('x', 'x', ARRAY['yes', 'no'],
                           '[{"input": "a", "rationale": "b", "label": "yes"},
                             {"input": "c", "rationale": "d", "label": "perhaps"}]');

SELECT name FROM distill.tasks ORDER BY name;

-- drop
SELECT distill.drop_task('nope');
SELECT distill.drop_task('nli');
SELECT distill.drop_task('free');
SELECT count(*) FROM distill.tasks;
