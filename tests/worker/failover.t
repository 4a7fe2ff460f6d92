# Sentinel fail-over end to end: nginx (ragq_valkey sentinel=... master=...,
# ragq_valkey_replicas 1) and ragq-worker (RAGQ_VALKEY_URL=
# redis+sentinel://...) on a primary, two replicas and three sentinels.
# SIGKILL of the primary under steady POST /chat load: 202s come back
# without touching nginx or the worker; every job answered 202 is on the
# new primary and reaches a final state there (finished), so the worker
# processes on the new primary; a question asked afterwards is answered
# through /job-status?wait=. A 3 s stall of the new primary after the
# fail-over does not start a second one.
use Test::Nginx::Socket;
use Ragq::ValkeyHA;
use Ragq::Standin;
use Ragq::Worker;
use Ragq::Chat;

our $Prefix = "wf$$";
$ENV{TEST_NGINX_WPREFIX} = $Prefix;

our $HA = Ragq::ValkeyHA->new;
our $Set = $HA->ha_set(name => 'wfo', replicas => 2, sentinels => 3);
$ENV{TEST_NGINX_SENTINELS} = join ',',
  map { '127.0.0.1:' . $_->port } @{ $Set->{sentinels} };

our $S = Ragq::Standin->start(dim => 16);
$S->create_collection('docs', 16);
$S->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);
our $W = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $Prefix, RAGQ_VALKEY_URL => $HA->sentinel_url($Set),
    OPENAI_BASE_URL => $S->base_url, OPENAI_API_KEY => 'k',
    QDRANT_URL => $S->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_RECLAIM_AFTER => '2s',
});
$W->ready(30) or die "worker did not start:\n" . $W->log;

our @Ids;

# $id's status on the current primary ('' when the hash is missing)
sub status_of {
    my $id = shift;
    my ($out) = $Set->{primary}->try_cli('HGET', "$Prefix:job:$id", 'status');
    return $out // '';
}

# waits until every id is final on the current primary; the ones that are not
sub not_final {
    my ($secs, @ids) = @_;
    my $deadline = time + $secs;
    my @left = @ids;
    while (@left && time < $deadline) {
        @left = grep { status_of($_) !~ /^(finished|failed|canceled)$/ } @left;
        select(undef, undef, undef, 0.2) if @left;
    }
    return @left;
}

no_shuffle();
no_long_string();

# the newest job on the current primary
sub newest_job {
    my @k = $Set->{primary}->cli_list('--scan', '--pattern', "$Prefix:job:*");
    my %c = map { $_ => $Set->{primary}->cli('HGET', $_, 'created_at') } @k;
    my ($last) = sort { $c{$b} <=> $c{$a} } @k;
    return $last =~ /:job:(\w+)$/ ? $1 : '';
}

add_block_preprocessor(sub {
    my $block = shift;
    # a block without a request reads the job the block before it queued
    # (preprocessors run just before their block)
    $block->set_value('request', 'GET /job-status?job_id=' . main::newest_job() . '&wait=20')
      unless defined $block->request;
});

plan tests => 17;
run_tests();

__DATA__

=== TEST 1: through Sentinel: queued, and the worker answers it
--- http_config
ragq_valkey sentinel=$TEST_NGINX_SENTINELS master=wfo;
--- config
location = /chat { ragq_prefix $TEST_NGINX_WPREFIX; ragq_valkey_replicas 1; ragq_enqueue; }
location = /job-status { ragq_prefix $TEST_NGINX_WPREFIX; ragq_status; }
--- init
my $r = Ragq::Chat::until_202(30, query => 'warm+up');
Test::More::ok($r, 'the sentinels named the primary');
push @main::Ids, $r->{job_id} if $r;
Test::More::is(scalar(main::not_final(30, @main::Ids)), 0, 'the worker answered it');
--- request
POST /chat?query=What+is+the+capital+of+France%3F
--- error_code: 202
--- no_error_log
[alert]



=== TEST 2: SIGKILL of the primary under load: 202s again, every 202's job finished on the new primary
--- init
my ($ok, @load) = Ragq::Chat::load_and_kill(
    kill => sub { $main::Set->{primary}->kill }, query => 'What+is+the+capital+of+France%3F');
Test::More::ok($ok, '20 answers of 202 in a row after the SIGKILL');
my $new = $main::HA->wait_failover($main::Set, 30);
# the request below waits for 1 replica: the other one must have resynced
$main::HA->wait_replicated($new, 1, 30);
# "state=online" does not yet mean the replica acknowledges WAIT (one being
# re-pointed by the sentinels, or loading a resync, does not): until a 202
my @waited;
my $first = Ragq::Chat::until_202(30, query => 'once+replicated', seen => \@waited);
Test::More::ok($first, 'a write confirmed by a replica of the new primary')
    or Test::More::diag("meanwhile: @waited");
push @main::Ids, $first->{job_id} if $first;
# the new primary stalls for longer than the sentinels' first down-after (1 s):
# no second fail-over (wait_failover raised down-after; one would leave the
# primary no replica for WAIT 1), the request below is confirmed by the same
# replica
$new->pause;
select(undef, undef, undef, 3);
$new->resume;
select(undef, undef, undef, 2);
Test::More::is($main::HA->master_addr($main::Set), $new->addr, 'a 3 s stall of the new primary: still the primary')
    or Test::More::diag(join "\n", $main::HA->sentinel_events(8));
Test::More::diag(Ragq::Chat::recovery_summary(@load)
    . (@waited ? "; then, online but not yet acknowledging: @waited" : ''));
Test::More::is(scalar(Ragq::Chat::unexpected(@load)), 0, 'every other answer is a 503 with Retry-After');
push @main::Ids, map { $_->[1]{job_id} } grep { $_->[1]{status} == 202 } @load;
my @left = main::not_final(60, @main::Ids);
Test::More::is(scalar(@left), 0, 'every job answered 202 reached a final state on the new primary')
    or Test::More::diag("not final: @left");
my @unfinished = grep { main::status_of($_) ne 'finished' } @main::Ids;
Test::More::is(scalar(@unfinished), 0, 'and finished') or Test::More::diag("@unfinished");
Test::More::ok($main::W->alive, 'the worker was not restarted');
--- request
POST /chat?query=And+after+the+fail-over%3F
--- error_code: 202
--- response_body_like eval
qr/"job_id":"([0-9a-f]{32})"/
--- no_error_log
[alert]



=== TEST 3: the question asked after the fail-over: answered, through /job-status?wait=
--- timeout: 30
--- error_code: 200
--- response_body_like chomp
"status":"finished"
--- no_error_log
[alert]
