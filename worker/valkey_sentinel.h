/*
 * valkey_sentinel.h: Sentinel for the worker (redis+sentinel://, DESIGN
 * §6): which server is the primary, now and after a fail-over.
 *
 * Finding it: a connection to the primary (valkey_conn.c) asks here on
 * every (re)connect; the sentinels are asked one after the other, starting
 * with the last one that answered, "SENTINEL get-master-addr-by-name
 * NAME", on a short-lived connection; the first answer wins.  The
 * connection then checks ROLE itself and comes back here when the server
 * is not (or no longer, READONLY) the primary.
 *
 * Following it: one subscriber connection to a sentinel (the next one
 * after a loss) listens to +switch-master; when the primary of NAME moves,
 * every connection to the old one is dropped and made again at once.
 * After every (re)subscription the sentinels are asked again, for a switch
 * missed while nobody listened.  The subscriber PINGs every 10 s so the
 * reply deadline notices a hung sentinel.
 * Implemented in valkey_sentinel.c.
 */

#ifndef RAGQ_VALKEY_SENTINEL_H
#define RAGQ_VALKEY_SENTINEL_H

#include "valkey_conn.h"

typedef struct ragq_sentinel_s ragq_sentinel_t;

/* net->addr is a RAGQ_VALKEY_SENTINEL address. */
ragq_sentinel_t *ragq_sentinel_new(ragq_vnet_t *net);

/* Connects the subscriber. */
void ragq_sentinel_start(ragq_sentinel_t *s);

/*
 * Finds the primary for vc: ragq_vconn_located or ragq_vconn_locate_failed
 * is called later (or at once), unless ragq_sentinel_cancel comes first.
 */
void ragq_sentinel_locate(ragq_sentinel_t *s, ragq_vconn_t *vc);
void ragq_sentinel_cancel(ragq_sentinel_t *s, ragq_vconn_t *vc);

/* Connections to the primary, told when it moves (ragq_vconn_moved). */
void ragq_sentinel_watch(ragq_sentinel_t *s, ragq_vconn_t *vc);
void ragq_sentinel_unwatch(ragq_sentinel_t *s, ragq_vconn_t *vc);

/* "HOST:PORT" of the primary last named by a sentinel, "" before. */
const char *ragq_sentinel_primary(const ragq_sentinel_t *s);

void ragq_sentinel_free(ragq_sentinel_t *s);

#endif
