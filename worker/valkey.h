/*
 * valkey.h: the worker's side of the queue: two hiredis 0.14 async
 * connections on the worker loop (one blocked in XREADGROUP, one pipelined
 * for everything else), reconnecting with backoff, and the claim /
 * keep-alive / reclaim / final-state protocol of DEVELOPERS.md.  It owns
 * the job slots: a job is claimed only when a slot is free.
 */

#ifndef RAGQ_VALKEY_H
#define RAGQ_VALKEY_H

#include <stddef.h>

#include "config.h"
#include "job.h"
#include "loop.h"

typedef struct {
    char *host; /* numeric address, resolved at start-up; NULL for unix */
    int   port;
    char *path; /* unix socket */
    char *user, *password;
    int   db;
} ragq_valkey_addr_t;

/*
 * Parses redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N]
 * and resolves host (blocking: call it before the loop runs).  -1 + err.
 */
int ragq_valkey_addr_parse(const char *url, ragq_valkey_addr_t *addr, char *err,
                           size_t errlen);
void ragq_valkey_addr_free(ragq_valkey_addr_t *addr);

typedef struct ragq_queue_s ragq_queue_t;

ragq_queue_t *ragq_queue_new(ragq_loop_t *loop, ragq_pipeline_t *pipeline,
                             const ragq_config_t      *cfg,
                             const ragq_valkey_addr_t *addr);

/*
 * Connects and starts claiming.  If Valkey is not reachable within the
 * connect timeout, logs why and stops the loop with exit code 1.
 */
void ragq_queue_start(ragq_queue_t *q);

/*
 * Graceful stop: claim nothing more, let jobs in flight finish within the
 * grace period (the rest stay un-acknowledged, to be reclaimed), then stop
 * the loop with exit code 0.
 */
void ragq_queue_stop(ragq_queue_t *q);

int  ragq_queue_exit_code(const ragq_queue_t *q);
void ragq_queue_free(ragq_queue_t *q);

#endif
