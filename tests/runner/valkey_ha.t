# Self-test of Ragq::ValkeyHA (the TLS / ACL / Sentinel harness): the PKI
# verifies as documented, a TLS-only server refuses plain and untrusted
# clients, ACL users get NOPERM outside their rules, commandstats count a
# client's commands, a demoted primary answers READONLY, and an HA set fails
# over after SIGKILL of its primary.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use Ragq::ValkeyHA;

my $ha = Ragq::ValkeyHA->new;
my $k = $ha->pki;

sub verify {
    my ($ca, $cert) = @_;
    my $out = `openssl verify -CAfile $ca $cert 2>&1`;
    return $? == 0;
}
ok(verify($k->{ca}, $k->{server_cert}), 'server cert verifies against the CA');
ok(verify($k->{ca}, $k->{client_cert}), 'client cert verifies against the CA');
ok(!verify($k->{ca}, $k->{bad_server_cert}), 'bad server cert does not');
ok(!verify($k->{ca}, $k->{bad_client_cert}), 'bad client cert does not');
like(`openssl x509 -in $k->{server_cert} -noout -ext subjectAltName 2>&1`,
     qr/IP Address:127\.0\.0\.1.*DNS:localhost|DNS:localhost.*IP Address:127\.0\.0\.1/s,
     'server SAN: 127.0.0.1 and localhost');

# TLS only, client certificates required.
my $s = $ha->server(tls => 1, plain => 0, tls_auth_clients => 'yes',
    users => { app => 'on >secret ~app:* &app:* -@all +get +set +ping' });
ok(!defined $s->port, 'no plain port');
is($s->cli('SET', 'app:k', 'v'), 'OK', 'admin over TLS with the client cert');
is($s->url, 'rediss://127.0.0.1:' . $s->tls_port, 'rediss URL');
is($s->url(user => 'app', pass => 'secret', db => 2),
   'rediss://app:secret@127.0.0.1:' . $s->tls_port . '/2', 'URL with credentials');
my @base = ('redis-cli', '-h', '127.0.0.1', '-p', $s->tls_port, '--tls');
my $no_cert = `@base --cacert $k->{ca} PING 2>&1`;
unlike($no_cert, qr/PONG/, 'tls-auth-clients yes: refused without a client cert');
my $bad_client = `@base --cacert $k->{ca} --cert $k->{bad_client_cert} --key $k->{bad_client_key} PING 2>&1`;
unlike($bad_client, qr/PONG/, 'refused with an untrusted client cert');
my $untrusted = `@base --cacert $k->{bad_ca} --cert $k->{client_cert} --key $k->{client_key} PING 2>&1`;
unlike($untrusted, qr/PONG/, 'client refuses the server with the wrong CA');

my ($out, $rc) = $s->cli_as('app', 'secret', 'GET', 'app:k');
is($out, 'v', 'ACL user reads its prefix');
($out) = $s->cli_as('app', 'secret', 'GET', 'other:k');
like($out, qr/NOPERM/, 'ACL user: NOPERM outside its keys');
($out) = $s->cli_as('app', 'secret', 'DEL', 'app:k');
like($out, qr/NOPERM/, 'ACL user: NOPERM for a command it lacks');
$s->acl_setuser('app', '+del');
($out) = $s->cli_as('app', 'secret', 'DEL', 'app:k');
is($out, '1', 'ACL SETUSER at run time');

my $before = $s->command_count('get', 'del');
$s->cli_as('app', 'secret', 'GET', 'app:x') for 1 .. 3;
$s->cli_as('app', 'secret', 'GET', 'nope:x');
is($s->command_count('get', 'del') - $before, 4, 'command_count: calls + rejected');
ok($s->errorstats->{NOPERM} >= 2, 'errorstats count NOPERM');

$s->kill;
ok(!$s->alive, 'SIGKILL');
$s->start;
is($s->cli('PING'), 'PONG', 'started again on the same port');
($out) = $s->cli_as('app', 'secret', 'DEL', 'app:k');
is($out, '0', 'ACL SETUSER survived the restart (ACL SAVE)');

# A wrong-name server cert: verification by name fails.
my $w = $ha->server(tls => 1, plain => 0, cert => 'wrong_name');
my $wn = `redis-cli -h 127.0.0.1 -p @{[$w->tls_port]} --tls --cacert $k->{ca} --sni localhost PING 2>&1`;
# redis-cli does not check the host name, but openssl does:
my $chk = `openssl s_client -connect 127.0.0.1:@{[$w->tls_port]} -CAfile $k->{ca} -verify_hostname localhost -verify_return_error </dev/null 2>&1`;
like($chk, qr/hostname mismatch|verify error/i, 'wrong_name cert fails host name verification');

# Demote a primary: READONLY.
my $a = $ha->server;
my $b = $ha->server;
$a->replicaof($b);
$a->wait_link;
is($a->role, 'slave', 'demoted');
($out) = $a->try_cli('SET', 'x', '1');
like($out, qr/^READONLY/, 'demoted primary answers READONLY');
$a->promote;
is($a->role, 'master', 'promoted back');

# HA set: fail-over after SIGKILL.
for my $tls (0, 1) {
    my $set = $ha->ha_set(tls => $tls, name => "m$tls");
    my $old = $set->{primary};
    is($ha->master_addr($set), $old->addr, "sentinels name the primary (tls=$tls)");
    like($ha->sentinel_url($set, user => 'u', pass => 'p', db => 1),
         qr{^redis${\($tls ? 's' : '')}\+sentinel://u:p\@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+/m$tls/1$},
         'sentinel URL');
    $old->cli('SET', 'before', 'kill');
    $set->{replicas}[0]->wait_link;
    $old->kill;
    my $new = $ha->wait_failover($set, 30);
    isnt($new->client_port, $old->client_port, "failed over to another server (tls=$tls)");
    is($new->role, 'master', 'the new primary is a master');
    is($ha->master_addr($set), $new->addr, 'sentinels agree');
    is($new->cli('GET', 'before'), 'kill', 'replicated data survived');
    my $t0 = time;
    $old->start;
    $old->wait_role('slave', 90);
    pass('the old primary comes back as a replica');
    diag(sprintf('tls=%d: the sentinels made the old primary a replica %.1f s after it started again',
                 $tls, time - $t0));
}

done_testing();
