# A primary that stops being one, with and without Sentinel. Without: a
# primary demoted with REPLICAOF makes the next write fail with READONLY,
# logged as such, answered 503 valkey_readonly (never EXECABORT, never a
# wrong answer) until it is promoted again, and nginx recovers by itself.
# With Sentinel (ragq_valkey sentinel=... master=...): the same demotion,
# then the sentinels' fail-over, which nginx follows (+switch-master) to the
# new primary; and SIGKILL of the primary under steady POST /chat load with
# ragq_valkey_replicas 1: 202s come back without touching nginx (the time
# is printed), every answer meanwhile is a 503 with Retry-After, and every
# job answered 202 is on the new primary.
use Test::Nginx::Socket;
use Ragq::ValkeyHA;
use Ragq::Valkey ();
use Ragq::Chat;
use Time::HiRes ();

our $HA = Ragq::ValkeyHA->new;

# without Sentinel: two standalone servers
our $A = $HA->server;
our $B = $HA->server;
$ENV{TEST_NGINX_A_PORT} = $A->port;

# with Sentinel: one set for the demotion, one (two replicas, so the new
# primary still has one for WAIT) for the SIGKILL
our $Set1 = $HA->ha_set(name => 'demoted', replicas => 1, sentinels => 3);
our $Set2 = $HA->ha_set(name => 'killed', replicas => 2, sentinels => 3);
$ENV{TEST_NGINX_SENTINELS1} = join ',',
  map { '127.0.0.1:' . $_->port } @{ $Set1->{sentinels} };
$ENV{TEST_NGINX_SENTINELS2} = join ',',
  map { '127.0.0.1:' . $_->port } @{ $Set2->{sentinels} };

# the jobs of $prefix on server $s answered 202 in @ids that are missing
sub missing {
    my ($s, $prefix, @ids) = @_;
    my %have = map { $_ => 1 } Ragq::Valkey::job_ids($prefix, sub { $s->cli_list(@_) });
    return grep { !$have{$_} } @ids;
}

# a line of the running nginx's error.log matches $re
sub error_log_has {
    my $re = shift;
    my $root = $ENV{TEST_NGINX_SERVROOT} // 't/servroot';
    open my $f, '<', "$root/logs/error.log" or return 0;
    while (<$f>) {
        return 1 if $_ =~ $re;
    }
    return 0;
}

no_shuffle();
no_long_string();

plan tests => 44;
run_tests();

__DATA__

=== TEST 1: without Sentinel: served by the primary
--- http_config
ragq_valkey 127.0.0.1:$TEST_NGINX_A_PORT;
--- config
location = /chat { ragq_prefix fo; ragq_enqueue; }
location = /job-status { ragq_prefix fo; ragq_status; }
--- request
POST /chat?query=before
--- error_code: 202
--- no_error_log
[error]



=== TEST 1b: the primary demoted (REPLICAOF): READONLY logged, 503 valkey_readonly + Retry-After
--- init
$main::A->replicaof($main::B);
--- request
POST /chat?query=demoted
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like chomp
"code":"valkey_readonly"
--- error_log eval
[qr/ragq: valkey error: READONLY You can't write against a read only replica/,
 qr/ragq: valkey 127\.0\.0\.1:\d+ answered READONLY: reconnecting/]
--- no_error_log
EXECABORT
[alert]



=== TEST 1c: ... while it stays a replica: ROLE says so on every reconnect, still 503 valkey_readonly
--- init
my $ok = 0;
for (1 .. 200) {
    last if $ok = (main::error_log_has(qr/is not the primary \(ROLE: slave\)/));
    Time::HiRes::sleep(0.05);
}
Test::More::ok($ok, 'the reconnect found a replica (ROLE)');
--- request
POST /chat?query=still
--- error_code: 503
--- response_body_like chomp
"code":"valkey_readonly"
--- no_error_log
EXECABORT
[alert]



=== TEST 1d: promoted again: the same nginx serves again by itself
--- init
$main::A->promote;
my $r = Ragq::Chat::until_202(30);
Test::More::ok($r, '202 again after the promotion');
--- request
POST /chat?query=promoted
--- error_code: 202
--- error_log
ragq: valkey connection restored
--- no_error_log
[alert]



=== TEST 2: Sentinel: the primary asked of the sentinels, served
--- http_config
ragq_valkey sentinel=$TEST_NGINX_SENTINELS1 master=demoted;
--- config
location = /chat { ragq_prefix fo; ragq_enqueue; }
location = /job-status { ragq_prefix fo; ragq_status; }
--- init
Test::More::ok(Ragq::Chat::until_202(30), 'the sentinels named the primary');
--- request
POST /chat?query=sentinel
--- error_code: 202
--- error_log eval
qr/ragq: valkey sentinel 127\.0\.0\.1:\d+: the primary of "demoted" is 127\.0\.0\.1:\d+ \(asked\)/
--- no_error_log
[error]
[alert]



=== TEST 2b: the primary demoted behind the sentinels' back: READONLY logged, 503 valkey_readonly
--- init
$main::Set1->{replicas}[0]->promote;
$main::Set1->{primary}->replicaof($main::Set1->{replicas}[0]);
--- request
POST /chat?query=demoted
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like chomp
"code":"valkey_readonly"
--- error_log eval
qr/ragq: valkey error: READONLY/
--- no_error_log
EXECABORT
[alert]



=== TEST 2c: the sentinels fail over: nginx follows +switch-master, and the job lands on the new primary
--- init
$main::Set1->{sentinels}[0]->cli('SENTINEL', 'FAILOVER', 'demoted');
my $new = $main::HA->wait_failover($main::Set1, 30);
my $r = Ragq::Chat::until_202(30, query => 'followed');
Test::More::ok($r, '202 again after the fail-over');
Test::More::is(main::missing($new, 'fo', $r->{job_id}), 0, 'the job is on the new primary');
--- request
POST /chat?query=after
--- error_code: 202
--- error_log eval
[qr/ragq: valkey sentinel 127\.0\.0\.1:\d+: \+switch-master demoted 127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+/,
 qr/ragq: valkey connection restored \(127\.0\.0\.1:\d+\)/]
--- no_error_log
[alert]



=== TEST 3: SIGKILL of the primary under steady load, ragq_valkey_replicas 1: 202s come back; every 202's job is on the new primary
--- http_config
ragq_valkey sentinel=$TEST_NGINX_SENTINELS2 master=killed;
--- config
location = /chat { ragq_prefix fo; ragq_valkey_replicas 1; ragq_enqueue; }
location = /job-status { ragq_prefix fo; ragq_status; }
--- init
Test::More::ok(Ragq::Chat::until_202(30), 'served before the kill');
my ($ok, @load) = Ragq::Chat::load_and_kill(kill => sub { $main::Set2->{primary}->kill });
Test::More::ok($ok, '20 answers of 202 in a row after the SIGKILL');
my $new = $main::HA->wait_failover($main::Set2, 30);
# the request below waits for 1 replica: the other one must have resynced
$main::HA->wait_replicated($new, 1, 30);
# "state=online" does not yet mean the replica acknowledges WAIT (one being
# re-pointed by the sentinels, or loading a resync, does not): until a 202
my @waited;
my $first = Ragq::Chat::until_202(30, query => 'once+replicated', seen => \@waited);
Test::More::ok($first, 'a write confirmed by a replica of the new primary')
    or Test::More::diag("meanwhile: @waited");
Test::More::diag(Ragq::Chat::recovery_summary(@load)
    . (@waited ? "; then, online but not yet acknowledging: @waited" : ''));
my @bad = Ragq::Chat::unexpected(@load);
Test::More::is(scalar(@bad), 0, 'every other answer is a 503 with Retry-After')
    or Test::More::diag(join "\n", map { "$_->[1]{status} $_->[1]{body}" } @bad);
my @ids = map { $_->[1]{job_id} } grep { $_->[1]{status} == 202 } @load;
Test::More::cmp_ok(scalar(@ids), '>=', 40, 'jobs answered 202 before and after');
my @missing = main::missing($new, 'fo', @ids);
Test::More::is(scalar(@missing), 0, 'every job answered 202 is on the new primary')
    or Test::More::diag("missing: @missing");
# nginx followed the fail-over: from the sentinels' +switch-master or, when
# its sentinel connection was being remade then, by asking them again (under
# load either may come first, so the log line of the new primary is what is
# asserted, not how it was learned)
my $port = $new->client_port;
my $log = server_root() . '/logs/error.log';
Test::More::ok(Ragq::Chat::wait_log($log, qr/the primary of "killed" is \S*:\Q$port\E \(/, 10),
    "nginx's log names the new primary (port $port)");
--- request
POST /chat?query=afterwards
--- error_code: 202
--- no_error_log
[alert]
