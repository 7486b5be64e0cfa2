#!/usr/bin/perl
# Slow clients cannot exhaust a worker: 500 slowloris connections dribbling
# a request head and 50 slow POSTs dribbling a body, all at once, while a
# normal client's requests are each answered within 1 s; the slowloris
# ones get 408 at header_timeout, the slow POSTs 408 by min_body_rate
# (which body_timeout alone never gives them: each byte comes before it);
# an idle keep-alive connection is closed at keepalive_timeout.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET ();
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

my $NLORIS = 500;
my $NPOST  = 50;

my $t = Apiary::Test->new(
    config => {
        server => {
            workers           => 2,
            header_timeout    => '2s',
            body_timeout      => '2s',
            min_body_rate     => 100,
            keepalive_timeout => '1s',
        },
    },
    name => '69-slow-clients.t',
);
$t->run;

sub raw_connect($port) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
        Timeout => 3) or die "connect: $!";
    $s->blocking(0);
    return { sock => $s, buf => '', closed => 0, started => time };
}

# Slowloris: a request line, then one byte of a header line at a time.
my @loris = map { raw_connect($t->port(0)) } 1 .. $NLORIS;
# Slow POST: a whole head announcing 1000 bytes, then one byte at a time.
my @post = map { raw_connect($t->port(0)) } 1 .. $NPOST;
ok(1, "$NLORIS slowloris and $NPOST slow-POST connections open");
for my $c (@loris) { syswrite($c->{sock}, "GET /live HTTP/1.1\r\nHost: x\r\n"); $c->{started} = time }
for my $c (@post) {
    syswrite($c->{sock}, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx");
    $c->{started} = time;
}

my (@lat, $failed);
my $t0 = time;
my $next_drip = 0;
while (time - $t0 < 5) {
    # Every 0.3 s each slow client sends one more byte (3 B/s).
    if (time >= $next_drip) {
        for my $c (@loris) { syswrite($c->{sock}, 'X') unless $c->{closed} }
        for my $c (@post)  { syswrite($c->{sock}, 'y') unless $c->{closed} }
        $next_drip = time + 0.3;
    }
    # Whatever the server said, and who it closed.
    for my $c (@loris, @post) {
        next if $c->{closed};
        my $n = sysread($c->{sock}, my $chunk, 4096);
        if (defined $n && $n > 0) { $c->{buf} .= $chunk; next }
        if ((defined $n && $n == 0) || (!defined $n && !$!{EAGAIN} && !$!{EWOULDBLOCK})) {
            $c->{closed} = time;
        }
    }
    # The normal client.
    my $s = time;
    my $r = eval { $t->get('/live', timeout => 2) };
    my $d = time - $s;
    push @lat, $d;
    $failed++ unless $r && $r->{status} == 200 && $d < 1;
    sleep 0.05;
}
ok(@lat > 20, scalar(@lat) . ' normal requests during the attack');
is($failed // 0, 0, 'every normal request answered 200 within 1 s');
my @sorted = sort { $a <=> $b } @lat;
diag(sprintf('normal requests under %d slowloris + %d slow POST: median %.1f ms, max %.1f ms',
    $NLORIS, $NPOST, 1000 * $sorted[@sorted / 2], 1000 * $sorted[-1]));

my @lr = map { [parse_response($_->{buf})] } @loris;
is(scalar(grep { ($_->[0] // 0) == 408 } @lr), $NLORIS, 'every slowloris connection got 408')
    or diag(join ', ', map { $_->[0] // 'none' } @lr[0 .. 9]);
is(scalar(grep { $_->{closed} } @loris), $NLORIS, '... and was closed');
my @ld = sort { $a <=> $b } map { $_->{closed} - $_->{started} } grep { $_->{closed} } @loris;
ok(@ld && $ld[0] >= 1.8 && $ld[-1] < 3.5,
    sprintf('... at header_timeout (2 s) after its first byte (%.2f .. %.2f s)', $ld[0] // -1, $ld[-1] // -1));
like($loris[0]{buf}, qr/server\.header_timeout/, 'the 408 names header_timeout');

my @pr = map { [parse_response($_->{buf})] } @post;
is(scalar(grep { ($_->[0] // 0) == 408 } @pr), $NPOST, 'every slow POST got 408');
is(scalar(grep { $_->{closed} } @post), $NPOST, '... and was closed');
like($post[0]{buf}, qr/slower than server\.min_body_rate/, 'the 408 names min_body_rate');
my @pd = sort { $a <=> $b } map { $_->{closed} - $_->{started} } grep { $_->{closed} } @post;
ok(@pd && $pd[0] >= 1.8 && $pd[-1] < 3.5,
    sprintf('... about body_timeout after the body began (%.2f .. %.2f s)', $pd[0] // -1, $pd[-1] // -1));
close $_->{sock} for @loris, @post;
is($t->get('/live')->{status}, 200, 'the server is fine afterwards');

# A body at a fair pace is not cut short.
{
    my $c = $t->connect;
    $c->send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 600\r\nConnection: close\r\n\r\n");
    for (1 .. 6) { $c->send('z' x 100); sleep 0.4 }
    my $r = $c->read_response(timeout => 3);
    is($r && $r->{status}, 404, 'a body of 600 bytes in 2.4 s (250 B/s) is read whole (then 404)');
    $c->close;
}

# An idle keep-alive connection is closed at keepalive_timeout.
{
    my $c = $t->connect;
    $c->send("GET /live HTTP/1.1\r\nHost: x\r\n\r\n");
    my $r = $c->read_response(timeout => 3);
    my $s = time;
    ok($r && $r->{status} == 200 && $c->wait_closed(timeout => 4), 'an idle keep-alive connection is closed');
    my $d = time - $s;
    ok($d > 0.8 && $d < 2, sprintf('... at keepalive_timeout (1 s): %.2f s', $d));
    $c->close;
}
$t->stop;

# Without min_body_rate, a byte just before each body_timeout keeps a body
# going: what min_body_rate is for.
my $u = Apiary::Test->new(
    config => { server => { workers => 1, body_timeout => '2s', min_body_rate => 0 } },
    name => '69-slow-clients.t (no min_body_rate)',
);
$u->run;
{
    my $c = $u->connect;
    $c->send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    my $open = 1;
    for (1 .. 8) { sleep 0.5; $open &&= $c->send('q') && !$c->is_closed }
    ok($open, 'min_body_rate = 0: one byte every 0.5 s keeps a body open for 4 s (body_timeout 2 s)');
    $c->close;
    $c = $u->connect;
    $c->send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nq");
    my $r = $c->read_response(timeout => 4);
    is($r && $r->{status}, 408, 'a body that stalls for body_timeout still gets 408');
    like($r ? $r->{body} : '', qr/stalled for longer than server\.body_timeout/, '... saying so');
    $c->close;
}
$u->stop;

done_testing;
