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

#include "buf.h"
#include "config.h"
#include "log.h"
#include "master.h"
#include "version.h"

#ifndef AP_SYSCONFDIR
#define AP_SYSCONFDIR "/etc"
#endif

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: apiary [-c FILE] [-t] [-s SIGNAL] [-F] [-v] [-h]\n"
            "  -c FILE    configuration file (default %s/apiary.conf)\n"
            "  -t         test the configuration and exit\n"
            "  -s SIGNAL  send SIGNAL to the running master: stop, quit, reopen, reload\n"
            "  -F         stay in the foreground\n"
            "  -v         print the version and exit\n"
            "  -h         print this help and exit\n",
            AP_SYSCONFDIR);
}

static int send_signal(const ap_config_t *conf, const char *name)
{
    static const struct {
        const char *name;
        int sig;
    } map[] = {{"stop", SIGTERM}, {"quit", SIGQUIT}, {"reopen", SIGUSR1}, {"reload", SIGHUP}};
    int sig = 0;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(name, map[i].name) == 0)
            sig = map[i].sig;
    if (sig == 0) {
        fprintf(stderr, "apiary: unknown signal \"%s\" (stop, quit, reopen, reload)\n", name);
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

int main(int argc, char **argv)
{
    const char *conf_path = AP_SYSCONFDIR "/apiary.conf";
    const char *signame = NULL;
    int test = 0, foreground = 0, opt;

    while ((opt = getopt(argc, argv, "c:ts:Fvh")) != -1) {
        switch (opt) {
        case 'c':
            conf_path = optarg;
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
    if (optind < argc) {
        fprintf(stderr, "apiary: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    /* The master re-reads the file on HUP: hold on to where it is even if
     * the working directory changes. */
    char *abs_path = realpath(conf_path, NULL);
    if (abs_path)
        conf_path = abs_path;

    ap_buf_t errors;
    ap_buf_init(&errors);
    ap_config_t *conf = ap_config_load(conf_path, environ, &errors);
    if (conf == NULL) {
        fputs(errors.data ? errors.data : "", stderr);
        if (test)
            fprintf(stderr, "apiary: configuration file %s test failed\n", conf_path);
        ap_buf_cleanup(&errors);
        free(abs_path);
        return 1;
    }
    ap_buf_cleanup(&errors);

    if (test) {
        fprintf(stderr, "apiary: configuration file %s test is successful\n", conf_path);
        ap_config_free(conf);
        free(abs_path);
        return 0;
    }
    if (signame) {
        int rc = send_signal(conf, signame);
        ap_config_free(conf);
        free(abs_path);
        return rc;
    }

    ap_log_level = conf->log_level;
    int rc = ap_log_open(conf->error_log);
    if (rc < 0) {
        fprintf(stderr, "apiary: cannot open error_log \"%s\": %s\n", conf->error_log,
                strerror(-rc));
        ap_config_free(conf);
        free(abs_path);
        return 1;
    }
    int ready_fd = -1;
    if (!foreground) {
        if (strcmp(conf->error_log, "stderr") == 0)
            fprintf(stderr, "apiary: warning: running in the background with error_log = "
                            "stderr: log lines after start-up are lost\n");
        ready_fd = daemonize();
    }
    rc = ap_master_run(conf, ready_fd);
    if (rc != 0 && ap_log_fd() != STDERR_FILENO)
        fprintf(stderr, "apiary: start-up failed; see the error log\n");
    ap_log_close();
    free(abs_path);
    return rc;
}
