-- create_teacher / drop_teacher: every way to get it wrong
\set SHOW_CONTEXT never

SELECT distill.create_teacher('t1', 'http://127.0.0.1:8808/v1', 'm');
SELECT distill.create_teacher('t2', 'https://example.com:8443/v1/', 'm', 'ollama', 'DISTILL_SOME_KEY',
                              '{"temperature": 0.7, "max_tokens": 64, "timeout_ms": 1000,
                                "concurrency": 16, "max_retries": 0, "retry_base_ms": 10}');
SELECT name, endpoint, model, api, api_key_env, options FROM distill.teachers ORDER BY name;

-- names
SELECT distill.create_teacher('', 'http://127.0.0.1:8808/v1', 'm');
SELECT distill.create_teacher(NULL, 'http://127.0.0.1:8808/v1', 'm');
SELECT distill.create_teacher('t1', 'http://127.0.0.1:8808/v1', 'm');

-- endpoints
SELECT distill.create_teacher('x', NULL, 'm');
SELECT distill.create_teacher('x', '', 'm');
SELECT distill.create_teacher('x', 'not a url', 'm');
SELECT distill.create_teacher('x', '127.0.0.1:8808/v1', 'm');
SELECT distill.create_teacher('x', 'ftp://127.0.0.1/v1', 'm');
SELECT distill.create_teacher('x', 'http://user:secret@127.0.0.1/v1', 'm');
SELECT distill.create_teacher('x', 'http://127.0.0.1/v1?key=1', 'm');
SELECT distill.create_teacher('x', 'http://127.0.0.1/v1#top', 'm');
SELECT distill.create_teacher('x', 'http://', 'm');

-- model and api
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', '');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', api => NULL);
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', api => 'OpenAI');

-- api_key_env names a variable, it is not the key
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', api_key_env => 'sk-abc123');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', api_key_env => '');

-- options
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => '[1, 2]');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => '"fast"');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => '{"retries": 3}');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => '{"concurrency": "8"}');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => '{"concurrency": 2.5}');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => '{"concurrency": 0}');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => '{"concurrency": 257}');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => '{"temperature": -0.1}');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => '{"max_retries": 21}');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => '{"max_tokens": null}');
SELECT distill.create_teacher('x', 'http://127.0.0.1:8808/v1', 'm', options => NULL);
SELECT options FROM distill.teachers WHERE name = 'x';

-- nothing half-made was left behind
SELECT name FROM distill.teachers ORDER BY name;

-- drop
SELECT distill.drop_teacher('nope');
SELECT distill.drop_teacher('t1');
SELECT distill.drop_teacher('t2');
SELECT distill.drop_teacher('x');
SELECT count(*) FROM distill.teachers;
