# DistillNode - what distill's TAP tests share: a PostgreSQL::Test::Cluster
# node with distill preloaded, and a database filled with a bit of
# everything distill keeps (teacher, task, annotations, two model
# versions and a deployment, a schedule, jobs, an evaluation).
package DistillNode;

use strict;
use warnings;

use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(distill_node fill_database table_rows predictions);

# The replay teacher that test/run.sh starts, and the repository's root.
my $teacher_port = $ENV{DISTILL_TEACHER_PORT} // 8808;
my $root = "$FindBin::Bin/../..";

# A started node whose launcher serves database $jobs_db.
sub distill_node
{
	my ($name, $jobs_db) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init;
	$node->append_conf('postgresql.conf', <<"CONF");
shared_preload_libraries = 'distill'
distill.database = '$jobs_db'
fsync = off
CONF
	$node->start;
	return $node;
}

# Forty CommonsenseQA questions, annotated by the replay teacher; a student
# trained on them twice, the first version deployed; a schedule; an
# evaluation.  Everything runs in the session (background => false), so
# no launcher is needed.  Only what distill 0.1.0 already had when $old.
sub fill_database
{
	my ($node, $db, %opts) = @_;

	$node->safe_psql($db, <<"SQL");
CREATE EXTENSION IF NOT EXISTS distill;
CREATE TABLE raw_rows (doc jsonb);
\\copy raw_rows FROM '$root/test/data/cqa_sample.jsonl' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')
CREATE TABLE cqa AS
    SELECT doc->>'id' AS id, doc->>'input' AS input,
           ARRAY(SELECT jsonb_array_elements_text(doc->'choices')) AS choices
    FROM raw_rows ORDER BY doc->>'id' LIMIT 40;
SELECT distill.create_teacher('replay', 'http://127.0.0.1:$teacher_port/v1', 'palm',
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
SELECT distill.schedule('refresh', '1 day', 'annotate',
                        '{"task": "cqa", "teacher": "replay", "source": "SELECT id, input FROM cqa"}');
SQL
	return if $opts{old};
	$node->safe_psql($db, <<'SQL');
SET client_min_messages = warning;
SELECT distill.deploy('student', 1);
SELECT distill.evaluate('student', 'SELECT input, choices[1] AS label, choices FROM cqa',
                        'exact', background => false);
SQL
	return;
}

# Every row of a distill table, as text, in a stable order.
sub table_rows
{
	my ($node, $db, $table) = @_;

	return $node->safe_psql($db,
		"SELECT string_agg(t::text, E'\\n' ORDER BY t::text) FROM distill.$table t");
}

# The student's answers and probabilities for every question.
sub predictions
{
	my ($node, $db) = @_;

	return $node->safe_psql($db, <<'SQL');
SELECT string_agg(format('%s %s %s', id, distill_predict('student', input, choices),
                         distill_predict_proba('student', input, choices)), E'\n' ORDER BY id)
FROM cqa;
SQL
}

1;
