# A long training's checkpoints: a background training job whose worker
# is killed (kill -9) after epoch 1 is queued again, goes on from its
# checkpoint and ends with the same weights as a training that ran
# straight through; a cancelled one goes on with resume => true; no
# checkpoint is left once the jobs succeed.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use DistillTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# (PostgreSQL::Test::Cluster turns restart_after_crash off)
my $node = new_node('resume', conf => 'restart_after_crash = on');
my $dir = $node->data_dir . '/distill/checkpoints';

# A training that logs the end of epoch 1 (its second row of that step)
# waits for advisory lock 4242 first: a job can be stopped right there,
# whatever its speed.
$node->safe_psql('postgres', <<'SQL');
CREATE TABLE reviews AS
SELECT i AS id,
       format('%s %s %s.', (ARRAY['The film', 'This book', 'The meal', 'Our trip', 'The show'])[1 + i % 5],
              (ARRAY['really', 'truly', 'quite', 'so'])[1 + i % 4],
              CASE WHEN i % 2 = 0
                   THEN (ARRAY['was wonderful', 'felt great', 'was a joy'])[1 + i % 3]
                   ELSE (ARRAY['was awful', 'felt terrible', 'was a waste'])[1 + i % 3] END) AS body,
       CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END AS label
FROM generate_series(1, 600) i;
SELECT distill.create_task('mood', 'Is the review positive or negative?', ARRAY['positive', 'negative']);
CREATE FUNCTION hold_after_epoch_1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.epoch = 1 AND EXISTS (SELECT FROM distill.training_log l
                                 WHERE l.job_id = NEW.job_id AND l.step = NEW.step) THEN
        PERFORM pg_advisory_lock(4242);
        PERFORM pg_advisory_unlock(4242);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER hold_after_epoch_1 BEFORE INSERT ON distill.training_log
    FOR EACH ROW EXECUTE FUNCTION hold_after_epoch_1();
SQL
my $train =
  "distill.train('moody', 'mood', 'finetune', 'SELECT body AS input, label FROM reviews ORDER BY id', "
  . "params => '{\"d_model\": 128, \"layers\": 2, \"heads\": 2, \"epochs\": 3, \"batch_size\": 8, "
  . "\"vocab_size\": 300, \"lr\": 0.003, \"seed\": 9, \"log_every\": 5, \"validation_fraction\": 0}'";
my $database = $node->safe_psql('postgres',
	"SELECT oid FROM pg_database WHERE datname = 'postgres'");

# The md5 of a version's weights.
sub weights
{
	my ($version) = @_;
	return $node->safe_psql('postgres', <<"SQL");
SELECT string_agg(md5(c.data), ',' ORDER BY c.seq)
FROM distill.model_chunks c JOIN distill.models m ON m.id = c.model_id
WHERE m.name = 'moody' AND m.version = $version
SQL
}

# Start a background training held at the end of epoch 1, by a session
# that holds the lock; returns the job and that session.
sub start_held
{
	my ($arguments) = @_;
	my $holder = $node->background_psql('postgres');
	$holder->query_safe('SELECT pg_advisory_lock(4242)');
	my $job = $node->safe_psql('postgres', "SELECT $train$arguments)");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"),
		"job $job reached the end of epoch 1");
	return ($job, $holder);
}

# The training straight through, in the session.
$node->safe_psql('postgres', "SET client_min_messages = warning; SELECT $train, background => false)");
my $straight = weights(1);
isnt($straight, '', 'a training straight through');

# kill -9 after epoch 1: the job runs again from its checkpoint
my ($job, $holder) = start_held('');
$node->safe_psql('postgres', "UPDATE distill.jobs SET max_attempts = 2 WHERE id = $job");
my $file = "$dir/${database}_$job.state";
ok(-f $file, 'its checkpoint is saved before the epoch is logged');
is((stat $file)[2] & 077, 0, 'only the server can read it');
my $pid = $node->safe_psql('postgres', "SELECT worker_pid FROM distill.jobs WHERE id = $job");
ok($pid =~ /^\d+$/ && kill('KILL', $pid) == 1, "its worker ($pid) is killed");
$holder->quit;
ok( $node->poll_query_until(
		'postgres', "SELECT status FROM distill.jobs WHERE id = $job", 'succeeded'),
	'after the restart, the job is queued again and succeeds');
is( $node->safe_psql(
		'postgres', "SELECT attempts, message LIKE '%(resumed after epoch 1):%' FROM distill.jobs WHERE id = $job"),
	'2|t',
	'on its second attempt, resumed after epoch 1');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FILTER (WHERE epoch = 1) = count(DISTINCT step) FILTER (WHERE epoch = 1),
		        max(epoch)
		 FROM distill.training_log WHERE job_id = $job"),
	't|3',
	'epoch 1 ran once, then epochs 2 and 3');
is(weights(2), $straight, 'its weights are those of the training straight through');
ok(!-e $file, 'its checkpoint is gone');

# cancelled after epoch 1, then resume => true
($job, $holder) = start_held('');
is($node->safe_psql('postgres', "SELECT distill.cancel($job)"), 'cancelled', "job $job is cancelled");
$holder->quit;
ok(-f "$dir/${database}_$job.state", 'its checkpoint stays');
my $resumed = $node->safe_psql('postgres', "SELECT $train, resume => true)");
is($node->safe_psql('postgres', "SELECT distill.wait($resumed)"), 'succeeded',
	'resume => true succeeds');
like(
	$node->safe_psql('postgres', "SELECT message FROM distill.jobs WHERE id = $resumed"),
	qr/^model "moody" version 3 \(resumed after epoch 1 of job $job\):/,
	'resumed after epoch 1 of the cancelled job');
is(weights(3), $straight, 'with the weights of the training straight through');
is(join(',', glob("$dir/*")), '', 'no checkpoint is left');

$node->stop;
done_testing();
