#!/usr/bin/perl
# JWT authentication over HTTP (issue 4, "Auth"): tokens made here (HS256/
# 384/512 with Digest::SHA, RS256/384/512 and ES256 with the openssl
# command and keys generated in the test directory) against [api]
# jwt_secret_file as a raw secret, PEM public keys and a JWKS; every way a
# token is refused (401, WWW-Authenticate: Bearer error="invalid_token",
# PostgREST's JSON body and PGRST30x code) and that the function then does
# not run; exp/nbf/iat with the leeway, aud, the role claim's path, the role
# switch (whoami), a role that does not exist (401) or cannot be switched
# to (403); request.jwt.claims, request.headers, request.cookies in SQL;
# [api] pre_request setting a response header or refusing; the example's
# signup -> login -> token -> row-level security (user A cannot see or
# change user B's tasks); key rotation by HUP; and "apiary -t" refusing bad
# key files with file:line.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use MIME::Base64 qw(encode_base64url decode_base64url);
use Digest::SHA qw(hmac_sha256 hmac_sha384 hmac_sha512);
use Time::HiRes qw(time);
use Apiary::Test qw(:all);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $t = Apiary::Test->new(db => 1, config => { server => { workers => 2 } },
    name => '48-jwt.t');
my $dir = $t->testdir;

# ---------------------------------------------------------------------------
# Keys and tokens
# ---------------------------------------------------------------------------

sub write_secret($name, $content, $mode = 0600) {
    my $path = $t->write_file($name, $content);
    chmod $mode, $path;
    return $path;
}

sub openssl(@args) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', "$dir/openssl.err";
        { no warnings 'exec'; exec 'openssl', @args; }
        POSIX::_exit(127);
    }
    waitpid($pid, 0);
    die "openssl @args failed: " . ($t->read_file('openssl.err') // '') if $?;
}

sub slurp($path) {
    open my $fh, '<:raw', $path or die "$path: $!";
    local $/;
    return scalar <$fh>;
}

my $secret = encode_base64url(join '', map { chr int rand 256 } 1 .. 48);   # 64 bytes of text
my $secret2 = encode_base64url(join '', map { chr int rand 256 } 1 .. 48);
openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', "$dir/rsa.key");
openssl('pkey', '-in', "$dir/rsa.key", '-pubout', '-out', "$dir/rsa.pub");
openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', "$dir/ec.key");
openssl('pkey', '-in', "$dir/ec.key", '-pubout', '-out', "$dir/ec.pub");
openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', "$dir/rsa2.key");

sub b64j($v) { encode_base64url(ref $v ? $JSON->encode($v) : $v) }

# A DER ECDSA signature (SEQUENCE of two INTEGERs) as JWS's r || s.
sub der_to_rs($der, $n) {
    my @b = unpack 'C*', $der;
    my $i = 2;
    $i++ if $b[1] & 0x80;    # long form length (not for P-256, but cheap)
    my @parts;
    for (1 .. 2) {
        die 'not an INTEGER' unless $b[$i++] == 2;
        my $len = $b[$i++];
        my $v = pack 'C*', @b[$i .. $i + $len - 1];
        $i += $len;
        $v =~ s/^\x00+//;
        push @parts, ("\x00" x ($n - length $v)) . $v;
    }
    return join '', @parts;
}

# jwt(alg => 'HS256', claims => {...}, key => secret or key file,
#     header => {...extra}, raw_header => text, raw_claims => text)
sub jwt(%o) {
    my $alg = $o{alg} // 'HS256';
    my $h = $o{raw_header} // { alg => $alg, typ => 'JWT', %{$o{header} // {}} };
    my $input = b64j($h) . '.' . b64j($o{raw_claims} // $o{claims} // {});
    my $sig;
    my $bits = substr($alg, 2);
    if ($alg =~ /^HS/) {
        my $key = $o{key} // $secret;
        $sig = $bits == 256 ? hmac_sha256($input, $key) : $bits == 384 ? hmac_sha384($input, $key)
            : hmac_sha512($input, $key);
    } else {
        my $in = $t->write_file('jwt-input', $input);
        openssl('dgst', "-sha$bits", '-sign', $o{key}, '-out', "$dir/jwt-sig", $in);
        $sig = slurp("$dir/jwt-sig");
        $sig = der_to_rs($sig, 32) if $alg =~ /^ES/;
    }
    return "$input." . encode_base64url($sig);
}

sub claims(%c) {
    my $now = int time;
    return { role => 'webuser', exp => $now + 600, %c };
}

# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------

sub req($method, $path, %o) {
    my $body = $o{body};
    $body = $JSON->encode($body) if ref $body;
    my $raw = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $raw .= "Authorization: Bearer $o{token}\r\n" if defined $o{token};
    $raw .= $o{headers} // '';
    if (defined $body) {
        $raw .= "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n";
    }
    $raw .= "\r\n" . ($body // '');
    my ($r) = parse_responses($t->http($raw, timeout => $o{timeout} // 5), head => $method eq 'HEAD');
    return $r;
}

sub body($r) { $r && eval { $JSON->decode($r->{body}) } }

sub ok_json($r, $name, $status = 200) {
    is($r && $r->{status}, $status, "$name: $status") or diag($r ? $r->{raw} : 'no response');
    return body($r);
}

sub whoami(%o) {
    my $r = req('GET', '/rpc/whoami', %o);
    return $r && $r->{status} == 200 ? body($r) : "status " . ($r ? "$r->{status}: $r->{body}" : 'none');
}

# A refused token: 401, the header, PostgREST's body.
sub refused($r, $code, $message, $name) {
    ok($r, "$name: answered") or return;
    is($r->{status}, 401, "$name: 401") or diag($r->{raw});
    is($r->{headers}{'www-authenticate'}, qq{Bearer error="invalid_token", error_description="$message"},
        "$name: WWW-Authenticate names the error");
    like($r->{headers}{'content-type'} // '', qr{^application/json}, "$name: JSON");
    my $j = body($r);
    ok(ref $j eq 'HASH' && join(',', sort keys %$j) eq 'code,details,hint,message',
        "$name: code, message, details, hint") or diag($r->{body});
    is($j && $j->{code}, $code, "$name: $code");
    is($j && $j->{message}, $message, "$name: message");
}

# ---------------------------------------------------------------------------
# The database side of the test: functions that show the settings, a
# pre_request hook, a role authenticator may not switch to.
# ---------------------------------------------------------------------------

$t->psql(<<'SQL');
create function api.settings() returns json language sql stable as $$
    select json_build_object(
        'claims', current_setting('request.jwt.claims', true)::json,
        'headers', current_setting('request.headers', true)::json,
        'cookies', current_setting('request.cookies', true)::json,
        'method', current_setting('request.method', true),
        'path', current_setting('request.path', true),
        'role', current_user)
$$;
grant execute on function api.settings() to anon, webuser;

create function api.teapot() returns json language plpgsql volatile as $$
begin
    perform set_config('response.status', '418', true);
    perform set_config('response.headers', '[{"X-Tea": "earl grey"}, {"Content-Type": "application/vnd.tea+json"}]', true);
    return json_build_object('message', 'short and stout');
end $$;
create function api.bad_headers() returns int language plpgsql volatile as $$
begin
    perform set_config('response.headers', '[{"X-A": "1\r\nX-Injected: yes"}]', true);
    return 1;
end $$;
grant execute on function api.teapot(), api.bad_headers() to anon, webuser;

create schema hooks;
grant usage on schema hooks to anon, webuser;
create function hooks.pre() returns void language plpgsql as $$
declare
    h json := current_setting('request.headers', true)::json;
begin
    if h ->> 'x-block' = 'yes' then
        raise sqlstate 'PT402' using message = 'Payment Required', detail = 'blocked by pre_request',
            hint = 'drop X-Block';
    end if;
    if h ->> 'x-forbid' = 'yes' then
        raise insufficient_privilege using message = 'pre_request says no';
    end if;
    if current_setting('request.jwt.claims', true)::json ->> 'email' = 'evil@example.com' then
        raise exception 'No, you are evil' using hint = 'Stop being so evil';
    end if;
    perform set_config('response.headers', '[{"X-Pre-Request": "ran"}]', true);
end $$;
grant execute on function hooks.pre() to anon, webuser;

do $$ begin
    if not exists (select from pg_roles where rolname = 'apiary_t48_stranger') then
        create role apiary_t48_stranger nologin;
    end if;
end $$;
SQL
$t->psql("insert into auth.jwt_secret (secret) values ('$secret')");

my %api = (jwt_secret_file => write_secret('jwt_secret', "$secret\n"), pre_request => 'hooks.pre');

sub configure(%extra) {
    my %a = (%api, %extra);
    delete @a{grep { !defined $a{$_} } keys %a};
    $t->write_config(config => { server => { workers => 2 }, api => \%a });
}

sub reload_ok($name) {
    my ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 30 });
    is($code, 0, "$name: reload --wait") or diag("$out$err");
}

configure();
my $ok = eval { $t->run(timeout => 10); 1 };
ok($ok, 'apiary starts with a jwt_secret_file') or diag($@);
ok($t->wait_ready(timeout => 15), '/ready');

# ---------------------------------------------------------------------------
# HS256/384/512 with a raw secret; the role switch
# ---------------------------------------------------------------------------

is(whoami(), 'anon', 'no token: anon');
for my $alg (qw(HS256 HS384 HS512)) {
    is(whoami(token => jwt(alg => $alg, claims => claims())), 'webuser', "$alg token: runs as webuser");
}
for my $scheme ('bearer', 'BEARER', 'Bearer  ') {
    my $tok = jwt(claims => claims());
    is(whoami(headers => "Authorization: $scheme $tok\r\n"), 'webuser', "scheme \"$scheme\" accepted");
}
is(whoami(headers => "Authorization: Basic dXNlcjpwYXNz\r\n"), 'anon', 'Basic: not a token, anon');
is(whoami(token => jwt(claims => { exp => int(time) + 60 })), 'anon', 'a token without a role claim: anon');
{
    my $r = req('GET', '/rpc/whoami', token => jwt(claims => claims(role => 'no_such_role_t48')));
    is($r && $r->{status}, 401, 'a role that does not exist: 401 (PostgREST)') or diag($r && $r->{raw});
    my $j = body($r);
    is($j && $j->{code}, '22023', 'its code is 22023');
    like($j && $j->{message}, qr/role "no_such_role_t48" does not exist/, 'and it says why');
    is($r && $r->{headers}{'www-authenticate'}, 'Bearer', 'with WWW-Authenticate: Bearer');
    $r = req('GET', '/rpc/whoami', token => jwt(claims => claims(role => 'apiary_t48_stranger')));
    is($r && $r->{status}, 403, 'a role authenticator is not a member of: 403') or diag($r && $r->{raw});
    is(body($r) && body($r)->{code}, '42501', 'code 42501');
}
{
    # webuser may call purge_done, anon may not (401 without a token, and
    # with a token that names anon... 401 too: not authenticated as a user).
    my $r = req('POST', '/rpc/purge_done', body => {});
    is($r && $r->{status}, 401, 'anon: purge_done is 401 (42501, no token)');
    $r = req('POST', '/rpc/purge_done', body => {}, token => jwt(claims => claims(role => 'anon')));
    is($r && $r->{status}, 403, 'a token naming anon: 403 (42501, authenticated)');
}

# ---------------------------------------------------------------------------
# Every refusal, over HTTP
# ---------------------------------------------------------------------------

my $now = int time;
my $good = jwt(claims => claims());
my ($gh, $gp, $gs) = split /\./, $good;
my @refusals = (
    ['an expired token', jwt(claims => claims(exp => $now - 120)), 'PGRST303', 'JWT expired'],
    ['nbf in the future', jwt(claims => claims(nbf => $now + 120)), 'PGRST303', 'JWT not yet valid'],
    ['iat in the future', jwt(claims => claims(iat => $now + 120)), 'PGRST303', 'JWT issued at future'],
    ['exp not a number', jwt(claims => claims(exp => 'tomorrow')), 'PGRST303',
        "The JWT 'exp' claim must be a number"],
    ['aud a number', jwt(claims => claims(aud => 5)), 'PGRST303',
        "The JWT 'aud' claim must be a string or an array of strings"],
    ['alg none, no signature', b64j({ alg => 'none' }) . ".$gp.", 'PGRST301',
        'Wrong or unsupported encoding algorithm'],
    ['alg none, the old signature', b64j({ alg => 'none' }) . ".$gp.$gs", 'PGRST301',
        'Wrong or unsupported encoding algorithm'],
    ['alg NoNe', b64j({ alg => 'NoNe' }) . ".$gp.$gs", 'PGRST301', 'Wrong or unsupported encoding algorithm'],
    ['alg PS256', jwt(raw_header => { alg => 'PS256' }, claims => claims()), 'PGRST301',
        'Wrong or unsupported encoding algorithm'],
    ['an RS256 token against a secret', jwt(alg => 'RS256', key => "$dir/rsa.key", claims => claims()),
        'PGRST301', 'No suitable key or wrong key type'],
    ['ES256 against a secret', jwt(alg => 'ES256', key => "$dir/ec.key", claims => claims()),
        'PGRST301', 'No suitable key or wrong key type'],
    ['a wrong signature', jwt(claims => claims(), key => 'another secret, also long enough, 32+'),
        'PGRST301', 'JWT cryptographic operation failed'],
    ['another payload under the signature', "$gh." . b64j(claims(role => 'postgres')) . ".$gs",
        'PGRST301', 'JWT cryptographic operation failed'],
    ['the signature cut off', "$gh.$gp.", 'PGRST301', "JWT couldn't be decoded"],
    ['truncated: one part', $gh, 'PGRST301', 'Expected 3 parts in JWT; got 1'],
    ['truncated: two parts', "$gh.$gp", 'PGRST301', 'Expected 3 parts in JWT; got 2'],
    ['truncated signature', "$gh.$gp." . substr($gs, 0, 20), 'PGRST301', 'JWT cryptographic operation failed'],
    ['four parts', "$good.x", 'PGRST301', 'Expected 3 parts in JWT; got 4'],
    ['bad base64 in the header', "!$gh.$gp.$gs", 'PGRST301', "JWT couldn't be decoded"],
    ['padding in the signature', "$gh.$gp.$gs=", 'PGRST301', "JWT couldn't be decoded"],
    ['plain base64 (+/) in the payload', "$gh." . ($gp =~ tr/-_/+\//r) . "+/.$gs", 'PGRST301',
        "JWT couldn't be decoded"],
    ['a header that is not JSON', jwt(raw_header => '{"alg":"HS256"', claims => claims()), 'PGRST301',
        "JWT couldn't be decoded"],
    ['claims that are not JSON', jwt(raw_claims => '{"role": "webuser"'), 'PGRST303', 'Parsing claims failed'],
    ['claims that are an array', jwt(raw_claims => '["webuser"]'), 'PGRST303', 'Parsing claims failed'],
    ['a claim given twice', jwt(raw_claims => '{"role":"anon","role":"postgres"}'), 'PGRST303',
        'Parsing claims failed'],
    ['an empty token', '', 'PGRST301', 'Empty JWT is sent in Authorization header'],
    ['garbage', 'not.a.jwt', 'PGRST301', "JWT couldn't be decoded"],
);
for my $c (@refusals) {
    my ($name, $tok, $code, $msg) = @$c;
    refused(req('GET', '/rpc/whoami', token => $tok), $code, $msg, $name);
}
{
    my $huge = 'A' x 17000;
    my $r = req('GET', '/rpc/whoami', token => "$huge.$huge.$huge");
    ok($r && ($r->{status} == 401 || $r->{status} == 431), 'a huge token: refused')
        or diag($r && $r->{raw});
}
{
    # A refused token runs nothing.
    my $before = $t->psql('select count(*) from api.tasks');
    my $r = req('POST', '/rpc/create_task', body => { user_id => 1, title => 'expired' },
        token => jwt(claims => claims(exp => $now - 120)));
    is($r && $r->{status}, 401, 'create_task with an expired token: 401');
    is($t->psql('select count(*) from api.tasks'), $before, 'and nothing was written');
}
{
    my $r = req('GET', '/rpc/whoami', token => jwt(claims => claims(exp => $now - 10)));
    is(body($r), 'webuser', 'expired 10 s ago: within the 30 s leeway');
    $r = req('GET', '/rpc/whoami', token => jwt(claims => claims(nbf => $now + 10)));
    is(body($r), 'webuser', 'nbf 10 s ahead: within the leeway');
}

# ---------------------------------------------------------------------------
# The settings the transaction sees
# ---------------------------------------------------------------------------
{
    my $tok = jwt(claims => claims(email => 'a@example.com', scope => ['read', 'write']));
    my $r = req('GET', '/rpc/settings', token => $tok,
        headers => "X-Custom: Hello World\r\nCookie: session=abc; theme=dark\r\nX-Twice: first\r\nx-twice: second\r\n");
    my $s = ok_json($r, 'settings with a token');
    is($s && $s->{role}, 'webuser', 'current_user is webuser');
    is($s && $s->{claims}{email}, 'a@example.com', 'request.jwt.claims holds the token\'s claims');
    is_deeply($s && $s->{claims}{scope}, ['read', 'write'], 'arrays included');
    is($s && $s->{claims}{role}, 'webuser', 'and the role');
    is($s && $s->{headers}{'x-custom'}, 'Hello World', 'request.headers: lower-cased names');
    is($s && $s->{headers}{'x-twice'}, 'second', 'request.headers: the last of a repeated header');
    ok($s && $s->{headers}{authorization}, 'request.headers has authorization');
    ok($s && !exists $s->{headers}{cookie}, 'but not cookie');
    is_deeply($s && $s->{cookies}, { session => 'abc', theme => 'dark' }, 'request.cookies');
    is($s && $s->{method}, 'GET', 'request.method');
    is($s && $s->{path}, '/rpc/settings', 'request.path (no query string)');
    is($r && $r->{headers}{'x-pre-request'}, 'ran', 'pre_request ran and set a response header');

    $r = req('POST', '/rpc/settings', body => {});
    $s = ok_json($r, 'settings without a token');
    is_deeply($s && $s->{claims}, { role => 'anon' }, 'anon: request.jwt.claims is {"role":"anon"}');
    is_deeply($s && $s->{cookies}, {}, 'no cookie: {}');
    is($s && $s->{method}, 'POST', 'POST');

    $r = req('GET', '/rpc/settings', token => jwt(claims => { exp => $now + 60, sub => 'x' }));
    $s = ok_json($r, 'a token without a role');
    is_deeply($s && $s->{claims}, { role => 'anon', exp => $now + 60, sub => 'x' },
        'its claims, with role set to the anonymous role');
}
{
    my $r = req('POST', '/rpc/teapot', body => {});
    is($r && $r->{status}, 418, 'response.status from the function: 418') or diag($r && $r->{raw});
    is($r && $r->{headers}{'x-tea'}, 'earl grey', 'response.headers from the function');
    is($r && $r->{headers}{'content-type'}, 'application/vnd.tea+json', 'Content-Type replaced');
    is($r && $r->{header_count}{'content-type'}, 1, 'once');
    $r = req('POST', '/rpc/bad_headers', body => {});
    is($r && $r->{status}, 500, 'a header value with CR LF: 500');
    is(body($r) && body($r)->{code}, 'PGRST111', 'PGRST111');
    ok($r && !exists $r->{headers}{'x-injected'}, 'nothing injected');
}

# pre_request refusing.
{
    my $r = req('GET', '/rpc/whoami', headers => "X-Block: yes\r\n");
    is($r && $r->{status}, 402, 'pre_request raising PT402: 402') or diag($r && $r->{raw});
    my $j = body($r);
    is($j && $j->{code}, 'PT402', 'its code');
    is($j && $j->{details}, 'blocked by pre_request', 'its detail');
    $r = req('GET', '/rpc/whoami', headers => "X-Forbid: yes\r\n");
    is($r && $r->{status}, 401, 'pre_request raising insufficient_privilege, no token: 401');
    $r = req('GET', '/rpc/whoami', headers => "X-Forbid: yes\r\n", token => jwt(claims => claims()));
    is($r && $r->{status}, 403, 'with a token: 403');
    $r = req('GET', '/rpc/whoami', token => jwt(claims => claims(email => 'evil@example.com')));
    is($r && $r->{status}, 400, 'pre_request raising an exception (P0001): 400');
    is(body($r) && body($r)->{message}, 'No, you are evil', 'with its message');
    my $before = $t->psql('select count(*) from api.tasks');
    $r = req('POST', '/rpc/create_task', body => { user_id => 1, title => 'blocked' },
        headers => "X-Block: yes\r\n");
    is($r && $r->{status}, 402, 'a blocked create_task: 402');
    is($t->psql('select count(*) from api.tasks'), $before, 'and nothing was written');
}

# ---------------------------------------------------------------------------
# The example application: signup, login, row-level security
# ---------------------------------------------------------------------------
my (%tok, %uid);
for my $who ('alice', 'bob') {
    my $r = req('POST', '/rpc/signup', body => { email => "$who\@example.com", password => "$who-password" });
    my $j = ok_json($r, "signup $who");
    ok($j && $j->{token}, "signup $who: a token");
    $r = req('POST', '/rpc/login', body => { email => "$who\@example.com", password => "$who-password" });
    $j = ok_json($r, "login $who");
    $tok{$who} = $j && $j->{token};
    my $me = ok_json(req('GET', '/rpc/me', token => $tok{$who}), "me as $who");
    is($me && $me->{role}, 'webuser', "$who runs as webuser");
    is($me && $me->{email}, "$who\@example.com", "$who: the e-mail claim");
    $uid{$who} = $me && $me->{user_id};
    ok($uid{$who}, "$who has a user id");
}
{
    my $r = req('POST', '/rpc/login', body => { email => 'alice@example.com', password => 'wrong' });
    is($r && $r->{status}, 401, 'login with a wrong password: 401');
    is(body($r) && body($r)->{code}, 'PT401', 'PT401');
    $r = req('POST', '/rpc/login', body => { email => 'nobody@example.com', password => 'whatever1' });
    is($r && $r->{status}, 401, 'login of an unknown e-mail: 401');
    $r = req('POST', '/rpc/signup', body => { email => 'ALICE@example.com', password => 'password2' });
    is($r && $r->{status}, 409, 'signup with a taken e-mail (any case): 409');
    $r = req('POST', '/rpc/signup', body => { email => 'carol@example.com', password => 'short' });
    is($r && $r->{status}, 400, 'signup with a short password: 400');
    is($t->psql("select password_hash like '\$2a\$%' from auth.logins where email = 'alice\@example.com'"),
        't', 'the password is stored as a bcrypt hash');
}
{
    my %task;
    for my $who ('alice', 'bob') {
        for my $n (1 .. 2) {
            my $r = req('POST', '/rpc/create_task', token => $tok{$who},
                body => { user_id => $uid{$who}, title => "$who task $n" });
            my $j = ok_json($r, "$who creates a task");
            push @{$task{$who}}, $j && $j->{id};
        }
    }
    my $r = req('GET', '/rpc/tasks_by_status?status=todo', token => $tok{alice});
    my $rows = ok_json($r, 'alice lists todo tasks');
    is_deeply([sort map { $_->{title} } @{$rows // []}], ['alice task 1', 'alice task 2'],
        'alice sees her tasks only');
    $r = req('GET', "/rpc/task?id=$task{bob}[0]", token => $tok{alice});
    is_deeply(ok_json($r, "alice asks for bob's task"), { map { $_ => undef }
        qw(id user_id title status priority tags due_at created_at updated_at) },
        "bob's task is not there for alice (a row of nulls, as for a missing id)");
    $r = req('GET', "/rpc/task?id=$task{bob}[0]", token => $tok{bob});
    is(ok_json($r, 'bob asks for his task') && body($r)->{title}, 'bob task 1', 'bob sees it');
    $r = req('POST', '/rpc/create_task', token => $tok{alice},
        body => { user_id => $uid{bob}, title => 'in bob\'s name' });
    is($r && $r->{status}, 403, "alice cannot create a task in bob's name: 403") or diag($r && $r->{raw});
    is(body($r) && body($r)->{code}, '42501', 'row-level security: 42501');
    $r = req('POST', '/rpc/mark_done', token => $tok{alice}, body => { id => $task{bob}[1] });
    is($r && $r->{status}, 204, 'alice marks bob\'s task done: 204, nothing matched');
    is($t->psql("select status from api.tasks where id = $task{bob}[1]"), 'todo', "bob's task is unchanged");
    $r = req('POST', '/rpc/mark_done', token => $tok{bob}, body => { id => $task{bob}[1] });
    is($t->psql("select status from api.tasks where id = $task{bob}[1]"), 'done', 'bob can');
    $r = req('GET', '/rpc/task_counts', token => $tok{alice});
    is_deeply(ok_json($r, 'task_counts as alice'), [{ status => 'todo', n => 2 }], 'counts: hers only');
    $r = req('GET', '/rpc/task_counts');
    my $all = 0;
    $all += $_->{n} for @{body($r) // []};
    cmp_ok($all, '>=', 10004, 'anon still sees every task');
}

# The auth migration is idempotent: run again by hand (in a transaction, as
# apiary migrate runs it), it keeps the logins and the policies.
{
    my $src = $ENV{APIARY_SRCDIR} // "$FindBin::Bin/..";
    my ($code, $out, $err) = $t->psql_ex("begin;\n\\i $src/sql/migrations/0002_example_auth.sql\ncommit;\n");
    is($code, 0, 'auth.sql loads again') or diag($err);
    my $r = req('POST', '/rpc/login', body => { email => 'alice@example.com', password => 'alice-password' });
    is($r && $r->{status}, 200, 'the logins are still there');
    my $rows = body(req('GET', '/rpc/tasks_by_status?status=todo', token => $tok{alice}));
    is(scalar @{$rows // []}, 2, 'the policies still apply');
}

# ---------------------------------------------------------------------------
# Audience, leeway, the role claim's path (reloads)
# ---------------------------------------------------------------------------
configure(jwt_aud => 'apiary-test', jwt_leeway => '0s');
reload_ok('jwt_aud and jwt_leeway');
{
    is(whoami(token => jwt(claims => claims(aud => 'apiary-test'))), 'webuser', 'aud matches');
    is(whoami(token => jwt(claims => claims(aud => ['x', 'apiary-test']))), 'webuser', 'aud list with ours');
    is(whoami(token => jwt(claims => claims())), 'webuser', 'no aud: any');
    refused(req('GET', '/rpc/whoami', token => jwt(claims => claims(aud => 'other'))), 'PGRST303',
        'JWT not in audience', 'aud of another service');
    refused(req('GET', '/rpc/whoami', token => jwt(claims => claims(aud => ['x', 'y']))), 'PGRST303',
        'JWT not in audience', 'aud list without ours');
    refused(req('GET', '/rpc/whoami', token => jwt(claims => claims(exp => int(time) - 5))), 'PGRST303',
        'JWT expired', 'no leeway: expired 5 s ago');
}
configure(jwt_role_claim => '.realm_access.roles[1]');
reload_ok('jwt_role_claim .realm_access.roles[1]');
{
    my $tok = jwt(claims => { exp => int(time) + 60, role => 'anon', realm_access => { roles => ['x', 'webuser'] } });
    is(whoami(token => $tok), 'webuser', 'the role from .realm_access.roles[1]');
    my $s = body(req('GET', '/rpc/settings', token => $tok));
    is($s && $s->{claims}{role}, 'webuser', 'request.jwt.claims role is the one used');
    is(whoami(token => jwt(claims => { exp => int(time) + 60, role => 'webuser' })), 'anon',
        'a top-level role is not looked at: anon');
}
configure(jwt_role_claim => q{$['https://example.com/claims'].role});
reload_ok('jwt_role_claim with a quoted name');
is(whoami(token => jwt(claims => { 'https://example.com/claims' => { role => 'webuser' } })), 'webuser',
    q{the role from $['https://example.com/claims'].role});

# ---------------------------------------------------------------------------
# RS256/384/512 and ES256 with PEM; the confusion attack; JWKS with kid
# ---------------------------------------------------------------------------
my $pems = slurp("$dir/rsa.pub") . slurp("$dir/ec.pub");
$t->write_file('keys.pem', $pems);
%api = (jwt_secret_file => "$dir/keys.pem");
configure();
reload_ok('PEM public keys (RSA and EC)');
{
    for my $alg (qw(RS256 RS384 RS512)) {
        is(whoami(token => jwt(alg => $alg, key => "$dir/rsa.key", claims => claims())), 'webuser', "$alg accepted");
    }
    is(whoami(token => jwt(alg => 'ES256', key => "$dir/ec.key", claims => claims())), 'webuser', 'ES256 accepted');
    refused(req('GET', '/rpc/whoami', token => jwt(alg => 'HS256', key => $pems, claims => claims())),
        'PGRST301', 'No suitable key or wrong key type', 'HS256 signed with the public keys as secret');
    refused(req('GET', '/rpc/whoami', token => jwt(alg => 'HS256', key => slurp("$dir/rsa.pub"), claims => claims())),
        'PGRST301', 'No suitable key or wrong key type', 'HS256 signed with the RSA PEM as secret');
    refused(req('GET', '/rpc/whoami', token => jwt(alg => 'RS256', key => "$dir/rsa2.key", claims => claims())),
        'PGRST301', 'JWT cryptographic operation failed', 'RS256 from another key');
    refused(req('GET', '/rpc/whoami', token => jwt(claims => claims())), 'PGRST301',
        'No suitable key or wrong key type', 'an HS256 token against public keys');
}

# RSA modulus and EC point for the JWKS, from the openssl command.
sub hex_b64($hex) { $hex =~ s/[^0-9a-fA-F]//g; encode_base64url(pack 'H*', $hex) }
my $modulus = do {
    my $out = `openssl rsa -pubin -in '$dir/rsa.pub' -noout -modulus 2>/dev/null`;
    $out =~ /Modulus=([0-9A-F]+)/ ? hex_b64($1) : undef;
};
my ($ecx, $ecy) = do {
    my $out = `openssl pkey -pubin -in '$dir/ec.pub' -noout -text 2>/dev/null`;
    my ($hex) = $out =~ /pub:\s*\n((?:\s+[0-9a-f:]+\n)+)/;
    $hex =~ s/[^0-9a-f]//g;
    (encode_base64url(pack 'H*', substr($hex, 2, 64)), encode_base64url(pack 'H*', substr($hex, 66, 64)));
};
ok($modulus && $ecx && $ecy, 'JWK parameters from openssl');
my $jwks = $JSON->encode({ keys => [
    { kty => 'RSA', kid => 'r1', alg => 'RS256', use => 'sig', n => $modulus, e => 'AQAB' },
    { kty => 'EC', kid => 'e1', crv => 'P-256', x => $ecx, y => $ecy },
    { kty => 'oct', kid => 'h1', k => encode_base64url($secret) },
] });
write_secret('jwks.json', $jwks);
%api = (jwt_secret_file => "$dir/jwks.json");
configure();
reload_ok('a JWKS');
{
    is(whoami(token => jwt(alg => 'RS256', key => "$dir/rsa.key", header => { kid => 'r1' }, claims => claims())),
        'webuser', 'JWKS: RS256, kid r1');
    is(whoami(token => jwt(alg => 'ES256', key => "$dir/ec.key", header => { kid => 'e1' }, claims => claims())),
        'webuser', 'JWKS: ES256, kid e1');
    is(whoami(token => jwt(alg => 'HS256', header => { kid => 'h1' }, claims => claims())),
        'webuser', 'JWKS: HS256, kid h1');
    is(whoami(token => jwt(alg => 'RS256', key => "$dir/rsa.key", claims => claims())),
        'webuser', 'JWKS: no kid, the right key is found');
    refused(req('GET', '/rpc/whoami', token => jwt(alg => 'RS256', key => "$dir/rsa.key",
        header => { kid => 'r9' }, claims => claims())), 'PGRST301', 'No suitable key or wrong key type',
        'JWKS: an unknown kid');
    refused(req('GET', '/rpc/whoami', token => jwt(alg => 'RS256', key => "$dir/rsa.key",
        header => { kid => 'e1' }, claims => claims())), 'PGRST301', 'No suitable key or wrong key type',
        'JWKS: an RS256 token naming the EC key');
    refused(req('GET', '/rpc/whoami', token => jwt(alg => 'RS384', key => "$dir/rsa.key",
        header => { kid => 'r1' }, claims => claims())), 'PGRST301', 'No suitable key or wrong key type',
        'JWKS: r1 is for RS256 only');
}

# ---------------------------------------------------------------------------
# Key rotation by HUP
# ---------------------------------------------------------------------------
%api = (jwt_secret_file => "$dir/jwt_secret");
write_secret('jwt_secret', $secret);
configure();
reload_ok('back to the secret');
{
    my $old = jwt(claims => claims());
    is(whoami(token => $old), 'webuser', 'a token of the current secret');
    # Overlap: both secrets in a JWKS while tokens of the old one live on.
    write_secret('jwt_secret', $JSON->encode({ keys => [
        { kty => 'oct', kid => 'old', k => encode_base64url($secret) },
        { kty => 'oct', kid => 'new', k => encode_base64url($secret2) } ] }));
    reload_ok('rotation, step 1: old and new keys');
    my $new = jwt(claims => claims(), key => $secret2, header => { kid => 'new' });
    is(whoami(token => $old), 'webuser', 'step 1: the old token (no kid) still works');
    is(whoami(token => $new), 'webuser', 'step 1: a token of the new key works');
    write_secret('jwt_secret', $secret2);
    reload_ok('rotation, step 2: the new secret alone');
    refused(req('GET', '/rpc/whoami', token => $old), 'PGRST301', 'JWT cryptographic operation failed',
        'step 2: the old token is refused');
    is(whoami(token => jwt(claims => claims(), key => $secret2)), 'webuser', 'step 2: the new secret works');

    # A bad key file does not take the service down: the reload fails.
    my @before = $t->worker_pids;
    write_secret('jwt_secret', "too short\n");
    my ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 30 });
    is($code, 1, 'a reload with a short secret fails');
    like("$out$err", qr/\Q${\ $t->conf_path}\E:\d+: api\.jwt_secret_file: .*9 bytes long/,
        'and says where and why');
    is_deeply([$t->worker_pids], \@before, 'the workers keep running');
    is(whoami(token => jwt(claims => claims(), key => $secret2)), 'webuser', 'with the key they had');
    write_secret('jwt_secret', $secret2);
}

# ---------------------------------------------------------------------------
# apiary -t and bad key files
# ---------------------------------------------------------------------------
{
    my $check = sub ($content, $want, $name, %o) {
        my $key = defined $content ? write_secret('check.key', $content, $o{mode} // 0600) : "$dir/missing.key";
        my $conf = $t->write_file('check.conf', "[server]\nlisten = 127.0.0.1:1\n[api]\n"
            . "jwt_secret_file = $key\n" . ($o{extra} // ''));
        my ($code, $out, $err) = $t->run_cmd('-t', '-c', $conf);
        is($code, 1, "-t: $name: exit 1");
        like($err, qr/^\Q$conf\E:$want/m, "-t: $name: file:line and why") or diag($err);
    };
    $check->('0123456789abcdef0123456789abcde', '4: api\.jwt_secret_file: .*31 bytes long; at least 32',
        'a 31-byte secret');
    $check->("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n", '4: api\.jwt_secret_file: .*PEM block 1',
        'a bad PEM file');
    $check->(slurp("$dir/rsa.key"), '4: api\.jwt_secret_file: .*private key', 'a private key');
    $check->('{"keys": [}', '4: api\.jwt_secret_file: .*not valid JSON', 'bad JSON');
    $check->(undef, '4: api\.jwt_secret_file: cannot open .*No such file', 'a missing file');
    $check->($secret, '4: api\.jwt_secret_file: .*every user may read it', 'a world-readable secret',
        mode => 0644);
    $check->($secret, '5: api\.jwt_role_claim: ', 'a bad role claim path', extra => "jwt_role_claim = .a[x\n");
    $check->($secret, '5: api\.pre_request: ', 'a bad pre_request', extra => "pre_request = a\"b\n");
    my $conf = $t->write_file('check.conf', "[api]\njwt_secret_file = $dir/jwt_secret\n");
    my ($code, undef, $err) = $t->run_cmd('-t', '-c', $conf);
    is($code, 0, '-t: a good secret file passes') or diag($err);
}

# ---------------------------------------------------------------------------
# No anonymous role: a token without a role is refused
# ---------------------------------------------------------------------------
configure(anon_role => '');
reload_ok('anon_role empty');
{
    my $r = req('GET', '/rpc/whoami', token => jwt(claims => { exp => int(time) + 60 }, key => $secret2));
    is($r && $r->{status}, 401, 'anon_role empty, a token without a role: 401');
    is(body($r) && body($r)->{code}, 'PGRST302', 'PGRST302');
    is($r && $r->{headers}{'www-authenticate'}, 'Bearer', 'WWW-Authenticate: Bearer');
    is(whoami(token => jwt(claims => claims(), key => $secret2)), 'webuser', 'with a role: fine');
}

is($t->get('/ready')->{status}, 200, 'still ready after all this');
done_testing;
