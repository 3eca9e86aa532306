# One server, several sessions: a cancel from another session ends a
# running annotation and a running training; a job asked for in another
# database is refused; pg_cron queues jobs; OpenBLAS runs no threads in the
# postmaster, nor beyond distill.threads in a backend.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use DistillTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $teacher = teacher_url();
my $node = new_node('sessions', preload => 'distill,pg_cron', conf => <<'CONF');
cron.database_name = 'postgres'
cron.use_background_workers = on
CONF

$node->safe_psql('postgres', <<"SQL");
SET client_min_messages = warning;
CREATE TABLE items AS
  SELECT i AS id, format('Item %s is %s.', i, CASE WHEN i % 2 = 0 THEN 'good' ELSE 'bad' END) AS body,
         CASE WHEN i % 2 = 0 THEN 'good' ELSE 'bad' END AS label
  FROM generate_series(1, 200) i;
SELECT distill.create_task('quality', 'Good or bad?', ARRAY['good', 'bad']);
-- never answers: its hang lasts a day, its timeout an hour
SELECT distill.create_teacher('hung', '$teacher/faults/hang=1,hang_s=86400/v1', 'palm',
                              options => '{"timeout_ms": 3600000, "max_retries": 0}');
SQL

# Run $statement in a session of its own; once $running->($session) says it
# runs, cancel it from another session.  The statement would run for hours
# without the cancel, so it must end with the cancel's error, and within the
# framework's timeout (a cancel that is never seen fails there).
sub cancel_while_running
{
	my ($what, $statement, $running) = @_;
	my $session = $node->background_psql('postgres', on_error_stop => 0);

	$session->query_safe("SET application_name = 'cancel_me'");
	$session->query_safe('\set VERBOSITY verbose');
	$session->{stdin} .= "$statement;\n";
	$session->{run}->pump_nb;
	ok($running->($session), "$what is running");
	is( $node->safe_psql(
			'postgres',
			"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'cancel_me'"),
		't',
		"$what: pg_cancel_backend signals its backend");
	# the statement ends before psql reads the next one
	$session->query('SELECT 1');
	like(
		$session->{stderr},
		qr/ERROR:  57014: canceling statement due to user request/,
		"$what ends with SQLSTATE 57014, canceling statement due to user request");
	$session->quit;
}

# An annotation runs once its request is at the teacher, which holds it;
# when the cancel ends the statement, the client hangs up on the teacher.
my $held = teacher_stats()->{in_flight};
cancel_while_running(
	'an annotation',
	"SELECT distill.annotate('quality', 'hung', 'SELECT id, body FROM items', background => false)",
	sub {
		wait_for_teacher(sub { $_[0]->{in_flight} > $held });
	});
ok(wait_for_teacher(sub { $_[0]->{in_flight} == $held }),
	'the cancelled annotation hung up on the teacher');

# A training runs once its source is read, which a NOTICE about the one row
# it skips says; 1000 epochs at d_model 256 would take hours.
cancel_while_running(
	'a training',
	"SELECT distill.train('big', 'quality', 'finetune',
	   'SELECT body AS input, label FROM items UNION ALL SELECT ''x'', NULL',
	   params => '{\"d_model\": 256, \"layers\": 4, \"epochs\": 1000}', background => false)",
	sub {
		my ($session) = @_;
		pump_until($session->{run}, $session->{timeout}, \$session->{stderr},
			qr/skipped 1 training rows with a NULL input or label/);
	});

# Background jobs run in distill.database only; elsewhere the call says so.
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION distill');
my ($ret, $stdout, $stderr) =
  $node->psql('other', "SELECT distill.annotate('t', 'u', 'SELECT 1, 2')");
like(
	$stderr,
	qr/background jobs run in database "postgres", not in "other"/,
	'a background job asked for in another database is refused with a hint');

# pg_cron (cron times) calls distill.annotate(), which queues a background
# job; its finest schedule is a minute.
$node->safe_psql('postgres', <<"SQL");
SET client_min_messages = warning;
CREATE EXTENSION pg_cron;
SELECT distill.create_teacher('palm', '$teacher/v1', 'palm');
SELECT cron.schedule('distill-every-minute', '* * * * *',
  \$\$SELECT distill.annotate('quality', 'palm', 'SELECT id, body FROM items LIMIT 3')\$\$);
SQL
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM distill.jobs WHERE args->>'source' LIKE '%LIMIT 3' AND status = 'succeeded'"
	),
	'pg_cron queues a distill job that runs to the end');
$node->safe_psql('postgres', "SELECT cron.unschedule('distill-every-minute')");

# OpenBLAS starts a pool of one thread per core when it is loaded; distill
# stops it in _PG_init, so the postmaster forks from one thread, and a
# backend starts OpenBLAS's threads only for distill.threads > 1.
$node->safe_psql('postgres', <<'SQL');
SET client_min_messages = warning;
SELECT distill.train('judge', 'quality', 'finetune', 'SELECT body AS input, label FROM items',
  params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1, "vocab_size": 300}',
  background => false);
SQL
my $postmaster = slurp_file($node->data_dir . '/postmaster.pid');
$postmaster =~ s/\n.*//s;
opendir(my $tasks, "/proc/$postmaster/task") or die "/proc/$postmaster/task: $!";
my @threads = grep { !/^\./ } readdir($tasks);
closedir($tasks);
is(scalar(@threads), 1, 'the postmaster runs one thread');
my $count_threads = q{SELECT distill_predict('judge', 'Item 7 is bad.') IS NOT NULL,
  (SELECT count(*) FROM pg_ls_dir('/proc/' || pg_backend_pid() || '/task'))};
is($node->safe_psql('postgres', $count_threads),
	't|1', 'a backend that predicts with distill.threads = 1 runs one thread');
my $cores = `nproc`;
chomp $cores;
is($node->safe_psql('postgres', "SET distill.threads = $cores; $count_threads"),
	"t|$cores", "with distill.threads = $cores, a predicting backend runs $cores threads");

$node->stop;
done_testing();
