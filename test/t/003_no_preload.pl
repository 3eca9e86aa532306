# A server without distill in shared_preload_libraries: background jobs are
# refused with a hint, and the same work runs in the foreground.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use DistillTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_node('nopreload', preload => '');
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '', 'nothing is preloaded');

$node->safe_psql('postgres',
	"SELECT distill.create_task('t', 'Good or bad?', ARRAY['good', 'bad'])");
my $source = q{'SELECT ''x'' AS input, ''good'' AS label FROM generate_series(1, 8)'};
my ($ret, $stdout, $stderr) =
  $node->psql('postgres', "SELECT distill.train('m', 't', 'finetune', $source)");
like(
	$stderr,
	qr/ERROR:  background jobs need distill in shared_preload_libraries.*HINT:  Add distill to shared_preload_libraries/s,
	'a background job is refused with a hint');
is( $node->safe_psql(
		'postgres', <<"SQL"),
SET client_min_messages = warning;
SELECT distill.train('m', 't', 'finetune', $source,
  params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1, "vocab_size": 300}',
  background => false) > 0;
SELECT distill_predict('m', 'x');
SQL
	"t\ngood",
	'training and prediction run in the foreground');

$node->stop;
done_testing();
