# kill -9 of a worker mid-annotation: the server restarts, the job ends
# 'failed' with a reason, the items finished before the kill are kept, and
# a re-run finishes every item exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use DistillTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $teacher = teacher_url();
# (PostgreSQL::Test::Cluster turns restart_after_crash off)
my $node = new_node('crash', conf => 'restart_after_crash = on');

$node->safe_psql('postgres', <<"SQL");
SET client_min_messages = warning;
CREATE TABLE cqa_raw (doc jsonb);
\\copy cqa_raw FROM '$FindBin::RealBin/../data/cqa_sample.jsonl' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')
CREATE TABLE cqa AS SELECT doc->>'id' AS id, doc->>'input' AS body FROM cqa_raw;
SELECT distill.create_task('cqa', 'Answer the question.');
SELECT distill.create_teacher('sluggish', '$teacher/faults/latency_ms=100/v1', 'palm',
                              options => '{"concurrency": 2}');
SQL
is($node->safe_psql('postgres', 'SELECT count(*) FROM cqa'), '200', 'the questions are loaded');

my $job = $node->safe_psql('postgres',
	"SELECT distill.annotate('cqa', 'sluggish', 'SELECT id, body FROM cqa LIMIT 60')");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) >= 10 FROM distill.annotations WHERE teacher = 'sluggish'"),
	'the job commits items as it goes');
my $pid = $node->safe_psql('postgres', "SELECT worker_pid FROM distill.jobs WHERE id = $job");
ok($pid =~ /^\d+$/ && kill('KILL', $pid) == 1, "its worker ($pid) is killed");

ok( $node->poll_query_until('postgres', "SELECT status FROM distill.jobs WHERE id = $job", 'failed'),
	'after the restart, the job is failed');
like(
	$node->safe_psql('postgres', "SELECT error FROM distill.jobs WHERE id = $job"),
	qr/worker running this job stopped/,
	'saying why');
my $kept = $node->safe_psql('postgres',
	"SELECT count(*) FROM distill.annotations WHERE teacher = 'sluggish'");
ok($kept >= 10 && $kept < 60, "the items annotated before the kill were kept ($kept)");

$job = $node->safe_psql('postgres',
	"SELECT distill.annotate('cqa', 'sluggish', 'SELECT id, body FROM cqa LIMIT 60')");
is($node->safe_psql('postgres', "SELECT distill.wait($job)"), 'succeeded', 'a re-run succeeds');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*), count(DISTINCT item_id), bool_and(status = 'ok')
		 FROM distill.annotations WHERE teacher = 'sluggish'"),
	'60|60|t',
	'and finishes every item exactly once');

$node->stop;
done_testing();
