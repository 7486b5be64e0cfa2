/* SPDX-License-Identifier: BSD-2-Clause */
/* The control socket's transport. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"

static int make_addr(const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun->sun_path))
        return -ENAMETOOLONG;
    strcpy(sun->sun_path, path);
    return 0;
}

int ap_control_listen(const char *path)
{
    struct sockaddr_un sun;
    int rc = make_addr(path, &sun);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    /* Only the owner (root or the service user) may talk to the master. */
    mode_t old = umask(077);
    rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    /* Read and write for the owner; execute means nothing on a socket. */
    if (rc == 0 && chmod(path, 0600) < 0)
        rc = -1;
    if (rc < 0 || listen(fd, 16) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int ap_control_request(const char *path, const char *cmd, ap_buf_t *reply, int timeout_ms)
{
    struct sockaddr_un sun;
    int rc = make_addr(path, &sun);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    size_t len = strlen(cmd);
    if (write(fd, cmd, len) != (ssize_t)len || write(fd, "\n", 1) != 1) {
        rc = -errno;
        close(fd);
        return rc;
    }
    uint64_t deadline = ap_clock_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = ap_clock_mono_ms();
        if (now >= deadline) {
            close(fd);
            return -ETIMEDOUT;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            continue;
        char buf[4096];
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            close(fd);
            return rc;
        }
        if (r == 0)
            break;
        ap_buf_append(reply, buf, (size_t)r);
        if (reply->len > 16 * 1024 * 1024) {
            close(fd);
            return -EMSGSIZE;
        }
    }
    close(fd);
    return 0;
}
