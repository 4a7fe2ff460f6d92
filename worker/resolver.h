/*
 * resolver.h: host names to addresses without blocking the worker's loop.
 * getaddrinfo() blocks (DNS), so each lookup runs on a short-lived thread of
 * its own, which hands the answer back through an eventfd watched by the
 * loop; the callback then runs on the loop, like every other callback.  A
 * thread per lookup (not a pool) because lookups are rare (one per Valkey
 * (re)connect, paced by the reconnect backoff) and a hung DNS server then
 * holds up only the lookup that asked it, which the connect timeout gives
 * up on anyway.  Numeric addresses need no thread (ragq_resolve_numeric).
 * Implemented in resolver.c.
 */

#ifndef RAGQ_RESOLVER_H
#define RAGQ_RESOLVER_H

#include <sys/socket.h>

#include "loop.h"

#define RAGQ_RESOLVE_MAX 8 /* addresses kept from one answer */

typedef struct {
    struct sockaddr_storage addr[RAGQ_RESOLVE_MAX];
    socklen_t               len[RAGQ_RESOLVE_MAX];
    int                     n;
} ragq_addrs_t;

typedef struct ragq_resolver_s ragq_resolver_t;
typedef struct ragq_lookup_s   ragq_lookup_t;

/*
 * The answer, on the loop: addrs (valid during the call) or err (a
 * message: "cannot resolve \"h\": Name or service not known").
 */
typedef void (*ragq_resolved_cb)(void *data, const ragq_addrs_t *addrs,
                                 const char *err);

ragq_resolver_t *ragq_resolver_new(ragq_loop_t *loop);

/*
 * Starts resolving host (TCP, port given).  cb runs later on the loop,
 * exactly once, unless the lookup is cancelled first.  NULL when no thread
 * could be started (cb is then never called).
 */
ragq_lookup_t *ragq_resolve(ragq_resolver_t *r, const char *host, int port,
                            ragq_resolved_cb cb, void *data);

/* cb will not run; the thread's answer is thrown away when it comes. */
void ragq_resolve_cancel(ragq_lookup_t *l);

/* host as an IPv4 or IPv6 literal into addrs (n = 1); -1 if it is a name. */
int ragq_resolve_numeric(const char *host, int port, ragq_addrs_t *addrs);

/*
 * Frees the resolver; lookups still running are cancelled, and the last
 * of their threads frees what remains.
 */
void ragq_resolver_free(ragq_resolver_t *r);

#endif
