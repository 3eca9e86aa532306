-- distill.ask: one synchronous call, both APIs, parsing and failures
\set SHOW_CONTEXT never

SELECT distill.create_teacher('openai', 'http://127.0.0.1:8808/v1', 'palm');
SELECT distill.create_teacher('ollama', 'http://127.0.0.1:8808', 'palm', api => 'ollama');
SELECT distill.create_task('cqa', 'Answer the question.',
  examples => $$[{"input": "What does a person do when they are tired?\nAnswer Choices:\n(a) run\n(b) sleep\n(c) sing\n(d) cook\n(e) shout",
                  "rationale": "Sleeping gives rest.", "label": "(b) sleep"}]$$);
SELECT distill.create_task('svamp', 'Write an equation that answers the problem.',
                           answer_prefix => 'The answer is');

\set beaver 'E''A beaver is know for building prowess, their supplies come from where?\\nAnswer Choices:\\n(a) british columbia\\n(b) body of water\\n(c) wooded area\\n(d) pay debts\\n(e) zoo'''

-- the reply runs on into an invented "Q:"; rationale and label stop before it
SELECT rationale, label, raw ~ '\nQ:' AS raw_kept_whole FROM distill.ask('openai', 'cqa', :beaver);
SELECT rationale, label FROM distill.ask('ollama', 'cqa', :beaver);

-- an equation in parentheses is an answer, not a choice marker
SELECT label FROM distill.ask('openai', 'svamp',
  E'Jack received 3 emails in the afternoon, 6 emails in the morning and some more in the evening. If he received a total of 10 emails in the day\nHow many emails did jack receive in the evening?');

-- with a label set, the answer is matched ignoring case and stored as spelled in the set
SELECT distill.create_task('beaver', 'Answer.',
                           ARRAY['British Columbia', 'Body of Water', 'Wooded Area', 'Pay Debts', 'Zoo']);
SELECT label FROM distill.ask('openai', 'beaver', :beaver);

-- an answer outside the label set, or no answer at all: NULL label, a notice, the raw reply
SELECT distill.create_task('yesno', 'Answer.', ARRAY['yes', 'no']);
SELECT label, raw IS NOT NULL AS has_raw FROM distill.ask('openai', 'yesno', :beaver);
SELECT rationale, label, raw FROM distill.ask('openai', 'cqa', 'What is the capital of Atlantis?');

-- failures are errors naming the teacher and the reason
SELECT distill.create_teacher('down', 'http://127.0.0.1:9/v1', 'palm', options => '{"max_retries": 0}');
SELECT * FROM distill.ask('down', 'cqa', 'x');
SELECT distill.create_teacher('broken', 'http://127.0.0.1:8808/faults/p500=1/v1', 'palm',
                              options => '{"max_retries": 2, "retry_base_ms": 5}');
SELECT * FROM distill.ask('broken', 'cqa', :beaver);
SELECT distill.create_teacher('hung', 'http://127.0.0.1:8808/faults/hang=1/v1', 'palm',
                              options => '{"timeout_ms": 300, "max_retries": 0}');
SELECT * FROM distill.ask('hung', 'cqa', :beaver);
SELECT distill.create_teacher('nowhere', 'http://127.0.0.1:8808/v2', 'palm');
SELECT * FROM distill.ask('nowhere', 'cqa', :beaver);

-- API keys come from the server's environment and never show
SELECT distill.create_teacher('keyed', 'http://127.0.0.1:8808/faults/key=sk-test-123/v1', 'palm',
                              api_key_env => 'DISTILL_TEST_KEY');
SELECT label FROM distill.ask('keyed', 'cqa', :beaver);
SELECT distill.create_teacher('wrong_key', 'http://127.0.0.1:8808/faults/key=sk-test-123/v1', 'palm',
                              api_key_env => 'DISTILL_WRONG_KEY');
SELECT * FROM distill.ask('wrong_key', 'cqa', :beaver);
SELECT distill.create_teacher('unset_key', 'http://127.0.0.1:8808/v1', 'palm',
                              api_key_env => 'DISTILL_NOT_SET_ANYWHERE');
SELECT * FROM distill.ask('unset_key', 'cqa', :beaver);
SELECT distill.create_teacher('no_key', 'http://127.0.0.1:8808/faults/key=sk-test-123/v1', 'palm');
SELECT * FROM distill.ask('no_key', 'cqa', :beaver);

-- unknown names
SELECT * FROM distill.ask('nobody', 'cqa', 'x');
SELECT * FROM distill.ask('openai', 'nothing', 'x');

-- NULL in, NULL out (STRICT)
SELECT * FROM distill.ask('openai', 'cqa', NULL);

SELECT distill.drop_task(name) FROM distill.tasks;
SELECT distill.drop_teacher(name) FROM distill.teachers;
