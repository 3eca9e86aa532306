#!/usr/bin/env bash
# Rows written by distill 0.2.0, for test/t/006_upgrade.pl: run from a
# checkout of the last 0.2.0 commit (d26961d) with this script and
# test/t/DistillTest.pm's data beside it:
#
#     git worktree add /tmp/distill-0.2.0 d26961d
#     cd /tmp/distill-0.2.0 && bash /path/to/this/make_fixture.sh /path/to/this/dir
#
# It installs that library, trains the two versions of 'student' that
# fill_database() trains, and writes their distill.models rows
# (models_0.2.0.copy, COPY text) and the answers the 0.2.0 library gives
# with them (predictions_0.2.0.txt, as DistillTest's predictions()).
set -eu
out=$(cd "$1" && pwd)
source test/env.sh
build_and_install
start_cluster
trap stop_all EXIT
start_teacher
psql -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION distill;
CREATE TABLE raw_rows (doc jsonb);
\copy raw_rows FROM 'test/data/cqa_sample.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
CREATE TABLE cqa AS
    SELECT doc->>'id' AS id, doc->>'input' AS input,
           ARRAY(SELECT jsonb_array_elements_text(doc->'choices')) AS choices
    FROM raw_rows ORDER BY doc->>'id' LIMIT 40;
SELECT distill.create_teacher('replay', 'http://127.0.0.1:$TEACHER_PORT/v1', 'palm',
                              api_key_env => 'DISTILL_TEST_KEY');
SELECT distill.create_task('cqa', 'Answer the question.');
SET client_min_messages = warning;
SELECT distill.annotate('cqa', 'replay', 'SELECT id, input FROM cqa', background => false);
SELECT distill.train('student', 'cqa', 'step_by_step',
                     params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 2,
                                 "vocab_size": 300, "seed": 5}',
                     background => false);
SELECT distill.train('student', 'cqa', 'distill',
                     params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1,
                                 "vocab_size": 300, "seed": 6}',
                     background => false);
\copy (SELECT * FROM distill.models ORDER BY id) TO '$out/models_0.2.0.copy'
\pset tuples_only on
\pset format unaligned
\o $out/predictions_0.2.0.txt
SELECT string_agg(format('%s %s %s', id, distill_predict('student', input, choices),
                         distill_predict_proba('student', input, choices)), E'\n' ORDER BY id)
FROM cqa;
SQL
