#!/usr/bin/perl
# Large static files through sendfile: a 100 MiB file served intact
# (sha256) to 10 clients at once, in bounded time; a file truncated while
# it is being sent (the connection closes short, never padded, and the
# worker lives on); a file growing while it is sent (exactly the announced
# length, and the connection stays usable); a client that stops reading
# (timed out after send_timeout, and the worker's loop is never blocked
# meanwhile); a client that goes away mid-file.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA ();
use IO::Socket::INET ();
use POSIX qw(WNOHANG);
use Apiary::Test qw(:all);

my $t = Apiary::Test->new(name => '71-static-large.t');
my $dir = $t->testdir;
my $www = "$dir/www";
mkdir $www or die "mkdir $www: $!";

my $MIB = 1024 * 1024;
my $BIG_SIZE = 100 * $MIB;

# 100 MiB of random bytes, and their digest.
{
    open my $in, '<:raw', '/dev/urandom' or die "urandom: $!";
    open my $out, '>:raw', "$www/big.bin" or die "big.bin: $!";
    for (1 .. 100) {
        read($in, my $chunk, $MIB) == $MIB or die "short read of /dev/urandom";
        print {$out} $chunk;
    }
    close $out or die "close: $!";
}
my $BIG_SHA = Digest::SHA->new(256)->addfile("$www/big.bin", 'b')->hexdigest;

# A file whose every 16-byte line says where it starts, so that any slice
# of it can be checked.
sub pattern($size) {
    return join('', map { sprintf("%015x\n", $_ * 16) } 0 .. $size / 16 - 1);
}
sub write_pattern($name, $size) {
    open my $fh, '>:raw', "$www/$name" or die "$name: $!";
    print {$fh} pattern($size);
    close $fh or die "close: $!";
}
sub pattern_ok($data, $from = 0) {
    my $want = substr(pattern($from + length($data) + 16), $from, length $data);
    return $data eq $want;
}

$t->write_config(config => {
    server => { workers => 2 },
    static => { root => "/ $www" },
});
$t->run;
my $H = "Host: localhost\r\n";

# Reads a response head from a raw socket; returns (status, content-length,
# leftover body bytes).
sub read_head($s, $deadline) {
    my $buf = '';
    while (index($buf, "\r\n\r\n") < 0) {
        return (0, 0, '') if time > $deadline;
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        next unless select(my $r = $rin, undef, undef, 0.2);
        my $n = sysread($s, $buf, 65536, length $buf);
        return (0, 0, '') unless $n;
    }
    my $i = index($buf, "\r\n\r\n");
    my $head = substr($buf, 0, $i);
    my ($status) = $head =~ m{^HTTP/1\.1 (\d{3})};
    my ($len) = $head =~ /^Content-Length: (\d+)\r?$/mi;
    return ($status // 0, $len // -1, substr($buf, $i + 4));
}

# Reads until EOF or the deadline, feeding $cb; returns (bytes, eof).
sub read_body($s, $have, $deadline, $cb, $limit = undef) {
    my $n = length $have;
    $cb->($have) if $n;
    while (time < $deadline && (!defined $limit || $n < $limit)) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        next unless select(my $r = $rin, undef, undef, 0.2);
        my $k = sysread($s, my $chunk, 1024 * 1024);
        return ($n, 1) if !$k;
        $n += $k;
        $cb->($chunk);
    }
    return ($n, 0);
}

sub connect_to($port = $t->port(0)) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
        Timeout => 3) or die "connect: $!";
    binmode $s;
    return $s;
}

sub status_pids() {
    return join(',', sort map { $_->{pid} } @{($t->status_json // {})->{workers} // []});
}
my $pids_before = status_pids();

# ---------------------------------------------------------------------------
# 100 MiB to 10 clients at once
# ---------------------------------------------------------------------------

{
    my $t0 = time;
    my %kids;
    for my $i (1 .. 10) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my $res = eval {
                my $s = connect_to();
                print {$s} "GET /big.bin HTTP/1.1\r\n${H}Connection: close\r\n\r\n";
                my $deadline = time + 90;
                my ($status, $len, $rest) = read_head($s, $deadline);
                my $sha = Digest::SHA->new(256);
                my ($n, $eof) = read_body($s, $rest, $deadline, sub { $sha->add($_[0]) });
                "$status $len $n $eof " . $sha->hexdigest;
            } // "error $@";
            print {$wr} $res;
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        $kids{$pid} = $rd;
    }
    my %res;
    my $deadline = time + 120;
    while (%kids && time < $deadline) {
        for my $pid (keys %kids) {
            next unless waitpid($pid, WNOHANG) == $pid;
            my $fh = delete $kids{$pid};
            local $/;
            $res{$pid} = <$fh> // '';
        }
        sleep 0.1;
    }
    for my $pid (keys %kids) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        $res{$pid} = 'timed out';
    }
    my @good = grep { $_ eq "200 $BIG_SIZE $BIG_SIZE 1 $BIG_SHA" } values %res;
    is(scalar @good, 10, '10 concurrent clients each got the 100 MiB file intact (status, length, sha256)')
        or diag(join("\n", values %res));
    my $took = time - $t0;
    cmp_ok($took, '<', 120, sprintf('... within the time bound (%.1f s)', $took));
}

# A range deep in the large file.
{
    my $raw = $t->http("GET /big.bin HTTP/1.1\r\n${H}Range: bytes=104857000-\r\nConnection: close\r\n\r\n");
    my ($r) = parse_responses($raw);
    is($r->{status}, 206, 'a range at the end of the 100 MiB file: 206');
    open my $fh, '<:raw', "$www/big.bin" or die;
    seek($fh, 104857000, 0);
    read($fh, my $want, 1000);
    ok($r->{body} eq $want, '... the right 600 bytes');
}

# ---------------------------------------------------------------------------
# A file truncated while it is being sent
# ---------------------------------------------------------------------------

{
    write_pattern("shrink.bin", 32 * $MIB);
    my $s = connect_to();
    print {$s} "GET /shrink.bin HTTP/1.1\r\n$H\r\n";
    my $deadline = time + 30;
    my ($status, $len, $rest) = read_head($s, $deadline);
    is($status, 200, 'truncated while sent: 200');
    is($len, 32 * $MIB, '... announcing the full length');
    my $got = '';
    # Take a little, then stop reading: the server fills the socket and waits.
    my ($n) = read_body($s, $rest, $deadline, sub { $got .= $_[0] }, $MIB);
    sleep 0.5;
    truncate("$www/shrink.bin", $MIB) or die "truncate: $!";
    my $eof;
    ($n, $eof) = read_body($s, '', time + 20, sub { $got .= $_[0] });
    ok($eof, 'the server closed the connection');
    cmp_ok(length $got, "<", 32 * $MIB, sprintf("... short of Content-Length (%d bytes of %d)", length $got, 32 * $MIB));
    cmp_ok(length $got, '>=', $MIB, '... after the bytes that still exist');
    ok(pattern_ok(substr($got, 0, $MIB)), '... the bytes sent are the file\'s, not padding');
    ok(wait_for(sub { $t->log_text =~ /a file shrank while it was being sent/ }, timeout => 5),
        'the worker logged the short file');
    close $s;
    my ($r) = parse_responses($t->http("GET /shrink.bin HTTP/1.1\r\n${H}Connection: close\r\n\r\n"));
    is($r->{status}, 200, 'the next request for it: 200');
    is($r->{headers}{'content-length'}, $MIB, '... with the new length');
    ok(pattern_ok($r->{body}), '... and its bytes');
}

# ---------------------------------------------------------------------------
# A file growing while it is being sent
# ---------------------------------------------------------------------------

{
    write_pattern('grow.bin', 16 * $MIB);
    my $s = connect_to();
    print {$s} "GET /grow.bin HTTP/1.1\r\n$H\r\n";
    my $deadline = time + 30;
    my ($status, $len, $rest) = read_head($s, $deadline);
    is($len, 16 * $MIB, 'growing while sent: the length at the start');
    my $got = '';
    read_body($s, $rest, $deadline, sub { $got .= $_[0] }, $MIB);
    sleep 0.3;
    open my $fh, '>>:raw', "$www/grow.bin" or die;
    print {$fh} "X" x (4 * $MIB);
    close $fh;
    read_body($s, '', $deadline, sub { $got .= $_[0] }, 16 * $MIB - length $got);
    is(length $got, 16 * $MIB, 'exactly the announced length arrived');
    ok(pattern_ok($got), '... the original bytes');
    # The connection is still in step: the next response parses.
    print {$s} "GET /grow.bin HTTP/1.1\r\n${H}Range: bytes=0-15\r\nConnection: close\r\n\r\n";
    my $more = '';
    read_body($s, '', time + 10, sub { $more .= $_[0] });
    my ($r) = parse_responses($more);
    is($r && $r->{status}, 206, 'keep-alive after it: the next request answered');
    is($r && $r->{headers}{'content-range'}, 'bytes 0-15/' . (20 * $MIB), '... seeing the new size');
    close $s;
}

# ---------------------------------------------------------------------------
# A client that stops reading; a client that goes away
# ---------------------------------------------------------------------------

{
    my $one = Apiary::Test->new(name => '71-static-large.t slow client', config => {
        server => { workers => 1, send_timeout => '1s' },
        static => { root => "/ $www" },
    });
    $one->run;
    my $s = connect_to($one->port(0));
    print {$s} "GET /big.bin HTTP/1.1\r\n$H\r\n";
    # The only worker keeps answering while that client reads nothing.
    my $slowest = 0;
    for (1 .. 10) {
        my $t0 = time;
        my $r = $one->get('/live', timeout => 2);
        $slowest = time - $t0 if time - $t0 > $slowest;
        sleep 0.1;
    }
    cmp_ok($slowest, '<', 0.5, sprintf('the worker answers others while a client does not read (slowest %.3f s)', $slowest));
    sleep 2.5;
    my ($n, $eof) = read_body($s, '', time + 20, sub { });
    ok($eof, 'a client that stopped reading is disconnected');
    cmp_ok($n, '<', $BIG_SIZE, sprintf('... before the whole file (%d bytes)', $n));
    like($one->log_text, qr/read nothing for server\.send_timeout/, '... after send_timeout, and logged');
    close $s;

    # Gone mid-file.
    $s = connect_to($one->port(0));
    print {$s} "GET /big.bin HTTP/1.1\r\n$H\r\n";
    my $deadline = time + 10;
    my ($status, $len, $rest) = read_head($s, $deadline);
    read_body($s, $rest, $deadline, sub { }, 2 * $MIB);
    close $s;
    sleep 0.3;
    my $r = $one->get('/big.bin', method => 'HEAD');
    is($r && $r->{status}, 200, 'after a client left mid-file the worker answers');
    $one->stop;
}

is(status_pids(), $pids_before, 'no worker of the first instance was replaced');

done_testing;
