/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: configuration parsing, validation and error locations. */
#include <stdlib.h>

#include "config.h"
#include "tap.h"

static ap_config_t *parse(const char *text, char *const *env, ap_buf_t *errors)
{
    ap_buf_reset(errors);
    return ap_config_parse("t.conf", text, strlen(text), env, errors);
}

int main(void)
{
    ap_buf_t err;
    ap_buf_init(&err);
    uint64_t v;

    ok(ap_config_parse_duration("250ms", &v) == 0 && v == 250, "duration ms");
    ok(ap_config_parse_duration("10", &v) == 0 && v == 10000, "bare duration is seconds");
    ok(ap_config_parse_duration("2m", &v) == 0 && v == 120000, "duration minutes");
    ok(ap_config_parse_duration("1h", &v) == 0 && v == 3600000, "duration hours");
    ok(ap_config_parse_duration("10x", &v) < 0, "bad unit rejected");
    ok(ap_config_parse_duration("-1s", &v) < 0, "negative rejected");
    ok(ap_config_parse_duration("99999999999999999999s", &v) < 0, "overflow rejected");
    ok(ap_config_parse_size("16k", &v) == 0 && v == 16384, "size k");
    ok(ap_config_parse_size("1m", &v) == 0 && v == 1048576, "size m");
    ok(ap_config_parse_size("1q", &v) < 0, "bad size suffix rejected");

    ap_config_t *c = parse("", NULL, &err);
    ok(c != NULL, "empty file gives defaults");
    if (c) {
        is_int(c->nlisten, 2, "default: a public and an admin listener");
        is_str(c->listen[0].text, "127.0.0.1:8080", "default listen address");
        ok(!c->listen[0].admin && c->listen[1].admin, "the admin listener is marked");
        is_str(c->listen[1].text, "127.0.0.1:9091", "default admin address");
        is_int(c->header_timeout_ms, 10000, "default header_timeout");
        is_int(c->max_body_size, 1048576, "default max_body_size");
        is_str(c->server_header, "apiary", "default Server header");
        ok(c->workers >= 1, "workers = auto is at least one");
        ap_config_free(c);
    }

    c = parse("[server]\nlisten = 127.0.0.1:9000\nlisten = [::1]:9000 backlog=128\n"
              "listen = unix:/tmp/a.sock\nworkers = 3\nserver_header = off\n"
              "keepalive_timeout = 0\n[log]\nlevel = debug\n",
              NULL, &err);
    ok(c != NULL, "full config parses");
    if (c) {
        is_int(c->nlisten, 4, "three listeners replace the default; the admin one stays");
        is_int(c->listen[2].backlog, 128, "backlog flag");
        is_int(c->workers, 3, "workers");
        ok(c->server_header == NULL, "server_header off");
        is_int(c->keepalive_timeout_ms, 0, "keepalive off");
        ap_config_free(c);
    }

    c = parse("[server]\nworkers = 0\n# comment\nheader_timeout = soon\nbogus = 1\n"
              "[nope]\nx = 1\n[server]\nworkers = 2\nlisten = 1.2.3:80\n",
              NULL, &err);
    ok(c == NULL, "bad config rejected");
    ok(strstr(err.data, "t.conf:2: server.workers: expected \"auto\" or an integer 1..512") != NULL,
       "workers error has file:line: key");
    ok(strstr(err.data, "t.conf:4: server.header_timeout: expected a duration") != NULL,
       "duration error located");
    ok(strstr(err.data, "t.conf:5: server.bogus: unknown key") != NULL, "unknown key located");
    ok(strstr(err.data, "t.conf:7: unknown section [nope]") != NULL, "unknown section located");
    ok(strstr(err.data, "t.conf:9: server.workers: duplicate key") != NULL, "duplicate located");
    ok(strstr(err.data, "t.conf:10: server.listen: invalid IPv4 address") != NULL,
       "bad listen located");

    c = parse("[server]\nthis is not ini\n", NULL, &err);
    ok(c == NULL && strstr(err.data, "t.conf:2: syntax error") != NULL, "syntax error located");

    char longline[400];
    memset(longline, 'x', sizeof(longline));
    memcpy(longline, "[server]\npidfile = ", 19);
    longline[sizeof(longline) - 2] = '\n';
    longline[sizeof(longline) - 1] = '\0';
    c = parse(longline, NULL, &err);
    ok(c == NULL && strstr(err.data, "t.conf:2: line too long") != NULL, "long line reported");

    char *env[] = {"APIARY_SERVER_WORKERS=5", "APIARY_BIN=/x", "APIARY_SERVER_LISTEN=127.0.0.1:1,[::1]:2", NULL};
    c = parse("[server]\nworkers = 2\n", env, &err);
    ok(c != NULL, "environment overrides apply");
    if (c) {
        is_int(c->workers, 5, "APIARY_SERVER_WORKERS wins over the file");
        is_int(c->nlisten, 3, "APIARY_SERVER_LISTEN is a list (and the admin listener stays)");
        ap_config_free(c);
    }
    char *badenv[] = {"APIARY_SERVER_WORKERS=zz", "APIARY_SERVER_NOPE=1", NULL};
    c = parse("", badenv, &err);
    ok(c == NULL, "bad environment value rejected");
    ok(strstr(err.data, "env:APIARY_SERVER_WORKERS: server.workers: expected") != NULL,
       "environment error names the variable");
    ok(strstr(err.data, "env:APIARY_SERVER_NOPE: unknown configuration variable") != NULL,
       "unknown variable in a known section rejected");

    c = parse("[server]\nmax_uri_size = 32k\nmax_header_size = 16k\n", NULL, &err);
    ok(c == NULL && strstr(err.data, "server.max_uri_size: must not exceed") != NULL,
       "uri limit above header limit rejected");

    c = parse("[admin]\nlisten = off\n[server]\nlisten = 127.0.0.1:1 freebind\n", NULL, &err);
    ok(c && c->nlisten == 1 && c->listen[0].freebind, "admin off; freebind flag");
    ap_config_free(c);
    c = parse("[server]\nlisten = 127.0.0.1:9091\n", NULL, &err);
    ok(c == NULL && strstr(err.data, "duplicate address"), "admin and public cannot share an address");

    c = parse("[server]\nlisten = 127.0.0.1:80\nlisten = 127.0.0.1:80\n", NULL, &err);
    ok(c == NULL && strstr(err.data, "t.conf:3: server.listen: duplicate address") != NULL,
       "duplicate listen rejected");

    /* [tls] keys that need no certificate file. */
    ap_buf_reset(&err);
    c = parse("[tls]\nhsts = MAX-AGE=31536000;includesubdomains; Preload\nprotocols = TLSv1.3\n"
              "session_tickets = off\n",
              NULL, &err);
    ok(c && strcmp(c->tls_hsts, "max-age=31536000; includeSubDomains; preload") == 0,
       "hsts normalised");
    ok(c && c->tls_protocols == AP_TLS_PROTO_13 && !c->tls_session_tickets && c->tls == NULL &&
           c->https_port == 443,
       "protocols, session_tickets; no certificate, no contexts; https port 443");
    ap_config_free(c);
    c = parse("[tls]\nhsts = off\n", NULL, &err);
    ok(c && c->tls_hsts == NULL, "hsts off");
    ap_config_free(c);
    c = parse("[tls]\nhsts = max-age=600 includeSubDomains\n", NULL, &err);
    ok(c && strcmp(c->tls_hsts, "max-age=600; includeSubDomains") == 0, "hsts parts separated by blanks");
    ap_config_free(c);
    c = parse("", NULL, &err);
    ok(c && strcmp(c->tls_hsts, "max-age=63072000") == 0 && c->tls_session_tickets &&
           c->tls_protocols == (AP_TLS_PROTO_12 | AP_TLS_PROTO_13) && c->ntls_certs == 0 &&
           c->tls_ticket_rotate_ms == 3600000,
       "tls defaults");
    ap_config_free(c);
    c = parse("[admin]\nlisten = off\n[server]\nlisten = 127.0.0.1:80 redirect\n", NULL, &err);
    ok(c && c->nlisten == 1 && c->listen[0].redirect && c->https_port == 443,
       "redirect without tls: port 443");
    ap_config_free(c);
    c = parse("[tls]\nhsts = max-age=10; preload\n", NULL, &err);
    ok(c == NULL && strstr(err.data, "t.conf:2: tls.hsts: preload needs includeSubDomains") != NULL,
       "weak preload rejected");
    ap_buf_reset(&err);
    char *tenv[] = {"APIARY_TLS_PROTOCOLS=TLSv1.0", NULL};
    c = parse("", tenv, &err);
    ok(c == NULL && strstr(err.data, "env:APIARY_TLS_PROTOCOLS: tls.protocols:") != NULL,
       "TLS 1.0 from the environment rejected");

    ap_buf_cleanup(&err);
    return done_testing();
}
