# Worker logs: RAGQ_LOG_FORMAT=json gives one JSON object per line (ts,
# level, pid, msg) and a line per job transition with its fields; levels
# filter; and no API key, Valkey password, webhook secret or question ever
# appears in a log or in a job's error, through the happy path and faults
# whose upstream answers echo them back (a 401 repeating the key, Qdrant's
# plain-text 401, a 400 repeating the question, 500s repeating both), a
# Valkey URL with a password that is unreachable or refused.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use Ragq::Valkey ();
use Ragq::Standin;
use Ragq::Worker;

my $P = "lg$$";
my $tag = sprintf '%d%06d', $$, int rand 1e6;
my %secret = (
    OPENAI_API_KEY => "sk-SECRET-openai-$tag",
    RAGQ_EMBED_API_KEY => "sk-SECRET-embed-$tag",
    QDRANT_API_KEY => "qd-SECRET-qdrant-$tag",
    RAGQ_WEBHOOK_SECRET => "whsec_SECRETwebhook$tag",
);
my $password = "pw-SECRET-valkey-$tag";
my $question = "What does the purple elephant QUESTION$tag keep in its trunk?";

my $s = Ragq::Standin->start(dim => 16);
$s->create_collection('docs', 16);
$s->upsert('docs', [ { id => 1, payload => { text => 'The capital of France is Paris.', source => 'f.md' } } ]);

my $CHAT = '/v1/chat/completions';
my $EMB = '/v1/embeddings';
my $QRY = '/collections/docs/points/query';

sub oai_error { return { error => { message => $_[0], type => 'invalid_request_error', code => $_[1] } } }

my $w = Ragq::Worker->start(env => {
    %secret, RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url,
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_MAX_ATTEMPTS => 1,
    RAGQ_LOG_FORMAT => 'json', RAGQ_LOG_LEVEL => 'debug',
});
ok($w->wait_log(qr/"msg":"ready: /), 'the worker is ready') or diag $w->log;

# Runs one job under a fault; its hash.
sub run_job {
    my (@faults) = @_;
    $s->reset;
    $s->fault($_) for @faults;
    my $id = Ragq::Worker::enqueue(prefix => $P, query => $question);
    Ragq::Worker::wait_final($P, [$id], 60);
    my $j = Ragq::Worker::job($P, $id);
    $j->{id} = $id;
    return $j;
}

my %job;
$job{happy} = run_job();
$job{key401} = run_job({ path => $CHAT, status => 401,
    body => oai_error("Incorrect API key provided: $secret{OPENAI_API_KEY}.", 'invalid_api_key') });
$job{embed401} = run_job({ path => $EMB, status => 401,
    body => oai_error("Incorrect API key provided: $secret{RAGQ_EMBED_API_KEY}", 'invalid_api_key') });
$job{qdrant401} = run_job({ path => $QRY, status => 401,
    body => "Invalid API key or JWT: $secret{QDRANT_API_KEY}" });
$job{prompt400} = run_job({ path => $CHAT, status => 400,
    body => oai_error("Invalid prompt: '$question' is not allowed", 'invalid_prompt') });
$job{echo500} = run_job({ path => $CHAT, status => 500, times => 5,
    body => oai_error("upstream failed for key $secret{OPENAI_API_KEY} on '$question'", 'server_error') });

is($job{happy}{status}, 'finished', 'the happy job finished') or diag explain $job{happy};
for my $k (qw(key401 embed401 qdrant401 prompt400 echo500)) {
    is($job{$k}{status}, 'failed', "$k: failed");
}
my %err = map { $_ => decode_json($job{$_}{error} // '{}') } grep { $_ ne 'happy' } keys %job;
like($err{key401}{message}, qr/Incorrect API key provided: \*\*\*\./, "401: the upstream's message, the key masked");
like($err{embed401}{message}, qr/provided: \*\*\*/, 'embeddings 401: masked');
like($err{qdrant401}{message}, qr/Invalid API key or JWT: \*\*\*/, "Qdrant's plain-text 401: masked");
like($err{prompt400}{message}, qr/Invalid prompt: '\[query\]' is not allowed/, 'a 400 echoing the question: masked');
like($err{echo500}{message}, qr/key \*\*\* on '\[query\]'/, '500s echoing both: masked');

# Valkey with a password: unreachable, then refused (the suite's server has none).
my $closed = do {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1) or die;
    my $p = $l->sockport;
    close $l;
    $p;
};
my $wu = Ragq::Worker->start(env => { RAGQ_VALKEY_URL => "redis://:$password\@127.0.0.1:$closed",
    RAGQ_CONNECT_TIMEOUT => '500ms', RAGQ_PREFIX => $P });
is($wu->wait_exit(15) >> 8, 1, 'a Valkey URL with a password, unreachable: exit 1');
like($wu->log, qr/unreachable/, 'and it says so');
my $wr = Ragq::Worker->start(env => { RAGQ_VALKEY_URL => "redis://:$password\@127.0.0.1:" . Ragq::Valkey::port(),
    RAGQ_CONNECT_TIMEOUT => '500ms', RAGQ_PREFIX => $P, RAGQ_LOG_LEVEL => 'debug' });
is($wr->wait_exit(15) >> 8, 1, 'a password Valkey refuses: exit 1');
like($wr->log, qr/AUTH/, 'and it says AUTH failed');

# No secret anywhere.
my @everything = ($w->log, $wu->log, $wr->log, map { $job{$_}{error} // '' } keys %job);
for my $what (sort(keys %secret), 'password', 'question') {
    my $v = $what eq 'password' ? $password : $what eq 'question' ? $question : $secret{$what};
    ok(!grep({ index($_, $v) >= 0 } @everything), "$what: in no log line and no job error");
}

# JSON lines.
my @lines = split /\n/, $w->log;
my @bad = grep { my $o = eval { decode_json($_) }; !(ref $o eq 'HASH' && defined $o->{msg}
    && ($o->{ts} // '') =~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
    && ($o->{level} // '') =~ /^(error|warn|info|debug)$/ && ($o->{pid} // 0) == $w->pid) } @lines;
ok(@lines > 10, scalar(@lines) . ' lines');
is_deeply(\@bad, [], 'every line is one JSON object with ts, level, pid, msg');
my @obj = map { decode_json($_) } @lines;
my @happy = grep { ($_->{job_id} // '') eq $job{happy}{id} } @obj;
is_deeply([map { $_->{msg} } @happy], ['job started', 'job finished'], 'the happy job: two transitions');
my ($fin) = grep { $_->{msg} eq 'job finished' } @happy;
is_deeply([map { defined $fin->{$_} ? 1 : 0 } qw(duration_ms embed_ms retrieve_ms generate_ms)], [1, 1, 1, 1],
    'finished: total and per-stage durations');
is_deeply([@$fin{qw(status attempt max_attempts)}], ['finished', 1, 1], 'finished: status and attempt');
my ($failed) = grep { ($_->{job_id} // '') eq $job{key401}{id} && $_->{msg} eq 'job failed' } @obj;
is_deeply([@$failed{qw(status error_code)}], ['failed', 'unauthorized'], 'failed: status and error code');
like($failed->{error}, qr/\*\*\*/, 'failed: the error, masked');

# Levels: at warn, no info line; the released attempt's warning is there.
my $ww = Ragq::Worker->start(env => {
    RAGQ_PREFIX => $P, OPENAI_BASE_URL => $s->base_url, OPENAI_API_KEY => 'k',
    QDRANT_URL => $s->qdrant_url, RAGQ_COLLECTION => 'docs', RAGQ_MAX_ATTEMPTS => 2,
    RAGQ_RECLAIM_AFTER => '1s', RAGQ_LOG_LEVEL => 'warn',
});
$w->stop;
$s->reset;
$s->fault({ path => $CHAT, status => 500, times => 5 });
my $id = Ragq::Worker::enqueue(prefix => $P);
ok($ww->wait_log(qr/job $id: attempt 1 of 2 gave up/, 30), 'warn: the released attempt is logged');
is(Ragq::Worker::wait_final($P, [$id], 30), 1, 'and the job ends');
is($ww->stop, 0, 'exit 0');
my @info = grep { !/ (warn|error): / } split /\n/, $ww->log;
is_deeply(\@info, [], 'warn: no info or debug line');

done_testing();
