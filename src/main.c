/* SPDX-License-Identifier: BSD-2-Clause */
/* The command line: -t, -s, -v, daemonizing; hands off to the master. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <yajl/yajl_tree.h>

#include "access_log.h"
#include "buf.h"
#include "config.h"
#include "control.h"
#include "listener.h"
#include "log.h"
#include "master.h"
#include "migrate.h"
#include "status.h"
#include "version.h"

#ifndef AP_SYSCONFDIR
#define AP_SYSCONFDIR "/etc"
#endif

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: apiary [-c FILE] [-t] [-s SIGNAL [--wait]] [-F] [-v] [-h]\n"
            "       apiary [-c FILE] status [--json]\n"
            "       apiary [-c FILE] check [--ready]\n"
            "       apiary [-c FILE] migrate [--dir DIR] [--uri URI] [--dry-run] [--to VERSION]\n"
            "       apiary [-c FILE] migrate status [--dir DIR] [--uri URI]\n"
            "  -c FILE    configuration file (default %s/apiary.conf)\n"
            "  -t         test the configuration and exit\n"
            "  -s SIGNAL  tell the running master: stop, quit, reopen, reload, upgrade, drain\n"
            "  --wait     with -s reload: wait for the rolling restart, exit 1 if it failed\n"
            "  -F         stay in the foreground\n"
            "  -v         print the version and exit\n"
            "  -h         print this help and exit\n"
            "  status     one row per worker (--json: the whole document)\n"
            "  check      exit 0 if the master answers (--ready: and a worker is ready)\n"
            "  migrate    apply the pending NNNN_name.sql files of DIR ([database]\n"
            "             migrations_dir), each in a transaction of its own, to URI\n"
            "             ([database] migrate_uri, else listen_uri, else uri); --dry-run lists\n"
            "             them, --to stops after VERSION; \"status\" lists applied and pending\n",
            AP_SYSCONFDIR);
}

/* Talks to the master's control socket; prints the answer's message on
 * failure. Returns the exit status. */
static int control(const ap_config_t *conf, const char *cmd, ap_buf_t *reply, int quiet,
                   int timeout_ms)
{
    int rc = ap_control_request(conf->control_socket, cmd, reply, timeout_ms);
    if (rc == -ETIMEDOUT) {
        if (!quiet)
            fprintf(stderr, "apiary: %s: no answer from the master within %d s\n", cmd,
                    timeout_ms / 1000);
        return 1;
    }
    if (rc < 0) {
        if (!quiet)
            fprintf(stderr, "apiary: cannot reach the master through %s: %s (is apiary running?)\n",
                    conf->control_socket, strerror(-rc));
        return 1;
    }
    if (reply->len == 0) {
        if (!quiet)
            fprintf(stderr, "apiary: the master closed the control socket without an answer\n");
        return 1;
    }
    return 0;
}

/* Commands that answer {"ok":bool,"message":...}. */
static int control_result(const ap_config_t *conf, const char *cmd, int timeout_ms)
{
    ap_buf_t reply;
    ap_buf_init(&reply);
    int rc = control(conf, cmd, &reply, 0, timeout_ms);
    if (rc == 0) {
        char err[128];
        yajl_val v = yajl_tree_parse(reply.data, err, sizeof(err));
        const char *okp[] = {"ok", NULL}, *mp[] = {"message", NULL};
        yajl_val ok = v ? yajl_tree_get(v, okp, yajl_t_any) : NULL;
        yajl_val msg = v ? yajl_tree_get(v, mp, yajl_t_string) : NULL;
        if (ok == NULL || !YAJL_IS_TRUE(ok)) {
            fprintf(stderr, "apiary: %s failed: %s\n", cmd,
                    msg ? YAJL_GET_STRING(msg) : reply.data);
            rc = 1;
        } else if (msg && YAJL_GET_STRING(msg)[0]) {
            fprintf(stderr, "apiary: %s: %s\n", cmd, YAJL_GET_STRING(msg));
        }
        yajl_tree_free(v);
    }
    ap_buf_cleanup(&reply);
    return rc;
}

static int send_signal(const ap_config_t *conf, const char *name, int wait)
{
    static const struct {
        const char *name;
        int sig;
    } map[] = {{"stop", SIGTERM}, {"quit", SIGQUIT}, {"reopen", SIGUSR1}, {"reload", SIGHUP}};
    /* The ones whose outcome matters go through the control socket. */
    uint64_t wait_ms = conf->worker_ready_timeout_ms * (conf->workers + 1) + 10000;
    if (strcmp(name, "reload") == 0 && wait)
        return control_result(conf, "reload", (int)(wait_ms > 3600000 ? 3600000 : wait_ms));
    if (strcmp(name, "upgrade") == 0)
        return control_result(conf, "upgrade", (int)(wait_ms > 3600000 ? 3600000 : wait_ms));
    if (strcmp(name, "drain") == 0)
        return control_result(conf, "drain", 10000);
    int sig = 0;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(name, map[i].name) == 0)
            sig = map[i].sig;
    if (sig == 0) {
        fprintf(stderr,
                "apiary: unknown signal \"%s\" (stop, quit, reopen, reload, upgrade, drain)\n",
                name);
        return 1;
    }
    pid_t pid;
    int rc = ap_master_read_pidfile(conf->pidfile, &pid);
    if (rc < 0) {
        fprintf(stderr, "apiary: cannot read pidfile %s: %s (is apiary running?)\n",
                conf->pidfile, rc == -ESRCH ? "no pid in it" : strerror(-rc));
        return 1;
    }
    if (kill(pid, sig) < 0) {
        fprintf(stderr, "apiary: kill(%ld, %s) failed: %s\n", (long)pid, name, strerror(errno));
        return 1;
    }
    return 0;
}

static int cmd_status(const ap_config_t *conf, int json)
{
    ap_buf_t reply, table;
    ap_buf_init(&reply);
    ap_buf_init(&table);
    int rc = control(conf, "status", &reply, 0, 5000);
    if (rc == 0) {
        if (json) {
            fputs(reply.data, stdout);
        } else if (ap_status_table(&table, reply.data) == 0) {
            fputs(table.data, stdout);
        } else {
            fprintf(stderr, "apiary: unexpected answer from the master\n");
            rc = 1;
        }
    }
    ap_buf_cleanup(&reply);
    ap_buf_cleanup(&table);
    return rc;
}

/* apiary migrate [status]: the connection and the directory come from the
 * options, else from the configuration. */
static int cmd_migrate(const ap_config_t *conf, int status, const char *uri, const char *dir,
                       int dry_run, int64_t to)
{
    ap_migrate_opts_t o = {.dry_run = dry_run, .to = to};
    o.uri = uri                   ? uri
            : conf->db_migrate_uri ? conf->db_migrate_uri
            : conf->db_listen_uri  ? conf->db_listen_uri
                                   : conf->db_uri;
    o.dir = dir ? dir : conf->db_migrations_dir;
    o.connect_timeout_ms = conf->db_connect_timeout_ms;
    if (o.uri == NULL) {
        fprintf(stderr, "apiary: migrate: no database: set [database] migrate_uri (or uri) in "
                        "the configuration, or give --uri\n");
        return AP_MIGRATE_FAILED;
    }
    return status ? ap_migrate_status(&o) : ap_migrate_run(&o);
}

/* For keepalived's vrrp_script: an exit status, no output. */
static int cmd_check(const ap_config_t *conf, int ready)
{
    ap_buf_t reply;
    ap_buf_init(&reply);
    int rc = control(conf, "check", &reply, 1, 2000);
    if (rc == 0 && ready) {
        char err[64];
        yajl_val v = yajl_tree_parse(reply.data, err, sizeof(err));
        const char *p[] = {"ready_workers", NULL};
        yajl_val n = v ? yajl_tree_get(v, p, yajl_t_number) : NULL;
        rc = n && YAJL_IS_INTEGER(n) && YAJL_GET_INTEGER(n) > 0 ? 0 : 1;
        yajl_tree_free(v);
    }
    ap_buf_cleanup(&reply);
    return rc;
}

/* Forks into the background. The parent waits until the master reports
 * that it started (exit 0) or gives up (exit 1), so an init script sees the
 * real outcome. Returns the write end of that pipe in the child. */
static int daemonize(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        perror("apiary: pipe2");
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("apiary: fork");
        exit(1);
    }
    if (pid > 0) {
        char c;
        close(fds[1]);
        ssize_t n;
        do {
            n = read(fds[0], &c, 1);
        } while (n < 0 && errno == EINTR);
        exit(n == 1 ? 0 : 1);
    }
    close(fds[0]);
    if (setsid() < 0) {
        perror("apiary: setsid");
        exit(1);
    }
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        close(null);
    }
    umask(022);
    return fds[1];
}

/* The arguments a binary upgrade runs the new master with: the same, in
 * the foreground (it is already detached, and the old master waits for
 * this very process). */
static char **upgrade_argv(int argc, char **argv)
{
    char **out = calloc((size_t)argc + 2, sizeof(char *));
    int n = 0, has_f = 0;
    for (int i = 0; i < argc; i++) {
        out[n++] = argv[i];
        if (strcmp(argv[i], "-F") == 0)
            has_f = 1;
    }
    if (!has_f)
        out[n++] = "-F";
    out[n] = NULL;
    return out;
}

int main(int argc, char **argv)
{
    const char *conf_path = AP_SYSCONFDIR "/apiary.conf";
    const char *signame = NULL;
    const char *mig_dir = NULL, *mig_uri = NULL, *mig_to = NULL;
    int test = 0, foreground = 0, wait = 0, json = 0, ready = 0, dry_run = 0, conf_given = 0;
    int mig_opts = 0, opt;
    static const struct option longopts[] = {{"wait", no_argument, NULL, 'W'},
                                             {"json", no_argument, NULL, 'J'},
                                             {"ready", no_argument, NULL, 'R'},
                                             {"dir", required_argument, NULL, 'D'},
                                             {"uri", required_argument, NULL, 'U'},
                                             {"to", required_argument, NULL, 'T'},
                                             {"dry-run", no_argument, NULL, 'N'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'v'},
                                             {NULL, 0, NULL, 0}};

    /* Listeners handed over by systemd or by the old master of an upgrade
     * are claimed first: LISTEN_PID names this very process. */
    ap_listener_t *inherited = NULL;
    size_t ninherited = ap_listeners_inherited(&inherited);
    const char *from = getenv("APIARY_UPGRADE_FROM");
    pid_t upgrade_from = from ? (pid_t)strtol(from, NULL, 10) : 0;
    unsetenv("APIARY_UPGRADE_FROM");
    /* A unix socket that systemd made is systemd's to remove; one handed
     * over by the old master of an upgrade is ours now. */
    for (size_t i = 0; i < ninherited && upgrade_from == 0; i++) {
        free(inherited[i].unix_path);
        inherited[i].unix_path = NULL;
    }

    while ((opt = getopt_long(argc, argv, "c:ts:Fvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            conf_path = optarg;
            conf_given = 1;
            break;
        case 'D':
            mig_dir = optarg;
            mig_opts = 1;
            break;
        case 'U':
            mig_uri = optarg;
            mig_opts = 1;
            break;
        case 'T':
            mig_to = optarg;
            mig_opts = 1;
            break;
        case 'N':
            dry_run = 1;
            mig_opts = 1;
            break;
        case 't':
            test = 1;
            break;
        case 's':
            signame = optarg;
            break;
        case 'F':
            foreground = 1;
            break;
        case 'W':
            wait = 1;
            break;
        case 'J':
            json = 1;
            break;
        case 'R':
            ready = 1;
            break;
        case 'v':
            printf("apiary %s\n", AP_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    const char *command = NULL;
    int migrate_status = 0;
    if (optind < argc) {
        command = argv[optind++];
        if (strcmp(command, "migrate") == 0 && optind < argc &&
            strcmp(argv[optind], "status") == 0) {
            migrate_status = 1;
            optind++;
        }
        if ((strcmp(command, "status") != 0 && strcmp(command, "check") != 0 &&
             strcmp(command, "migrate") != 0) ||
            optind < argc) {
            fprintf(stderr, "apiary: unexpected argument \"%s\"\n",
                    optind < argc ? argv[optind] : command);
            usage(stderr);
            return 2;
        }
    }
    int migrate = command && strcmp(command, "migrate") == 0;
    if (mig_opts && !migrate) {
        fprintf(stderr, "apiary: --dir, --uri, --to and --dry-run go with \"migrate\"\n");
        usage(stderr);
        return 2;
    }
    if (migrate_status && (dry_run || mig_to)) {
        fprintf(stderr, "apiary: migrate status takes --dir and --uri, not --dry-run or --to\n");
        return 2;
    }
    int64_t to = -1;
    if (mig_to) {
        size_t n = strspn(mig_to, "0123456789");
        if (n == 0 || n > 18 || mig_to[n] != '\0') {
            fprintf(stderr, "apiary: --to \"%s\": expected a version number such as 0002\n",
                    mig_to);
            return 2;
        }
        to = strtoll(mig_to, NULL, 10);
    }
    if (migrate && (test || signame)) {
        fprintf(stderr, "apiary: migrate goes without -t and -s\n");
        return 2;
    }
    if (migrate) {
        /* With --uri and no -c, the configuration file is not needed: the
         * defaults and the environment fill in the rest. */
        ap_buf_t errors;
        ap_buf_init(&errors);
        ap_config_t *conf = mig_uri && !conf_given
                                ? ap_config_parse("(environment)", "", 0, environ, &errors)
                                : ap_config_load(conf_path, environ, &errors);
        if (conf == NULL) {
            fputs(errors.data ? errors.data : "", stderr);
            ap_buf_cleanup(&errors);
            ap_listeners_close(inherited, ninherited, 0);
            return 1;
        }
        ap_buf_cleanup(&errors);
        int rc = cmd_migrate(conf, migrate_status, mig_uri, mig_dir, dry_run, to);
        ap_config_free(conf);
        ap_listeners_close(inherited, ninherited, 0);
        return rc;
    }

    /* The master re-reads the file on HUP: hold on to where it is even if
     * the working directory changes. */
    char *abs_path = realpath(conf_path, NULL);
    if (abs_path)
        conf_path = abs_path;

    ap_buf_t errors;
    ap_buf_init(&errors);
    ap_config_t *conf = ap_config_load(conf_path, environ, &errors);
    if (conf == NULL && !test && (signame || command)) {
        /* The running master may be fine with the file it read: find it
         * all the same (a reload tells the errors itself). */
        int quiet = (signame && strcmp(signame, "reload") == 0 && wait) ||
                    (command && strcmp(command, "check") == 0);
        if (!quiet)
            fputs(errors.data ? errors.data : "", stderr);
        conf = ap_config_for_control(conf_path, environ);
    }
    if (conf == NULL) {
        fputs(errors.data ? errors.data : "", stderr);
        if (test)
            fprintf(stderr, "apiary: configuration file %s test failed\n", conf_path);
        ap_buf_cleanup(&errors);
        free(abs_path);
        ap_listeners_close(inherited, ninherited, 0);
        return 1;
    }
    ap_buf_cleanup(&errors);

    int rc;
    if (test || signame || command) {
        if (test && conf->warnings)
            fputs(conf->warnings, stderr);
        if (test)
            fprintf(stderr, "apiary: configuration file %s test is successful\n", conf_path);
        rc = test ? 0
             : signame ? send_signal(conf, signame, wait)
             : strcmp(command, "status") == 0 ? cmd_status(conf, json)
                                              : cmd_check(conf, ready);
        ap_config_free(conf);
        free(abs_path);
        ap_listeners_close(inherited, ninherited, 0);
        return rc;
    }

    ap_log_level = conf->log_level;
    rc = ap_log_open(conf->error_log);
    if (rc < 0) {
        fprintf(stderr, "apiary: cannot open error_log \"%s\": %s\n", conf->error_log,
                strerror(-rc));
        ap_config_free(conf);
        free(abs_path);
        return 1;
    }
    /* Workers open the access log themselves; a path they cannot open
     * fails the start here, with a reason, rather than in every worker. */
    rc = ap_access_check(conf);
    if (rc < 0) {
        fprintf(stderr, "apiary: cannot open [log] access \"%s\": %s\n", conf->access_log,
                strerror(-rc));
        ap_log_close();
        ap_config_free(conf);
        free(abs_path);
        return 1;
    }
    if (ninherited)
        ap_log(AP_LOG_NOTICE, "%zu listening sockets inherited (LISTEN_FDS)", ninherited);
    ap_master_opts_t opts = {.ready_fd = -1,
                             .inherited = inherited,
                             .ninherited = ninherited,
                             .upgrade_from = upgrade_from};
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    opts.exe = exe;
    opts.argv = upgrade_argv(argc, argv);
    if (!foreground) {
        if (strcmp(conf->error_log, "stderr") == 0)
            fprintf(stderr, "apiary: warning: running in the background with error_log = "
                            "stderr: log lines after start-up are lost\n");
        opts.ready_fd = daemonize();
    }
    rc = ap_master_run(conf, &opts);
    if (rc != 0 && ap_log_fd() != STDERR_FILENO)
        fprintf(stderr, "apiary: start-up failed; see the error log\n");
    ap_log_close();
    ap_listeners_close(inherited, ninherited, 0);
    free(opts.argv);
    free(abs_path);
    return rc;
}
