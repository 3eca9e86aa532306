-- Teacher replies are untrusted: what the database cannot store as it is
-- (invalid UTF-8, NUL, characters its encoding lacks) makes that item
-- 'unparsed', its raw reply kept escaped, and never an error; the other
-- items are stored as usual.  Also oversized replies, and inputs that are
-- not UTF-8 in a SQL_ASCII database.
\set SHOW_CONTEXT never
SELECT current_database() AS home \gset

-- The replay teacher's echo=1 answers with the question itself: %XX is the
-- byte XX, and \uXXXX arrives as a JSON escape.
SELECT distill.create_teacher('echo', 'http://127.0.0.1:8808/faults/echo=1/v1', 'palm',
                              options => '{"max_retries": 0}');
SELECT distill.create_task('yn', 'Answer.', ARRAY['yes', 'no']);

CREATE TABLE replies (id text, input text);
INSERT INTO replies VALUES
  ('1 fine',      'All fine. So the answer is yes.'),
  ('2 surrogate', 'A surrogate %ED%A0%80. So the answer is yes.'),
  ('3 overlong',  'An overlong NUL %C0%80. So the answer is yes.'),
  ('4 too high',  'Beyond U+10FFFF %F4%90%80%80. So the answer is yes.'),
  ('5 stray',     'A stray byte %FF next to a backslash \\. So the answer is yes.'),
  ('6 nul',       'A NUL \u0000 inside. So the answer is yes.'),
  ('7 escape',    'An unpaired surrogate escape \ud800. So the answer is no.'),
  ('8 also fine', 'Caf%C3%A9 %E2%80%99 %F0%9F%98%80. So the answer is no.');
SELECT distill.annotate('yn', 'echo', 'SELECT id, input FROM replies', background => false) > 0 AS done;
SELECT item_id, status, label, error, raw_output
FROM distill.annotations WHERE teacher = 'echo' ORDER BY item_id;

-- json-c decodes an unpaired surrogate escape to U+FFFD, as RFC 8259 allows:
-- valid text, so that reply is an answer
SELECT raw_output LIKE '%' || U&'\FFFD' || '%' AS replacement_character
FROM distill.annotations WHERE teacher = 'echo' AND item_id = '7 escape';

-- distill.ask: a notice and the escaped raw reply, no error
SELECT rationale, label, raw FROM distill.ask('echo', 'yn', 'A surrogate %ED%A0%80. So the answer is yes.');
SELECT rationale, label, raw FROM distill.ask('echo', 'yn', 'A NUL \u0000 inside. So the answer is yes.');

-- A background job does not fail over such replies either: it stores them
-- again, and the job is done.
SELECT distill.annotate('yn', 'echo', 'SELECT id, input FROM replies') AS job \gset
SELECT distill.wait(:job);
SELECT status, message FROM distill.jobs WHERE id = :job;
SELECT status, count(*), max(attempts) FROM distill.annotations
WHERE teacher = 'echo' GROUP BY status ORDER BY status;

-- A reply beyond the size limit (1 MiB at the default max_tokens) fails its
-- item at once, with the reason.
SELECT distill.create_teacher('huge', 'http://127.0.0.1:8808/faults/pad_bytes=1100000/v1', 'palm');
SELECT * FROM distill.ask('huge', 'yn', 'All fine. So the answer is yes.');
SELECT distill.annotate('yn', 'huge', 'SELECT id, input FROM replies WHERE id = ''1 fine''',
                        background => false) > 0 AS done;
SELECT item_id, status, attempts, error, raw_output FROM distill.annotations WHERE teacher = 'huge';

-- A LATIN1 database stores what LATIN1 has; other characters make the item
-- 'unparsed', escaped as \uXXXX.
CREATE DATABASE distill_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c distill_latin1
SET client_encoding = 'UTF8';
CREATE EXTENSION distill;
SELECT distill.create_teacher('echo', 'http://127.0.0.1:8808/faults/echo=1/v1', 'palm',
                              options => '{"max_retries": 0}');
SELECT distill.create_task('yn', 'Answer.', ARRAY['yes', 'no']);
CREATE TABLE replies (id text, input text);
INSERT INTO replies VALUES
  ('1 ascii',     'Plain. So the answer is yes.'),
  ('2 latin1',    'Caf' || chr(233) || ' au lait, sent and echoed. So the answer is yes.'),
  ('3 quote',     'It%E2%80%99s curly. So the answer is no.'),
  ('4 emoji',     'Smile %F0%9F%98%80. So the answer is no.'),
  ('5 mixed',     'Caf%C3%A9 and %E2%80%9Cquotes%E2%80%9D, a backslash \\. So the answer is yes.'),
  ('6 invalid',   'Stray %FF. So the answer is yes.');
SELECT distill.annotate('yn', 'echo', 'SELECT id, input FROM replies', background => false) > 0 AS done;
SELECT item_id, status, label, error, raw_output FROM distill.annotations ORDER BY item_id;
SELECT rationale, label, raw FROM distill.ask('echo', 'yn', 'It%E2%80%99s curly. So the answer is no.');
SELECT rationale, label FROM distill.ask('echo', 'yn', 'Caf' || chr(233) || '. So the answer is no.');

-- A SQL_ASCII database holds any bytes: input that is not UTF-8 is refused,
-- per item and unsent; replies in UTF-8 are stored as they are.
\c :home
CREATE DATABASE distill_sql_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c distill_sql_ascii
CREATE EXTENSION distill;
SELECT distill.create_teacher('echo', 'http://127.0.0.1:8808/faults/echo=1/v1', 'palm',
                              options => '{"max_retries": 0}');
SELECT distill.create_task('yn', 'Answer.', ARRAY['yes', 'no']);
CREATE TABLE replies (id text, input text);
INSERT INTO replies VALUES
  ('1 utf8',      E'Caf\xc3\xa9, valid UTF-8. So the answer is yes.'),
  ('2 latin1',    E'Caf\xe9, not UTF-8. So the answer is yes.'),
  ('3 quote',     'It%E2%80%99s curly. So the answer is no.'),
  ('4 invalid',   'Stray %FF. So the answer is no.');
SELECT distill.annotate('yn', 'echo', 'SELECT id, input FROM replies', background => false) > 0 AS done;
SELECT item_id, status, attempts, label, error, raw_output FROM distill.annotations ORDER BY item_id;
SELECT * FROM distill.ask('echo', 'yn', E'Caf\xe9. So the answer is yes.');
-- the task's own text is checked too: an error, before anything is sent
SELECT distill.create_task('bad', E'R\xe9pondez.', ARRAY['yes', 'no']);
SELECT * FROM distill.ask('echo', 'bad', 'Fine. So the answer is yes.');

\c :home
DROP DATABASE distill_latin1;
DROP DATABASE distill_sql_ascii;
DROP TABLE replies;
SELECT distill.drop_task('yn', cascade => true);
SELECT distill.drop_teacher('echo');
SELECT distill.drop_teacher('huge');
