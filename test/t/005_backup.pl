# pg_dump keeps everything distill holds: a database dumped (custom and
# plain format) and restored into a new one answers and lists exactly as
# the original, and the dump holds no API key.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use DistillTest;
use PostgreSQL::Test::Utils;
use Test::More;

my @tables = qw(teachers tasks annotations jobs schedules models model_chunks training_log
  deployments evaluations);
my @sequences = qw(jobs_id_seq models_id_seq deployments_id_seq evaluations_id_seq);

my $node = new_node('backup');
$node->safe_psql('postgres', 'CREATE DATABASE source');
fill_database($node, 'source');

my $dir = PostgreSQL::Test::Utils::tempdir;
my %dumps = (custom => "$dir/source.dump", plain => "$dir/source.sql");
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dumps{custom}, '-d', $node->connstr('source') ],
	'pg_dump, custom format');
$node->command_ok([ 'pg_dump', '-Fp', '-f', $dumps{plain}, '-d', $node->connstr('source') ],
	'pg_dump, plain format');

my $key = $ENV{DISTILL_TEST_KEY};
ok(defined $key && $key ne '', 'the teacher\'s key is in the environment');
unlike(slurp_file($dumps{plain}), qr/\Q$key\E/, 'the dump holds no API key')
  if defined $key && $key ne '';

$node->safe_psql('postgres', 'CREATE DATABASE restored_custom');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored_custom'), $dumps{custom} ],
	'pg_restore of the custom dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored_plain');
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dumps{plain},
	  '-d', $node->connstr('restored_plain') ],
	'psql of the plain dump');

for my $table (@tables)
{
	my $rows = table_rows($node, 'source', $table);
	isnt($rows, '', "source has rows in $table");
	for my $copy (qw(restored_custom restored_plain))
	{
		is(table_rows($node, $copy, $table), $rows, "$copy: $table");
	}
}
my $answers = predictions($node, 'source');
like($answers, qr/^\S+ \S.*\{.*\}$/m, 'the source model answers');
for my $copy (qw(restored_custom restored_plain))
{
	is(predictions($node, $copy), $answers, "$copy: the same answers and probabilities");
	for my $seq (@sequences)
	{
		is($node->safe_psql($copy, "SELECT last_value FROM distill.$seq"),
			$node->safe_psql('source', "SELECT last_value FROM distill.$seq"),
			"$copy: $seq goes on where it was");
	}
}

$node->stop;
done_testing();
