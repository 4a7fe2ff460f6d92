# Graceful reload (HUP) and graceful shutdown (QUIT) while requests wait on
# Valkey: the old worker answers them (202) before it exits, closes its
# Valkey connection itself (no "open socket ... left" alert), and the new
# workers serve.
use Test::Nginx::Socket;
use Ragq::Valkey;
use POSIX ();

master_on();
workers(1);
no_shuffle();

our $Queued = qr/^\{"status":"queued","job_id":"([0-9a-f]{32})","status_url":"\/job-status\?job_id=\1"\}$/;

# Holds every Valkey reply for $ms, and sends $sig to the nginx master
# $after seconds from now, while the block's request waits.
sub signal_while_paused {
    my ($sig, $after, $ms) = @_;
    my $pidfile = server_root() . '/logs/nginx.pid';
    open my $fh, '<', $pidfile or die "$pidfile: $!";
    my $master = <$fh>;
    chomp $master;
    Ragq::Valkey::cmd('CLIENT', 'PAUSE', $ms, 'ALL');
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        select(undef, undef, undef, $after);
        kill $sig, $master;
        POSIX::_exit(0);
    }
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'EOF2') unless defined $block->http_config;
ragq_valkey 127.0.0.1:$TEST_NGINX_REDIS_PORT;
ragq_valkey_timeout 3s;
EOF2
    $block->set_value('config', <<'EOF2') unless defined $block->config;
location = /chat { ragq_prefix lc; ragq_enqueue; }
EOF2
});

plan tests => 23;
run_tests();

__DATA__

=== TEST 1: reload (HUP) with a request in flight: answered, then the old worker exits cleanly
--- init
main::signal_while_paused('HUP', 0.2, 700);
--- request
POST /chat?query=during-reload
--- error_code: 202
--- response_body_like eval
$::Queued
--- wait: 0.5
--- error_log
reconfiguring
gracefully shutting down
--- no_error_log
[alert]
[error]
open socket
--- no_shutdown_error_log
[alert]
open socket



=== TEST 2: ... the reloaded worker serves
--- request eval
["POST /chat?query=after-reload", "POST /chat?query=again"]
--- error_code eval
[202, 202]
--- response_body_like eval
[$::Queued, $::Queued]
--- no_shutdown_error_log
[alert]
open socket



=== TEST 3: shutdown (QUIT) with a request in flight: answered before the worker exits
--- init
main::signal_while_paused('QUIT', 0.2, 700);
--- request
POST /chat?query=during-quit
--- error_code: 202
--- response_body_like eval
$::Queued
--- wait: 0.5
--- error_log
gracefully shutting down
exit
--- no_error_log
[alert]
open socket
--- no_shutdown_error_log
[alert]
open socket
