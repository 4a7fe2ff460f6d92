/*
 * sdnotify.h: ragq-worker's side of systemd's notification protocol
 * (sd_notify(3), spoken here without libsystemd): READY=1 once the worker
 * claims, STOPPING=1 when a graceful stop begins, STATUS= lines, and the
 * WATCHDOG=1 pings of a loop timer, every WATCHDOG_USEC / 2.  Everything
 * is a no-op without NOTIFY_SOCKET.  Implemented in sdnotify.c.
 */

#ifndef RAGQ_SDNOTIFY_H
#define RAGQ_SDNOTIFY_H

#include "loop.h"

typedef struct ragq_sdnotify_s ragq_sdnotify_t;

/*
 * Reads NOTIFY_SOCKET (a path, or "@name": an abstract socket),
 * WATCHDOG_USEC and WATCHDOG_PID, and opens the datagram socket.  NULL
 * only when out of memory; without NOTIFY_SOCKET (or with one that cannot
 * be used: logged) the object says nothing.  Every call below takes NULL.
 */
ragq_sdnotify_t *ragq_sdnotify_new(ragq_loop_t *loop);
void             ragq_sdnotify_free(ragq_sdnotify_t *sd);

/*
 * Starts the watchdog pings when systemd asked for them (WATCHDOG_USEC set,
 * and WATCHDOG_PID unset or ours): the first on the loop's next turn, then
 * every WATCHDOG_USEC / 2.  They prove the loop turns, nothing more: not
 * that Valkey is reachable (a worker reconnecting must not be killed).
 */
void ragq_sdnotify_start(ragq_sdnotify_t *sd);

/*
 * Sends state ("READY=1", "STOPPING=1"; NULL: none) and, when status_fmt
 * is not NULL, a "STATUS=" line (newlines made spaces, hidden strings
 * masked as in the log).  Never blocks; a datagram that cannot be sent is
 * dropped (a warning for the first of a run of failures).
 */
void ragq_sdnotify(ragq_sdnotify_t *sd, const char *state,
                   const char *status_fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
