# A model trained on a primary answers distill_predict on a hot standby.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use DistillTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = new_node('primary', init => { allows_streaming => 1 });
$primary->safe_psql('postgres', <<'SQL');
SET client_min_messages = warning;
SELECT distill.create_task('quality', 'Good or bad?', ARRAY['good', 'bad']);
SELECT distill.train('judge', 'quality', 'finetune',
  $$SELECT format('Item %s is %s.', i, CASE WHEN i % 2 = 0 THEN 'good' ELSE 'bad' END) AS input,
           CASE WHEN i % 2 = 0 THEN 'good' ELSE 'bad' END AS label
    FROM generate_series(1, 200) i$$,
  params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 2, "vocab_size": 300}',
  background => false);
SQL

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', 'hot_standby = on');
$standby->start;
$primary->wait_for_catchup($standby);

my $answer = $standby->safe_psql('postgres',
	"SELECT pg_is_in_recovery(), distill_predict('judge', 'Item 7 is bad.') IN ('good', 'bad')");
is($answer, 't|t', 'distill_predict answers on a hot standby');

$standby->stop;
$primary->stop;
done_testing();
