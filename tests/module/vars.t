# $ragq_job_id, $ragq_job_status and $ragq_version in an access log: the
# 202 of POST /chat logs the new job as queued, GET /job-status (and a
# long-poll) the job it answered with its status, requests about no job
# "-"; the version in the error log at start.
BEGIN {
    $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0;
}

use Test::Nginx::Socket;
use Ragq::Valkey;
use Time::HiRes ();

no_shuffle();
no_long_string();

our $Version = do {
    open my $f, '<', ($ENV{RAGQ_ROOT} // '.') . '/VERSION' or die "VERSION: $!";
    my $v = <$f>;
    $v =~ s/\s+\z//;
    $v;
};

our $Done = '0000000000000000000000000000bb01';
our $Missing = '0000000000000000000000000000bb02';

sub access_log { server_root() . '/logs/ragq.log' }

# The log's lines once there are n of them (nginx writes a line after the
# answer, so the client may see the answer first).
sub log_lines {
    my ($n) = @_;
    my @lines;
    for (1 .. 100) {
        if (open my $f, '<', access_log()) {
            @lines = <$f>;
            chomp @lines;
        }
        return @lines if @lines >= $n;
        Time::HiRes::sleep(0.05);
    }
    return @lines;
}

# The job id of the last POST /chat (the only job of prefix "lv" we did not seed).
sub queued_id {
    my @k = grep { $_ ne $Done } Ragq::Valkey::job_ids('lv');
    return $k[0] // die "no queued job\n";
}

add_response_body_check(sub {
    my ($block, $body, $idx, $rep, $dry) = @_;
    return if $dry || $block->name !~ /\bTEST 6:/;
    my @l = log_lines(5);
    my $id = queued_id();
    is_deeply \@l, [
        "POST /chat 202 job=$id status=queued v=$Version",
        "GET /job-status 200 job=$id status=queued v=$Version",
        "GET /job-status 200 job=$Done status=finished v=$Version",
        "GET /job-status 404 job=- status=- v=$Version",
        "GET /job-status 400 job=- status=- v=$Version",
    ], 'TEST 6: the access log carries each job and status';
});

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'EOF') unless defined $block->http_config;
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
log_format ragq '$request_method $uri $status job=$ragq_job_id status=$ragq_job_status v=$ragq_version';
EOF
    $block->set_value('config', <<'EOF') unless defined $block->config;
location = /chat { ragq_prefix lv; access_log logs/ragq.log ragq; ragq_enqueue; }
location = /job-status { ragq_prefix lv; access_log logs/ragq.log ragq; ragq_status; }
location = /version { return 200 "$ragq_version\n"; }
EOF
    $block->set_value('no_error_log', "[error]\n[alert]\n")
      unless defined $block->no_error_log;
    # the job to read is the one TEST 1 queued
    $block->set_value('request', 'GET /job-status?job_id=' . main::queued_id())
      if $block->name =~ /\bTEST 2:/;
});

plan tests => 22;
run_tests();

__DATA__

=== TEST 1: POST /chat: the new job, queued; the version in the error log at start
--- init
Ragq::Valkey::cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', 'lv:*')) do redis.call('DEL', k) end", 0);
Ragq::Valkey::cmd('HSET', "lv:job:$main::Done", status => 'finished', query => 'q',
    tenant => '', created_at => 1, attempts => 1, result => 'r');
--- request
POST /chat?query=log+me
--- error_code: 202
--- error_log eval
qr{\[notice\] .*ragq/\Q$::Version\E}



=== TEST 2: GET /job-status of that job
--- error_code: 200
--- response_body_like chomp
"status":"queued"



=== TEST 3: a finished job read by a long-poll
--- request eval
"GET /job-status?job_id=$::Done&wait=1"
--- error_code: 200



=== TEST 4: an unknown job: no job to log
--- request eval
"GET /job-status?job_id=$::Missing"
--- error_code: 404



=== TEST 5: no job id at all
--- request
GET /job-status
--- error_code: 400



=== TEST 6: the access log
--- request
GET /version
--- response_body eval
"$::Version\n"
