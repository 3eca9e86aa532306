# ALTER EXTENSION distill UPDATE keeps every row: a database of the oldest
# version, filled, then updated, answers as before and takes the new
# functions; an updated database and a fresh install of the newest version
# have the same schema.  Its models are rows written by the 0.2.0 library
# (test/data/legacy), which hold their whole weights in models.weights:
# they must give the answers that library gave.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;
use DistillTest;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $oldest = '0.1.0';
my @old_tables = qw(teachers tasks annotations jobs schedules training_log);
my $legacy = "$FindBin::Bin/../data/legacy";

my $node = new_node('upgrade');
my $newest = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'distill'");

# The rows: made by the newest version in a database of its own (the
# library installed now is the newest), copied into one of the oldest
# version, whose tables they fit.
$node->safe_psql('postgres', 'CREATE DATABASE newest');
fill_database($node, 'newest', old => 1);
$node->safe_psql('postgres', 'CREATE DATABASE oldest');
$node->safe_psql('oldest', "CREATE EXTENSION distill VERSION '$oldest'");
is($node->safe_psql('oldest', "SELECT extversion FROM pg_extension WHERE extname = 'distill'"),
	$oldest, "installed version $oldest");
copy_rows('newest', 'oldest', $_) for @old_tables;
copy_rows('newest', 'oldest', 'cqa');
$node->safe_psql('oldest', "\\copy distill.models FROM '$legacy/models_0.2.0.copy'");
my $legacy_models = table_rows_without($node, 'oldest', 'models');
like($legacy_models, qr/^\{"id": 1, /, 'the models written by 0.2.0 are in');
for my $seq (qw(jobs_id_seq models_id_seq))
{
	my $last = $node->safe_psql('newest', "SELECT last_value FROM distill.$seq");
	$node->safe_psql('oldest', "SELECT setval('distill.$seq', $last)");
}

# A new library under old SQL objects says what to do.
my ($rc, $out, $err) = $node->psql('oldest', "SELECT distill_predict('student', 'x')");
like($err, qr/version $oldest, its library is $newest.*ALTER EXTENSION distill UPDATE/s,
	'before the update, prediction asks for ALTER EXTENSION UPDATE');

$node->safe_psql('oldest', 'ALTER EXTENSION distill UPDATE');
is($node->safe_psql('oldest', "SELECT extversion FROM pg_extension WHERE extname = 'distill'"),
	$newest, "updated to $newest");
for my $table (@old_tables)
{
	my $rows = table_rows($node, 'newest', $table);
	isnt($rows, '', "rows in $table");
	is(table_rows($node, 'oldest', $table), $rows, "every row of $table kept");
}
# (0.4.0 added base_id: NULL for every model before it)
is(table_rows_without($node, 'oldest', 'models', 'base_id'), $legacy_models,
	'every row of models kept');
is($node->safe_psql('oldest', 'SELECT count(*) FROM distill.models WHERE base_id IS NOT NULL'),
	'0', 'no model has a base after the update');
is(answers_apart(predictions($node, 'oldest'), slurp_file("$legacy/predictions_0.2.0.txt")), '',
	'the models written by 0.2.0 give the answers they gave');
is($node->safe_psql('oldest', "SELECT distill.deployed_version('student')"), '2',
	'the newest version answers until one is deployed');
is($node->safe_psql('oldest', "SELECT distill.deploy('student', 'rollback')"), '1',
	'deploy works on the updated database');
$node->safe_psql('oldest', <<'SQL');
SET client_min_messages = warning;
SELECT distill.evaluate('student', 'SELECT input, choices[1] AS label, choices FROM cqa',
                        'exact', background => false);
SQL
is($node->safe_psql('oldest', 'SELECT n, version FROM distill.evaluations'), '40|1',
	'evaluation jobs work on the updated database');
is($node->safe_psql('oldest', "SELECT count(*) FROM distill.jobs WHERE status = 'succeeded'"),
	$node->safe_psql('newest', "SELECT count(*) FROM distill.jobs WHERE status = 'succeeded'") + 1,
	'the jobs history goes on');
$node->safe_psql('oldest', <<'SQL');
SET client_min_messages = warning;
SELECT distill.train('student', 'cqa', 'distill',
                     params => '{"d_model": 32, "layers": 1, "heads": 2, "epochs": 1,
                                 "vocab_size": 300, "seed": 6}',
                     background => false);
SELECT distill.deploy('student', 3);
SQL
is($node->safe_psql('oldest', <<'SQL'), '40|1', 'a version trained after the update is stored in chunks and answers');
SELECT count(distill_predict('student', input, choices)),
       (SELECT count(*) FROM distill.model_chunks c JOIN distill.models m ON m.id = c.model_id
        WHERE m.name = 'student' AND m.version = 3)
FROM cqa;
SQL

# The schema: a fresh install and an updated one, their objects detached
# from the extension so that pg_dump --schema-only shows them.
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION distill');
$node->safe_psql('postgres', 'CREATE DATABASE updated');
$node->safe_psql('updated', "CREATE EXTENSION distill VERSION '$oldest'");
$node->safe_psql('updated', 'ALTER EXTENSION distill UPDATE');
my $fresh = extension_schema('fresh');
my $updated = extension_schema('updated');
like($fresh, qr/CREATE TABLE distill\.deployments/, 'the dump shows the extension\'s objects');
ok($updated eq $fresh, 'an updated database has the schema of a fresh install')
  or diag(schema_diff($fresh, $updated));

$node->stop;
done_testing();

# '' when two predictions() outputs give the same answers and the same
# probabilities, else the first difference.  Probabilities are printed to
# 6 significant digits, and this library sums in another order than 0.2.0
# did: they may differ by one in the last digit.
sub answers_apart
{
	my ($got, $want) = @_;
	my @got = split /\n/, $got;
	my @want = split /\n/, $want;

	return scalar(@got) . ' rows, not ' . scalar(@want) if @got != @want;
	for my $i (0 .. $#want)
	{
		my ($got_answer, $got_json) = $got[$i] =~ /^(.*?) (\{.*\})$/;
		my ($want_answer, $want_json) = $want[$i] =~ /^(.*?) (\{.*\})$/;

		return "row $i: $got[$i]\n  not $want[$i]"
		  if !defined $got_answer || $got_answer ne $want_answer;
		my $got_p = decode_json($got_json);
		my $want_p = decode_json($want_json);
		for my $candidate (keys %$want_p)
		{
			my ($a, $b) = ($got_p->{$candidate}, $want_p->{$candidate});

			return "row $i, \"$candidate\": $got_json\n  not $want_json"
			  if !defined $a || abs($a - $b) > 2e-5 * abs($b);
		}
	}
	return '';
}

# COPY a table's rows from one database to another.
sub copy_rows
{
	my ($from, $to, $table) = @_;
	my $qualified = $table eq 'cqa' ? $table : "distill.$table";
	my $file = PostgreSQL::Test::Utils::tempdir . "/$table.copy";

	$node->safe_psql($from, "\\copy $qualified TO '$file'");
	$node->safe_psql($to, 'CREATE TABLE cqa (id text, input text, choices text[])')
	  if $table eq 'cqa';
	$node->safe_psql($to, "\\copy $qualified FROM '$file'");
	return;
}

# pg_dump --schema-only of database $db, with every member of the
# extension detached first so that it appears.
sub extension_schema
{
	my ($db) = @_;

	$node->safe_psql($db, <<'SQL');
DO $$
DECLARE
    member record;
BEGIN
    FOR member IN
        SELECT o.type, o.identity
        FROM pg_depend d, pg_identify_object(d.classid, d.objid, d.objsubid) o
        WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
          AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'distill')
    LOOP
        EXECUTE format('ALTER EXTENSION distill DROP %s %s', member.type, member.identity);
    END LOOP;
END
$$;
SQL
	my ($stdout, $stderr) =
	  run_command([ 'pg_dump', '--schema-only', '-d', $node->connstr($db) ]);
	die "pg_dump $db failed: $stderr" if $stderr ne '';
	$stdout =~ s/^--.*\n//mg;    # comments, some with the database's name
	$stdout =~ s/^\\(un)?restrict .*\n//mg;    # a random key per dump
	return $stdout;
}

# What differs between two schema dumps, as diff -u shows it.
sub schema_diff
{
	my ($fresh, $updated) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir;

	PostgreSQL::Test::Utils::append_to_file("$dir/fresh.sql", $fresh);
	PostgreSQL::Test::Utils::append_to_file("$dir/updated.sql", $updated);
	my ($diff) = run_command([ 'diff', '-u', "$dir/fresh.sql", "$dir/updated.sql" ]);
	return $diff;
}
