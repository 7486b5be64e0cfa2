package Apiary::TLS;

# TLS helpers for the integration tests: a private CA and certificates
# made with the openssl command in a test directory, and an HTTPS client on
# IO::Socket::SSL (Debian: libio-socket-ssl-perl) whose responses are
# parsed by Apiary::Test's parser. Every wait is bounded.

use v5.36;

use Carp qw(croak);
use Exporter qw(import);
use IO::Select ();
use IO::Socket::SSL qw(SSL_VERIFY_PEER SSL_VERIFY_NONE);
use Net::SSLeay ();
use POSIX ();
use Time::HiRes qw(time);

use Apiary::Test ();

our @EXPORT_OK = qw(
    make_ca make_cert tls_connect tls_send tls_read_response tls_request tls_get
    tls_closed tls_session cert_serial metrics
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# Runs openssl with @args in $dir; dies with its output when it fails.
sub openssl($dir, @args) {
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        chdir $dir or POSIX::_exit(126);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$dir/openssl.out";
        open STDERR, '>&', \*STDOUT;
        no warnings 'exec';
        exec 'openssl', @args;
        POSIX::_exit(127);
    }
    my $deadline = time + 60;
    while (waitpid($pid, POSIX::WNOHANG()) == 0) {
        if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); croak "openssl @args: timed out" }
        Time::HiRes::sleep(0.01);
    }
    return if $? == 0;
    open my $fh, '<', "$dir/openssl.out";
    local $/;
    croak "openssl @args failed:\n" . (<$fh> // '');
}

# make_ca($dir): ca.pem and ca.key (EC P-256) in $dir.
sub make_ca($dir) {
    openssl($dir, qw(req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
        -keyout ca.key -out ca.pem -days 30 -subj), '/CN=apiary test CA');
    chmod 0600, "$dir/ca.key";
    return "$dir/ca.pem";
}

# make_cert($dir, $name, names => [dns names], days => N (default 30),
#           serial => N, key => 'other.key' (reuse a key), rsa => 1):
# $name.pem signed by the CA (subjectAltName = the names, CN = the first)
# and its key, mode 0600. Returns (cert path, key path).
sub make_cert($dir, $name, %o) {
    my @names = @{$o{names} // [$name]};
    my $key = $o{key} // "$name.key";
    if (!-f "$dir/$key") {
        openssl($dir, 'genpkey', ($o{rsa} ? (qw(-algorithm RSA -pkeyopt rsa_keygen_bits:2048))
                                          : (qw(-algorithm EC -pkeyopt ec_paramgen_curve:P-256))),
            '-out', $key);
        chmod 0600, "$dir/$key";
    }
    openssl($dir, qw(req -new -key), $key, '-out', "$name.csr", '-subj', "/CN=$names[0]");
    open my $fh, '>', "$dir/$name.ext" or croak "$name.ext: $!";
    print {$fh} 'subjectAltName=' . join(',', map { "DNS:$_" } @names) . "\n";
    print {$fh} "basicConstraints=CA:FALSE\n";
    close $fh;
    my $serial = $o{serial} // (1000 + int(rand(1_000_000_000)));
    openssl($dir, qw(x509 -req -in), "$name.csr", qw(-CA ca.pem -CAkey ca.key -set_serial), $serial,
        '-days', $o{days} // 30, '-extfile', "$name.ext", '-out', "$name.pem");
    return ("$dir/$name.pem", "$dir/$key");
}

# tls_connect(port => N, sni => name (undef: none), ca => file (verify the
# chain and the name sni or verify_name; without ca nothing is verified),
# version => 'TLSv1_2', ciphers => list, alpn => [..], session =>
# tls_session(), timeout => s). Returns the socket, or undef; in list
# context (socket, error text).
sub tls_connect(%o) {
    my %ssl = (
        SSL_verify_mode => $o{ca} ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
        SSL_alpn_protocols => $o{alpn} // ['http/1.1'],
    );
    $ssl{SSL_ca_file} = $o{ca} if $o{ca};
    $ssl{SSL_version} = $o{version} if $o{version};
    $ssl{SSL_cipher_list} = $o{ciphers} if $o{ciphers};
    my %args = (
        PeerHost => '127.0.0.1', PeerPort => $o{port}, Timeout => $o{timeout} // 5,
        SSL_hostname => $o{sni} // '',
    );
    if ($o{ca}) {
        $args{SSL_verifycn_name} = $o{verify_name} // $o{sni};
        $args{SSL_verifycn_scheme} = 'http';
    }
    if (my $sess = $o{session}) {
        # One client context for every connection of the session: freeing
        # a context would drop its sessions from the cache.
        $sess->{ctx} //= IO::Socket::SSL::SSL_Context->new(%ssl, SSL_session_cache_size => 8)
            or croak "client context: $IO::Socket::SSL::SSL_ERROR";
        %args = (%args, SSL_reuse_ctx => $sess->{ctx}, SSL_session_key => 'apiary');
    } else {
        %args = (%args, %ssl);
    }
    my $s = IO::Socket::SSL->new(%args);
    my $err = $s ? '' : ($IO::Socket::SSL::SSL_ERROR // '') . " / $!";
    return wantarray ? ($s, $err) : $s;
}

# A client-side session store for tls_connect(session => ...): TLS
# sessions (tickets) are saved and offered again.
sub tls_session() { return {} }

sub tls_send($s, $bytes) {
    local $SIG{ALRM} = sub { die "write timed out\n" };
    alarm 10;
    my $ok = eval { print {$s} $bytes; 1 };
    alarm 0;
    return $ok;
}

# Reads one response (head => 1 for a HEAD request) from $s, keeping what
# follows it for the next call. undef when none arrives within timeout or
# the connection ends first.
sub tls_read_response($s, %o) {
    my $buf = \(${*$s}{apiary_buf} //= '');
    my $deadline = time + ($o{timeout} // 5);
    while (1) {
        my $r = Apiary::Test::_parse_one($buf, head => $o{head}, eof => ${*$s}{apiary_eof});
        return $r if $r;
        return undef if ${*$s}{apiary_eof};
        my $left = $deadline - time;
        return undef if $left <= 0;
        if (!$s->pending) {
            IO::Select->new($s)->can_read($left) or return undef;
        }
        my $chunk = '';
        local $SIG{ALRM} = sub { die "read timed out\n" };
        alarm(int($left) + 1);
        my $n = eval { sysread($s, $chunk, 65536) };
        alarm 0;
        if (!defined $n) {
            return undef if $@;    # the alarm
            next if $IO::Socket::SSL::SSL_ERROR
                && $IO::Socket::SSL::SSL_ERROR == IO::Socket::SSL::SSL_WANT_READ();
            ${*$s}{apiary_eof} = 1;    # reset, or a TLS error: the end
            next;
        }
        ${*$s}{apiary_eof} = 1 if $n == 0;
        $$buf .= $chunk;
    }
}

# True once the peer closed (after a read returned the end).
sub tls_closed($s) { ${*$s}{apiary_eof} }

# tls_request($s, $raw, %o): sends $raw, reads one response.
sub tls_request($s, $raw, %o) {
    tls_send($s, $raw) or return undef;
    return tls_read_response($s, head => scalar($raw =~ /^HEAD /), %o);
}

# tls_get(port => N, path => '/live', sni => ..., ca => ..., ...): one GET
# with Connection: close on a fresh connection. Returns (response, socket
# info {version, alpn, cn, serial, reused}) or (undef, {error}).
sub tls_get(%o) {
    my ($s, $err) = tls_connect(%o);
    return (undef, { error => $err }) unless $s;
    my %info = (
        version => $s->get_sslversion, alpn => $s->alpn_selected, reused => $s->get_session_reused,
        cn => scalar $s->peer_certificate('cn'), serial => cert_serial($s),
    );
    my $path = $o{path} // '/live';
    my $r = tls_request($s, "GET $path HTTP/1.1\r\nHost: " . ($o{sni} // 'localhost')
        . "\r\nConnection: close\r\n\r\n");
    # Read to the end, so that a TLS 1.3 ticket sent after the handshake
    # reaches the session cache.
    tls_read_response($s, timeout => 1) if $r;
    $s->close(SSL_fast_shutdown => 1);
    return ($r, \%info);
}

# The serial number of the server's certificate, in upper-case hex.
sub cert_serial($s) {
    my $x = $s->peer_certificate or return undef;
    return uc Net::SSLeay::P_ASN1_INTEGER_get_hex(Net::SSLeay::X509_get_serialNumber($x));
}

# The admin listener's /metrics as { "name{labels}" => value }.
sub metrics($t) {
    my $r = $t->get('/metrics', port => $t->admin_port) or return {};
    my %m;
    for my $l (split /\n/, $r->{body}) {
        next if $l =~ /^#/;
        $m{$1} = $2 + 0 if $l =~ /^(\S+) (\S+)$/;
    }
    return \%m;
}

1;
