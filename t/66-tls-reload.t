#!/usr/bin/perl
# Certificates and apiary -t: a key that does not match its certificate,
# an expired certificate, a key file anyone can read, and the rest of the
# [tls] keys, each as FILE:LINE: key: why (a certificate close to expiry
# is a warning); then the renewal procedure of doc/operations.md: replace
# the files, apiary -t, apiary -s reload --wait, and the new certificate
# is served by new workers while a client connecting all along sees no
# failure; a broken renewal is refused and the old certificate stays.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Copy ();
use POSIX ();
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);
use Apiary::TLS qw(:all);

my $t = Apiary::Test->new(ports => 2);
my $dir = $t->testdir;
my ($plain, $tport) = ($t->port(0), $t->port(1));

my $ca = make_ca($dir);
my ($good, $good_key) = make_cert($dir, 'good', names => ['site.test'], serial => 0x100);
my ($other, $other_key) = make_cert($dir, 'other', names => ['other.test']);
my ($soon) = make_cert($dir, 'soon', names => ['site.test'], key => 'good.key', days => 5);
my ($expired) = make_cert($dir, 'expired', names => ['site.test'], key => 'good.key', days => -1);

# The key, readable by everyone.
File::Copy::copy($good_key, "$dir/open.key") or die;
chmod 0644, "$dir/open.key";
# Certificate and key in one file.
{
    open my $o, '>', "$dir/both.pem" or die;
    for my $f ($good, $good_key) { open my $i, '<', $f or die; local $/; print {$o} <$i> }
    close $o;
    chmod 0600, "$dir/both.pem";
    File::Copy::copy("$dir/both.pem", "$dir/both-open.pem");
    chmod 0644, "$dir/both-open.pem";
}
$t->write_file('not-pem.txt', "hello\n");

# ---------------------------------------------------------------------------
# apiary -t
# ---------------------------------------------------------------------------

my $n = 0;
sub check_t($text, %o) {
    my $file = $t->write_file(sprintf('case-%02d.conf', ++$n), $text);
    my ($code, $out, $err) = $t->run_cmd('-t', '-c', $file, { env => $o{env} });
    return ($code, $out . $err, $file);
}

# Lines 1-4: a tls listener; [tls] on line 5; its keys from line 6.
my $HEAD = "[server]\nlisten = 127.0.0.1:$plain\nlisten = 127.0.0.1:$tport tls\npidfile = $dir/x.pid\n[tls]\n";

{
    my ($code, $err, $file) = check_t("${HEAD}certificate = $good $good_key\n");
    is($code, 0, '-t: a good certificate and key') or diag($err);
    unlike($err, qr/warning/, '-t: no warning for a certificate with 30 days left');
}
{
    my ($code, $err, $file) = check_t("${HEAD}certificate = $dir/both.pem\n");
    is($code, 0, '-t: certificate and key in one file') or diag($err);
}
{
    my ($code, $err, $file) = check_t("${HEAD}certificate = $soon $good_key\n");
    is($code, 0, '-t: a certificate with 5 days left is accepted') or diag($err);
    like($err, qr/^\Q$file\E:6: tls\.certificate: warning: the certificate in "\Q$soon\E" expires in [45] days, on \d{4}-\d\d-\d\d /m,
        '-t: ... with a warning: FILE:LINE: tls.certificate: warning: expires in N days') or diag($err);
}

# [name, text after HEAD, line, key, why]
my @bad = (
    ['expired certificate', "certificate = $expired $good_key\n", 6, 'tls.certificate',
        qr/^the certificate in "\Q$expired\E" expired on \d{4}-/],
    ['key that does not match', "certificate = $good $other_key\n", 6, 'tls.certificate',
        qr/^the private key in "\Q$other_key\E" does not match the certificate in "\Q$good\E"/],
    ['world-readable key', "\ncertificate = $good $dir/open.key\n", 7, 'tls.certificate',
        qr/^the private key file "\Q$dir\E\/open\.key" is readable by everyone \(mode 644\)/],
    ['world-readable combined file', "certificate = $dir/both-open.pem\n", 6, 'tls.certificate',
        qr/readable by everyone/],
    ['missing certificate file', "certificate = $dir/nope.pem $good_key\n", 6, 'tls.certificate',
        qr/^cannot open "\Q$dir\E\/nope\.pem": No such file/],
    ['not a PEM file', "certificate = $dir/not-pem.txt $good_key\n", 6, 'tls.certificate',
        qr/^no PEM certificate in/],
    ['a directory', "certificate = $dir $good_key\n", 6, 'tls.certificate', qr/not a regular file/],
    ['relative path', "certificate = good.pem good.key\n", 6, 'tls.certificate', qr/absolute paths/],
    ['three paths', "certificate = $good $good_key $good\n", 6, 'tls.certificate', qr/CERTIFICATE_FILE \[KEY_FILE\]/],
    ['TLS 1.1', "certificate = $good $good_key\nprotocols = TLSv1.1 TLSv1.2\n", 7, 'tls.protocols',
        qr/"TLSv1\.1": only TLSv1\.2 and TLSv1\.3/],
    ['no protocol', "certificate = $good $good_key\nprotocols = ,\n", 7, 'tls.protocols', qr/expected/],
    ['bad TLS 1.3 suite', "certificate = $good $good_key\nciphersuites = TLS_NOPE\n", 7,
        'tls.ciphersuites', qr/TLS 1\.3 cipher suite/],
    ['no TLS 1.2 cipher', "certificate = $good $good_key\nciphers = NOPE-NOPE\n", 7, 'tls.ciphers',
        qr/takes no cipher/],
    ['session_tickets = maybe', "certificate = $good $good_key\nsession_tickets = maybe\n", 7,
        'tls.session_tickets', qr/on or off/],
    ['ticket_rotate = 10ms', "certificate = $good $good_key\nticket_rotate = 10ms\n", 7,
        'tls.ticket_rotate', undef],
    ['hsts without max-age', "certificate = $good $good_key\nhsts = includeSubDomains\n", 7,
        'tls.hsts', qr/max-age=SECONDS is required/],
    ['hsts preload too weak', "certificate = $good $good_key\nhsts = max-age=600; preload\n", 7,
        'tls.hsts', qr/preload needs includeSubDomains and a max-age of at least 31536000/],
    ['hsts junk', "certificate = $good $good_key\nhsts = max-age=1y\n", 7, 'tls.hsts', qr/number of seconds/],
);
for my $c (@bad) {
    my ($name, $text, $line, $key, $why) = @$c;
    my ($code, $err, $file) = check_t("$HEAD$text");
    is($code, 1, "-t, $name: exit 1");
    my @e = grep { /^\Q$file\E:\d+: / } split /\n/, $err;
    is(scalar @e, 1, "-t, $name: one error line") or diag($err);
    like($e[0] // '', qr/^\Q$file\E:$line: \Q$key\E: /, "-t, $name: $file:$line: $key") or diag($err);
    like(($e[0] // '') =~ s/^[^:]+:\d+: [a-z_.]+: //r, $why, "-t, $name: says why") if $why;
}

# Every problem of every certificate, in order.
{
    my ($code, $err, $file) = check_t("${HEAD}certificate = $expired $dir/open.key\n"
        . "certificate = $good $other_key\n");
    is($code, 1, '-t, several problems: exit 1');
    my @e = grep { /^\Q$file\E:\d+: / } split /\n/, $err;
    is(scalar @e, 3, '-t, several problems: three lines') or diag($err);
    like($e[0] // '', qr/:6: tls\.certificate: the certificate .* expired/, '... expired, line 6');
    like($e[1] // '', qr/:6: tls\.certificate: .*readable by everyone/, '... world-readable, line 6');
    like($e[2] // '', qr/:7: tls\.certificate: .*does not match/, '... mismatch, line 7');
}

# Listener flags.
{
    my ($code, $err, $file) = check_t("[server]\nlisten = 127.0.0.1:$plain\nlisten = 127.0.0.1:$tport tls\n");
    is($code, 1, '-t, a tls listener without [tls] certificate: exit 1');
    like($err, qr/^\Q$file\E:3: server\.listen: "127\.0\.0\.1:$tport" is a tls listener: \[tls\] certificate is needed$/m,
        '-t, a tls listener without a certificate: FILE:LINE: server.listen: why') or diag($err);
    ($code, $err, $file) = check_t("[server]\nlisten = 127.0.0.1:$tport tls redirect\n");
    like($err, qr/^\Q$file\E:2: server\.listen: tls and redirect exclude each other/m,
        '-t, tls with redirect on one listener: refused') or diag($err);
    ($code, $err, $file) = check_t("${HEAD}certificate = $good $good_key\n[admin]\nlisten = 127.0.0.1:$plain tls\n");
    like($err, qr/^\Q$file\E:8: admin\.listen: the admin listener is plain HTTP/m,
        '-t, tls on the admin listener: refused') or diag($err);
}

# The environment: APIARY_TLS_CERTIFICATE replaces the file's lines.
{
    my ($code, $err, $file) = check_t("${HEAD}certificate = $good $good_key\n",
        env => { APIARY_TLS_CERTIFICATE => "$expired $good_key" });
    is($code, 1, '-t, APIARY_TLS_CERTIFICATE with an expired certificate: exit 1');
    like($err, qr/^env:APIARY_TLS_CERTIFICATE: tls\.certificate: the certificate .* expired/m,
        '-t, the error names the variable') or diag($err);
}

# ---------------------------------------------------------------------------
# Renewal: replace the files, apiary -t, apiary -s reload --wait
# ---------------------------------------------------------------------------

# The live files, as an operator (or certbot) keeps them.
File::Copy::copy($good, "$dir/site.pem") or die;
File::Copy::copy($good_key, "$dir/site.key") or die;
chmod 0600, "$dir/site.key";
$t->write_config(config => {
    server => { listen => ["127.0.0.1:$plain", "127.0.0.1:$tport tls"], workers => 2 },
    tls => { certificate => "$dir/site.pem $dir/site.key" },
});
$t->run(timeout => 15);
my $master = $t->master_pid;
my %C = (port => $tport, ca => $ca, sni => 'site.test');

{
    my ($r, $i) = tls_get(%C);
    is($r && $r->{status}, 200, 'serving with the first certificate') or diag($i->{error});
    is($i->{serial}, '0100', 'the first certificate: serial 0100');
}

# A client connecting afresh every 20 ms all through the renewal.
sub start_client($seconds) {
    my $file = "$dir/client-" . int(rand(1e9)) . '.txt';
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my ($ok, $fail, %serials, @errors) = (0, 0);
        my $end = time + $seconds;
        while (time < $end) {
            my ($r, $i) = tls_get(%C);
            if ($r && $r->{status} == 200) { $ok++; $serials{$i->{serial}}++ }
            else { $fail++; push @errors, $i->{error} // ($r ? $r->{status} : 'no response') }
            sleep 0.02;
        }
        open my $fh, '>', $file;
        print {$fh} join(' ', $ok, $fail, join(',', sort keys %serials), @errors[0 .. ($#errors < 4 ? $#errors : 4)]), "\n";
        close $fh;
        POSIX::_exit(0);
    }
    return sub {
        my $deadline = time + $seconds + 30;
        sleep 0.05 while waitpid($pid, POSIX::WNOHANG()) == 0 && time < $deadline;
        kill 'KILL', $pid if time >= $deadline;
        open my $fh, '<', $file or return (0, 1, '', 'no result');
        my $l = <$fh> // '';
        chomp $l;
        return split / /, $l, 4;
    };
}

{
    my $finish = start_client(6);
    sleep 1;
    # Renewal: new files written beside the live ones, then renamed over
    # them, so that nothing ever reads half a file.
    make_cert($dir, 'renewed', names => ['site.test'], serial => 0x200);
    chmod 0600, "$dir/renewed.key";
    rename "$dir/renewed.key", "$dir/site.key" or die;
    rename "$dir/renewed.pem", "$dir/site.pem" or die;

    my ($code, $out, $err) = $t->cli('-t');
    is($code, 0, 'renewal: apiary -t accepts the new files') or diag($err);
    ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 60 });
    is($code, 0, 'renewal: apiary -s reload --wait succeeds') or diag($err);

    my ($r, $i) = tls_get(%C);
    is($i->{serial}, '0200', 'renewal: a new connection gets the renewed certificate (serial 0200)');
    # The runbook's check (doc/operations.md, section 9).
    my $seen = `openssl s_client -connect 127.0.0.1:$tport -servername site.test </dev/null 2>/dev/null | openssl x509 -noout -serial -enddate`;
    like($seen, qr/^serial=0200$/m, 'renewal: openssl s_client | openssl x509 -serial shows it');
    like($seen, qr/^notAfter=/m, 'renewal: ... and its expiry date');
    is($t->master_pid, $master, 'renewal: same master, no restart');
    ok(proc_alive($master), 'renewal: the master runs');

    my ($ok, $fail, $serials, $errors) = $finish->();
    is($fail, 0, "renewal: a client connecting every 20 ms saw no failure ($ok requests)")
        or diag($errors);
    cmp_ok($ok, '>', 50, 'renewal: the client made requests all along');
    is($serials, '0100,0200', 'renewal: the client saw the old certificate, then the new one');
}

# A renewal gone wrong (the new key does not match) is refused: the
# running workers keep the certificate they have.
{
    File::Copy::copy($other_key, "$dir/site.key.new") or die;
    chmod 0600, "$dir/site.key.new";
    rename "$dir/site.key.new", "$dir/site.key" or die;
    my ($code, $out, $err) = $t->cli('-t');
    is($code, 1, 'broken renewal: apiary -t refuses it');
    like($err, qr/tls\.certificate: the private key in "\Q$dir\E\/site\.key" does not match/,
        'broken renewal: apiary -t says why') or diag($err);
    my @before = $t->worker_pids;
    ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 60 });
    is($code, 1, 'broken renewal: reload --wait fails');
    like($err, qr/does not match/, 'broken renewal: reload says why') or diag($err);
    is(join(' ', $t->worker_pids), join(' ', @before), 'broken renewal: the workers are the same');
    my ($r, $i) = tls_get(%C);
    is($r && $r->{status}, 200, 'broken renewal: still serving');
    is($i->{serial}, '0200', 'broken renewal: with the certificate it had');
}

# A certificate close to expiry: the reload goes ahead and logs a warning,
# as a start does.
{
    make_cert($dir, 'short', names => ['site.test'], serial => 0x300, days => 5);
    rename "$dir/short.key", "$dir/site.key" or die;
    rename "$dir/short.pem", "$dir/site.pem" or die;
    my ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 60 });
    is($code, 0, 'a certificate with 5 days left: reload --wait succeeds') or diag($err);
    my ($r, $i) = tls_get(%C);
    is($i->{serial}, '0300', 'a certificate with 5 days left: served');
    my $warn = qr/tls\.certificate: warning: the certificate in "\Q$dir\E\/site\.pem" expires in [45] days/;
    ok(scalar(grep { ($_->{level} // '') eq 'warn' && ($_->{msg} // '') =~ /^reload: .*$warn/ } $t->log_records),
        'a certificate with 5 days left: the reload logs a warning');
    $t->stop;
    unlink $t->error_log;
    $t->run(timeout => 15);
    ok(scalar(grep { ($_->{level} // '') eq 'warn' && ($_->{msg} // '') =~ $warn } $t->log_records),
        'a certificate with 5 days left: the start logs a warning');
}

done_testing;
