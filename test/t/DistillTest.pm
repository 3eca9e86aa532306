# DistillTest.pm - what the TAP tests of test/t share (test/t/README.md).
package DistillTest;

use strict;
use warnings;
use Exporter 'import';
use FindBin;
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(new_node teacher_url teacher_stats wait_for_teacher
  fill_database table_rows table_rows_without predictions);

# The replay teacher test/run.sh started (test/env.sh: DISTILL_TEACHER_PORT).
sub teacher_url
{
	my $port = $ENV{DISTILL_TEACHER_PORT} || 8808;
	return "http://127.0.0.1:$port";
}

# Its GET /stats, decoded.
sub teacher_stats
{
	my $reply = HTTP::Tiny->new(timeout => 10)->get(teacher_url() . '/stats');
	die "replay teacher: $reply->{status} $reply->{content}" unless $reply->{success};
	return decode_json($reply->{content});
}

# Poll /stats until $test->($stats) holds; false after the framework's timeout.
sub wait_for_teacher
{
	my ($test) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		return 1 if $test->(teacher_stats());
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

# A cluster with distill (and whatever else is asked for) preloaded, started,
# with the extension created in database postgres, where its jobs run.
sub new_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my $preload = $opts{preload} // 'distill';

	$node->init(%{ $opts{init} // {} });
	$node->append_conf('postgresql.conf', <<"CONF");
shared_preload_libraries = '$preload'
distill.database = 'postgres'
max_worker_processes = 16
CONF
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION distill');
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
\\copy raw_rows FROM '$FindBin::Bin/../data/cqa_sample.jsonl' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')
CREATE TABLE cqa AS
    SELECT doc->>'id' AS id, doc->>'input' AS input,
           ARRAY(SELECT jsonb_array_elements_text(doc->'choices')) AS choices
    FROM raw_rows ORDER BY doc->>'id' LIMIT 40;
SELECT distill.create_teacher('replay', '@{[ teacher_url() ]}/v1', 'palm',
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

# The same as JSON, without the columns named: those a later version added.
sub table_rows_without
{
	my ($node, $db, $table, @columns) = @_;
	my $drop = join(', ', map { "'$_'" } @columns);

	return $node->safe_psql($db,
		"SELECT string_agg((to_jsonb(t) - ARRAY[$drop]::text[])::text, E'\\n' ORDER BY t.id)"
		  . " FROM distill.$table t");
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
