/*
 * sdnotify.c: systemd's notification protocol (sdnotify.h), written from
 * sd_notify(3) and systemd.service(5) without libsystemd: each message is
 * one datagram of "KEY=value" lines sent to the AF_UNIX socket named by
 * NOTIFY_SOCKET (a path, or an abstract name after "@").  One socket,
 * opened at start, non-blocking: a send never waits for systemd.  A
 * datagram that cannot be sent (no listener, systemd's queue full) is
 * dropped, and the first failure of a run of them is logged at warn: a
 * lost READY=1 fails the unit's start after TimeoutStartSec and lost
 * WATCHDOG=1 pings get the worker killed, so an operator must be able to
 * find out why; once per run keeps a persistent failure from writing two
 * lines a second.  The watchdog's timer (WATCHDOG_USEC / 2) lives here.
 */

#include "sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct ragq_sdnotify_s {
    ragq_loop_t       *loop;
    int                fd; /* -1: say nothing */
    struct sockaddr_un addr;
    socklen_t          addrlen;
    char               where[sizeof(((struct sockaddr_un *) 0)->sun_path) + 2];
    uint64_t           watchdog_ms; /* 0: no watchdog pings */
    ragq_timer_t       watchdog;
    int                failing; /* a failure was logged, none sent since */
};

/* NOTIFY_SOCKET into sd->addr; -1 (logged) for what we cannot use. */
static int
parse_socket(ragq_sdnotify_t *sd, const char *e)
{
    size_t n = strlen(e);

    memset(&sd->addr, 0, sizeof(sd->addr));
    sd->addr.sun_family = AF_UNIX;
    if ((e[0] != '/' && e[0] != '@') || n < 2 ||
        n > sizeof(sd->addr.sun_path) - (e[0] == '/')) {
        ragq_log(RAGQ_LOG_WARN,
                 "NOTIFY_SOCKET \"%.*s\" is not an absolute path or "
                 "\"@name\" of a unix socket that fits sun_path; systemd "
                 "will hear nothing from this worker",
                 (int) (n > 120 ? 120 : n), e);
        return -1;
    }
    /* "@name": the abstract name is "\0name", its length is all of it. */
    memcpy(sd->addr.sun_path, e, n);
    if (e[0] == '@') {
        sd->addr.sun_path[0] = '\0';
        sd->addrlen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        sd->addrlen =
            (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    snprintf(sd->where, sizeof(sd->where), "%s", e);
    return 0;
}

/* WATCHDOG_USEC / 2 in ms when the pings are for us, else 0. */
static uint64_t
watchdog_period(void)
{
    const char        *u = getenv("WATCHDOG_USEC");
    const char        *p = getenv("WATCHDOG_PID");
    char              *end;
    unsigned long long usec;
    long               pid;

    if (u == NULL || u[0] == '\0') {
        return 0;
    }
    errno = 0;
    usec = strtoull(u, &end, 10);
    if (errno != 0 || *end != '\0' || u[0] == '-' || usec == 0) {
        ragq_log(RAGQ_LOG_WARN,
                 "WATCHDOG_USEC \"%.20s\" is not a number of "
                 "microseconds: no watchdog pings",
                 u);
        return 0;
    }
    if (p != NULL && p[0] != '\0') {
        errno = 0;
        pid = strtol(p, &end, 10);
        if (errno != 0 || *end != '\0' || pid <= 0) {
            ragq_log(RAGQ_LOG_WARN,
                     "WATCHDOG_PID \"%.20s\" is not a pid: "
                     "no watchdog pings",
                     p);
            return 0;
        }
        if ((pid_t) pid != getpid()) {
            /* systemd watches another process (we were started by it) */
            ragq_log(RAGQ_LOG_DEBUG,
                     "WATCHDOG_PID %ld is not ours: no watchdog pings", pid);
            return 0;
        }
    }
    return usec / 2000 > 0 ? usec / 2000 : 1;
}

static void
send_msg(ragq_sdnotify_t *sd, const char *msg, size_t len)
{
    ssize_t n;

    n = sendto(sd->fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL,
               (const struct sockaddr *) &sd->addr, sd->addrlen);
    if (n == (ssize_t) len) {
        if (sd->failing) {
            ragq_log(RAGQ_LOG_INFO,
                     "systemd notifications (NOTIFY_SOCKET %s) "
                     "are sent again",
                     sd->where);
            sd->failing = 0;
        }
        return;
    }
    if (!sd->failing) {
        const char *nl = strchr(msg, '\n');

        ragq_log(RAGQ_LOG_WARN,
                 "systemd notification \"%.*s\" not sent to NOTIFY_SOCKET "
                 "%s: %s (dropped; further failures are not logged until "
                 "one is sent)",
                 (int) (nl ? (size_t) (nl - msg) : strlen(msg)), msg, sd->where,
                 n < 0 ? strerror(errno) : "short send");
        sd->failing = 1;
    }
}

void
ragq_sdnotify(ragq_sdnotify_t *sd, const char *state, const char *status_fmt,
              ...)
{
    char    msg[512], status[400], *s;
    int     n;
    va_list ap;

    if (sd == NULL || sd->fd < 0) {
        return;
    }
    status[0] = '\0';
    if (status_fmt) {
        va_start(ap, status_fmt);
        n = vsnprintf(status, sizeof(status), status_fmt, ap);
        va_end(ap);
        if (n < 0) {
            status[0] = '\0';
        }
        for (s = status; *s; s++) {
            if (*s == '\n') {
                *s = ' ';
            }
        }
        ragq_redact(status, NULL, NULL);
    }
    n = snprintf(msg, sizeof(msg), "%s%s%s%s", state ? state : "",
                 state && status_fmt ? "\n" : "", status_fmt ? "STATUS=" : "",
                 status);
    if (n <= 0) {
        return;
    }
    send_msg(sd, msg, (size_t) n < sizeof(msg) ? (size_t) n : sizeof(msg) - 1);
}

static void
watchdog_ping(void *data)
{
    ragq_sdnotify_t *sd = data;

    ragq_timer_start(sd->loop, &sd->watchdog, sd->watchdog_ms);
    send_msg(sd, "WATCHDOG=1", sizeof("WATCHDOG=1") - 1);
}

ragq_sdnotify_t *
ragq_sdnotify_new(ragq_loop_t *loop)
{
    ragq_sdnotify_t *sd = calloc(1, sizeof(*sd));
    const char      *e = getenv("NOTIFY_SOCKET");

    if (sd == NULL) {
        return NULL;
    }
    sd->loop = loop;
    sd->fd = -1;
    ragq_timer_init(&sd->watchdog, watchdog_ping, sd);
    if (e == NULL || e[0] == '\0' || parse_socket(sd, e) != 0) {
        return sd;
    }
    sd->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sd->fd < 0) {
        ragq_log(RAGQ_LOG_WARN,
                 "NOTIFY_SOCKET %s: socket(): %s; systemd will hear nothing "
                 "from this worker",
                 sd->where, strerror(errno));
        return sd;
    }
    sd->watchdog_ms = watchdog_period();
    if (sd->watchdog_ms > 0) {
        ragq_log(RAGQ_LOG_DEBUG,
                 "systemd: NOTIFY_SOCKET %s, a watchdog ping every %llu ms",
                 sd->where, (unsigned long long) sd->watchdog_ms);
    } else {
        ragq_log(RAGQ_LOG_DEBUG, "systemd: NOTIFY_SOCKET %s, no watchdog",
                 sd->where);
    }
    return sd;
}

void
ragq_sdnotify_start(ragq_sdnotify_t *sd)
{
    if (sd != NULL && sd->fd >= 0 && sd->watchdog_ms > 0) {
        ragq_timer_start(sd->loop, &sd->watchdog, 0);
    }
}

void
ragq_sdnotify_free(ragq_sdnotify_t *sd)
{
    if (sd == NULL) {
        return;
    }
    ragq_timer_stop(sd->loop, &sd->watchdog);
    if (sd->fd >= 0) {
        close(sd->fd);
    }
    free(sd);
}
