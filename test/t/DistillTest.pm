# DistillTest.pm - what the TAP tests of test/t share (test/t/README.md).
package DistillTest;

use strict;
use warnings;
use Exporter 'import';
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(new_node teacher_url teacher_stats wait_for_teacher);

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

1;
