/* SPDX-License-Identifier: BSD-2-Clause */
/* Dropping a worker's privileges. */
#include "privdrop.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static int numeric(const char *s, unsigned long *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v >= 0xffffffffUL)
        return -1;
    *out = v;
    return 0;
}

int ap_privdrop_resolve(const char *user, const char *group, uid_t *uid, gid_t *gid, char *why,
                        size_t size, const char **key)
{
    unsigned long n;
    struct passwd *pw;
    errno = 0;
    pw = getpwnam(user);
    if (pw == NULL && numeric(user, &n) == 0)
        pw = getpwuid((uid_t)n);
    if (pw == NULL) {
        *key = "user";
        snprintf(why, size, "unknown user \"%s\"", user);
        return -1;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    if (*uid == 0) {
        *key = "user";
        snprintf(why, size, "\"%s\" is root: workers must run as an unprivileged user", user);
        return -1;
    }
    if (group) {
        struct group *gr = getgrnam(group);
        if (gr == NULL && numeric(group, &n) == 0)
            gr = getgrgid((gid_t)n);
        if (gr == NULL) {
            *key = "group";
            snprintf(why, size, "unknown group \"%s\"", group);
            return -1;
        }
        *gid = gr->gr_gid;
    }
    if (*gid == 0) {
        *key = group ? "group" : "user";
        snprintf(why, size, "workers must not run with group root (gid 0): set server.group");
        return -1;
    }
    return 0;
}

int ap_privdrop_worker(const ap_config_t *conf)
{
    if (!conf->run_as)
        return 0;
    if (geteuid() != 0) {
        /* Started unprivileged (a user's own instance, or systemd's
         * User=): there is nothing to drop. */
        return 0;
    }
    /* The user's supplementary groups, as login would give them; the
     * configured group is the primary one. */
    struct passwd *pw = getpwuid(conf->run_uid);
    if (pw == NULL || initgroups(pw->pw_name, conf->run_gid) < 0) {
        ap_log_errno(AP_LOG_CRIT, pw ? errno : ENOENT,
                     "initgroups() for user \"%s\" failed: refusing to run as root", conf->user);
        return -1;
    }
    if (setresgid(conf->run_gid, conf->run_gid, conf->run_gid) < 0) {
        ap_log_errno(AP_LOG_CRIT, errno, "setresgid(%lu) failed: refusing to run as root",
                     (unsigned long)conf->run_gid);
        return -1;
    }
    if (setresuid(conf->run_uid, conf->run_uid, conf->run_uid) < 0) {
        ap_log_errno(AP_LOG_CRIT, errno, "setresuid(%lu) failed: refusing to run as root",
                     (unsigned long)conf->run_uid);
        return -1;
    }
    /* No way back: every id is the user's, and asking for root again
     * must fail. */
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) < 0 || getresgid(&rg, &eg, &sg) < 0 || r != conf->run_uid ||
        e != conf->run_uid || s != conf->run_uid || rg != conf->run_gid || eg != conf->run_gid ||
        sg != conf->run_gid || setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0) {
        ap_log(AP_LOG_CRIT,
               "privileges could be regained after the switch to user \"%s\": "
               "refusing to serve",
               conf->user);
        return -1;
    }
    /* Nothing a worker runs may gain privileges through exec. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        ap_log_errno(AP_LOG_WARN, errno, "prctl(PR_SET_NO_NEW_PRIVS) failed");
    return 0;
}

int ap_privdrop_own_file(const ap_config_t *conf, const char *path)
{
    if (!conf->run_as || geteuid() != 0 || path == NULL || strcmp(path, "stderr") == 0)
        return 0;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        int err = errno;
        ap_log_errno(AP_LOG_ERR, err, "opening \"%s\" to give it to user \"%s\" failed", path,
                     conf->user);
        return -err;
    }
    int rc = 0;
    if (fchown(fd, conf->run_uid, conf->run_gid) < 0) {
        rc = -errno;
        ap_log_errno(AP_LOG_ERR, errno, "chown(\"%s\", %s) failed", path, conf->user);
    }
    close(fd);
    return rc;
}

void ap_privdrop_master_check(const ap_config_t *conf)
{
    if (conf->run_as && geteuid() != 0 && geteuid() != conf->run_uid)
        ap_log(AP_LOG_WARN,
               "server.user \"%s\" is ignored: apiary was not started as root, so workers run "
               "as uid %lu",
               conf->user, (unsigned long)geteuid());
    else if (!conf->run_as && geteuid() == 0)
        ap_log(AP_LOG_NOTICE, "workers run as root: set server.user to drop privileges");
}
