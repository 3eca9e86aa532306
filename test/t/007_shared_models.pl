# distill.shared_models: sessions that predict with a model at once map
# one file, written once; an image damaged, cut short, of other weights or
# foreign is written again with the same answers; a writer at work keeps
# its temporary file, which goes once the writer is killed; a data
# directory that refuses the file leaves the model in the backend, with a
# warning; what cannot be mapped in place of an image is an error.
use strict;
use warnings;
use File::Copy;
use FindBin;
use lib $FindBin::RealBin;
use DistillTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# (PostgreSQL::Test::Cluster turns restart_after_crash off)
my $node = new_node('shared', conf => 'restart_after_crash = on');
$node->safe_psql('postgres', <<'SQL');
SET client_min_messages = warning;
CREATE TABLE items AS
  SELECT i AS id, format('Item %s is %s.', i, CASE WHEN i % 2 = 0 THEN 'good' ELSE 'bad' END) AS body,
         CASE WHEN i % 2 = 0 THEN 'good' ELSE 'bad' END AS label
  FROM generate_series(1, 100) i;
SELECT distill.create_task('quality', 'Good or bad?', ARRAY['good', 'bad']);
SELECT distill.train(name, 'quality', 'finetune', 'SELECT body AS input, label FROM items',
  params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1, "vocab_size": 300}',
  background => false)
FROM unnest(ARRAY['judge', 'critic', 'umpire', 'referee']) name;
SQL

my $dir = $node->data_dir . '/pg_dynshmem/distill/'
  . $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = 'postgres'");

# The model's row id, and the path of its image.
sub model_id
{
	my ($model) = @_;
	return $node->safe_psql('postgres', "SELECT id FROM distill.models WHERE name = '$model'");
}

sub image
{
	my ($model) = @_;
	return "$dir/" . model_id($model) . '.image';
}

# The model's probabilities for a few items: the answers to compare.
sub answers_sql
{
	my ($model) = @_;
	return "SELECT string_agg(distill_predict_proba('$model', body)::text, ' ' ORDER BY id)"
	  . ' FROM items WHERE id <= 4';
}

# The inode of the image that backend $pid maps, from /proc/<pid>/maps.
sub mapped_inode
{
	my ($pid, $path) = @_;
	foreach my $line (split /\n/, slurp_file("/proc/$pid/maps"))
	{
		my @f = split ' ', $line;
		return $f[4] if @f >= 6 && $f[5] eq $path;
	}
	return 'none';
}

# Answers of a backend that loads the model itself.
my $judge =
  $node->safe_psql('postgres', 'SET distill.shared_models = off; ' . answers_sql('judge'));

# Four sessions predict at once: one of them writes the image, all map it.
my @sessions = map { $node->background_psql('postgres') } 1 .. 4;
my @pids = map { $_->query_safe('SELECT pg_backend_pid()') } @sessions;
foreach my $session (@sessions)
{
	$session->{stdin} .= answers_sql('judge') . ";\n";
	$session->{run}->pump_nb;
}
my @answers = map { (split /\n/, $_->query_safe('SELECT 1'))[0] } @sessions;
is_deeply(\@answers, [ ($judge) x 4 ],
	'four sessions predicting at once answer as a backend that loads the model itself');
my $inode = (stat image('judge'))[1];
is_deeply([ map { mapped_inode($_, image('judge')) } @pids ],
	[ ($inode) x 4 ], 'all four map the one image written');
$_->quit foreach @sessions;

# Damage the image while no backend maps it: the next backend notices, says
# why in the server log, writes it again, and answers the same.
$node->safe_psql('postgres', answers_sql('critic'));
my %damage = (
	'a flipped header byte' => [
		sub {
			open(my $f, '+<', image('judge')) or die $!;
			seek($f, 20, 0);
			print $f "\xff";
			close($f);
		},
		qr/header checksum mismatch/
	],
	'half the file' => [ sub { truncate(image('judge'), (-s image('judge')) / 2) or die $! },
		qr/truncated prediction image/ ],
	'the image of another model' => [
		sub {
			copy(image('critic'), image('judge')) or die $!;
		},
		qr/a prediction image of other weights/
	],
	'foreign bytes' => [
		sub {
			open(my $f, '>', image('judge')) or die $!;
			print $f 'not an image at all';
			close($f);
		},
		qr/not a distill prediction image/
	]);
my $size = -s image('judge');
foreach my $what (sort keys %damage)
{
	my ($spoil, $why) = @{ $damage{$what} };
	my $offset = -s $node->logfile;

	$spoil->();
	is($node->safe_psql('postgres', answers_sql('judge')), $judge, "$what: the same answers");
	ok($node->log_contains(qr/the prediction image ".*" of model "judge" version 1 is written again: .*$why/,
			$offset),
		"$what: the server log says why the image is written again");
	is(-s image('judge'), $size, "$what: the image is whole again");
}

# A writer holds its model's advisory lock (database, "DSTI", id) while its
# temporary file exists.  Another backend that needs the model waits for
# it; a sweep leaves the file of a live writer, and removes it once the
# writer was killed (kill -9: the server restarts).
my $writer = $node->background_psql('postgres');
my $id = model_id('umpire');
$writer->query_safe("SELECT pg_advisory_lock(x'44535449'::int, $id)");
my $writer_pid = $writer->query_safe('SELECT pg_backend_pid()');
my $temp = image('umpire') . ".$writer_pid.tmp";
open(my $f, '>', $temp) or die $!;
close($f);
my $waiter = $node->background_psql('postgres');
$waiter->{stdin} .= answers_sql('umpire') . ";\n";
$waiter->{run}->pump_nb;
ok( $node->poll_query_until(
		'postgres',
		"SELECT wait_event = 'advisory' FROM pg_stat_activity WHERE query LIKE '%''umpire''%'"
		  . ' AND pid <> pg_backend_pid()'),
	'a backend that needs an image being written waits for its writer');
$node->safe_psql('postgres', answers_sql('referee'));
ok(-e $temp, "a sweep leaves a live writer's temporary file");
kill('KILL', $writer_pid);
$waiter->quit;
$writer->quit;
ok($node->poll_query_until('postgres', 'SELECT true'), 'the server restarts after the kill');
$node->safe_psql('postgres', answers_sql('referee'));
ok(!-e $temp, "the next sweep removes a killed writer's temporary file");

# A data directory that refuses the file: the backend keeps the model in
# its own memory and says so.
unlink(image('umpire'));
chmod(0500, $dir) or die $!;
my ($ret, $stdout, $stderr) = $node->psql('postgres', answers_sql('umpire'));
chmod(0700, $dir) or die $!;
my $unshared =
  $node->safe_psql('postgres', 'SET distill.shared_models = off; ' . answers_sql('umpire'));
is($stdout, $unshared, 'a model whose image cannot be written still answers');
like(
	$stderr,
	qr/WARNING:  could not write file ".*\/$id\.image\.\d+\.tmp": Permission denied\nDETAIL:  The model is loaded into this backend alone\./,
	'with a warning that says so');
ok(!-e image('umpire'), 'and no image');

# So does a data directory where the database's directory of images cannot
# be made.
my $images = $node->data_dir . '/pg_dynshmem/distill';
rename($dir, "$dir.away") or die $!;
chmod(0500, $images) or die $!;
($ret, $stdout, $stderr) = $node->psql('postgres', answers_sql('umpire'));
chmod(0700, $images) or die $!;
rename("$dir.away", $dir) or die $!;
is($stdout, $unshared, 'a model whose directory cannot be made still answers');
like(
	$stderr,
	qr/WARNING:  could not create directory ".*": Permission denied\nDETAIL:  The model is loaded into this backend alone\./,
	'with a warning that says so');

# What cannot be mapped where an image should be (here a directory) is an
# error that names it, not an image to write again.
mkdir(image('umpire')) or die $!;
($ret, $stdout, $stderr) = $node->psql('postgres', answers_sql('umpire'));
like(
	$stderr,
	qr/ERROR:  model "umpire" version 1 cannot be mapped from ".*\/$id\.image": cannot map a prediction image of \d+ bytes: .*\nHINT:  Remove what is there, or set distill.shared_models to off\./,
	'what cannot be mapped in place of an image is an error that names it');
rmdir(image('umpire')) or die $!;

$node->stop;
done_testing();
