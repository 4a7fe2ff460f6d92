# Self-test of Ragq::Valkey against the private redis-server of tests/run:
# commands, lists, flushall, pause/resume (hung server), stop/start/restart.
use strict;
use warnings;
use Test::More;
use IO::Select;
use IO::Socket::INET;
use Ragq::Valkey;

plan skip_all => 'run via tests/run' unless $ENV{RAGQ_TEST_REDIS_CONF};

sub raw_ping {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => Ragq::Valkey::port(), Proto => 'tcp', Timeout => 1)
      or return 'noconnect';
    print $s "PING\r\n";
    my $sel = IO::Select->new($s);
    return 'noreply' unless $sel->can_read(0.3);
    sysread($s, my $buf, 100);
    return $buf // '';
}

like(Ragq::Valkey::port(), qr/^\d+$/, 'port');
is(Ragq::Valkey::cmd('SET', 'ragq:selftest', "two words"), 'OK', 'SET');
is(Ragq::Valkey::cmd('GET', 'ragq:selftest'), 'two words', 'GET keeps spaces');
Ragq::Valkey::cmd('DEL', 'ragq:selftest:l');
Ragq::Valkey::cmd('RPUSH', 'ragq:selftest:l', 'a', 'b c', 'd');
is_deeply([Ragq::Valkey::cmd_list('LRANGE', 'ragq:selftest:l', 0, -1)],
    ['a', 'b c', 'd'], 'cmd_list');
is_deeply([Ragq::Valkey::cmd_list('LRANGE', 'ragq:nothing', 0, -1)], [],
    'cmd_list of an empty reply');
like(Ragq::Valkey::cmd('HSET', 'ragq:selftest:h', 'f', 'v'), qr/^[01]$/,
    'integer reply');

Ragq::Valkey::pause();
is(raw_ping(), 'noreply', 'paused server does not answer');
Ragq::Valkey::resume();
like(raw_ping(), qr/^\+PONG/, 'resumed server answers');

Ragq::Valkey::stop();
is(raw_ping(), 'noconnect', 'stopped: port closed');
ok(!eval { Ragq::Valkey::cmd('PING'); 1 }, 'cmd dies while stopped');
Ragq::Valkey::start();
is(Ragq::Valkey::cmd('PING'), 'PONG', 'started again');

Ragq::Valkey::cmd('SET', 'ragq:selftest', 'x');
Ragq::Valkey::pause();
Ragq::Valkey::restart();    # also works on a paused server
is(Ragq::Valkey::cmd('GET', 'ragq:selftest'), '', 'restart: nothing saved');
is(Ragq::Valkey::cmd('PING'), 'PONG', 'restarted');

Ragq::Valkey::cmd('SET', 'ragq:selftest', 'x');
Ragq::Valkey::flushall();
is(Ragq::Valkey::cmd('DBSIZE'), '0', 'flushall');

done_testing();
