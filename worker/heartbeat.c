/*
 * heartbeat.c: the worker's heartbeat and counters (heartbeat.h).  A beat
 * asks Valkey for its TIME, then sends one MULTI (HSET, PEXPIRE, ZADD,
 * ZREMRANGEBYSCORE) pipelined on the queue's command connection without
 * waiting for it.  The listing's scores and its prune horizon are Valkey's
 * time, not this host's: workers on hosts whose clocks disagree by more
 * than the horizon would otherwise prune each other's names (and a clock
 * ahead would keep dead names listed).  TIME refused (an ACL without
 * +time) falls back to this host's clock, with a warning.  A beat that
 * finds the connection down is tried again shortly, so that a worker shows
 * up as soon as it is connected.  With RAGQ_HEALTH_FILE, the file's mtime
 * is set to now whenever a beat's EXEC came back without an error (the
 * file made if missing), so that a healthcheck needs no Valkey client; it
 * is removed at start and at a clean exit.
 */

#include "heartbeat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "valkey_conn.h"

#ifndef RAGQ_VERSION
#define RAGQ_VERSION "unknown"
#endif

/* A beat that found the connection down is tried again after this. */
#define RAGQ_HB_RETRY_MS 200
/* How long a clean exit waits for its DEL. */
#define RAGQ_HB_REMOVE_MS 1000
/* Names listed longer ago than this many TTLs (and 1 min) are pruned. */
#define RAGQ_HB_PRUNE_TTLS 10

typedef struct {
    unsigned long long calls[RAGQ_APIS], errors[RAGQ_APIS];
    unsigned long long ends[RAGQ_ENDS];
    long long          last_job_at; /* epoch ms, 0: none yet */
} ragq_counters_t;

/* One worker per process, so one set of counters. */
static ragq_counters_t counters;

/* The hash's field names of the counters (nginx's metrics read them). */
static const char *const call_fields[RAGQ_APIS] = {
    "calls_embeddings", "calls_qdrant", "calls_chat"};
static const char *const error_fields[RAGQ_APIS] = {
    "errors_embeddings", "errors_qdrant", "errors_chat"};
static const char *const end_fields[RAGQ_ENDS] = {
    "jobs_finished", "jobs_failed", "jobs_released", "jobs_canceled"};

struct ragq_heartbeat_s {
    ragq_loop_t         *loop;
    const ragq_config_t *cfg;
    ragq_queue_t        *q;
    char                *key;  /* P:worker:NAME */
    char                *live; /* P:workers:live */
    char                 host[256];
    long long            started_at;
    ragq_timer_t         timer, remove_timer;
    int                  beaten, failing, removing, removed;
    int                  health_failing; /* RAGQ_HEALTH_FILE: warned */
    int                  time_failing;   /* TIME refused: warned */
};

void
ragq_count_call(int api)
{
    if (api >= 0 && api < RAGQ_APIS) {
        counters.calls[api]++;
    }
}

void
ragq_count_call_error(int api)
{
    if (api >= 0 && api < RAGQ_APIS) {
        counters.errors[api]++;
    }
}

void
ragq_count_job_end(ragq_job_end_t how)
{
    counters.ends[how]++;
    counters.last_job_at = ragq_epoch_ms();
}

static long
ttl_ms(const ragq_heartbeat_t *hb)
{
    return 3 * hb->cfg->heartbeat_ms;
}

/*
 * RAGQ_HEALTH_FILE: its mtime set to now, the file made when missing.  The
 * path is looked up on every beat, so a file removed meanwhile comes back.
 * Local and non-blocking (O_NONBLOCK: a FIFO there never holds the loop); a
 * failure is logged once until it works again, and the worker goes on.
 */
static void
health_touch(ragq_heartbeat_t *hb)
{
    const char *path = hb->cfg->health_file;
    int         fd, err = 0;

    if (path == NULL) {
        return;
    }
    if (utimensat(AT_FDCWD, path, NULL, 0) != 0) {
        err = errno;
        if (err == ENOENT) {
            fd = open(path,
                      O_WRONLY | O_CREAT | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
                      0644);
            if (fd >= 0) {
                close(fd);
                err = 0;
            } else {
                err = errno;
            }
        }
    }
    if (err != 0 && !hb->health_failing) {
        ragq_log(RAGQ_LOG_WARN,
                 "health file %s (RAGQ_HEALTH_FILE): %s; the worker goes on "
                 "without it",
                 path, strerror(err));
    } else if (err == 0 && hb->health_failing) {
        ragq_log(RAGQ_LOG_INFO, "health file %s is written again", path);
    }
    hb->health_failing = err != 0;
}

/* RAGQ_HEALTH_FILE removed: the worker is not healthy (any more, or yet). */
static void
health_remove(ragq_heartbeat_t *hb)
{
    const char *path = hb->cfg->health_file;

    if (path != NULL && unlink(path) != 0 && errno != ENOENT) {
        ragq_log(RAGQ_LOG_WARN, "health file %s (RAGQ_HEALTH_FILE): %s", path,
                 strerror(errno));
    }
}

static void
exec_reply(void *owner, struct redisReply *reply, void *priv)
{
    ragq_heartbeat_t *hb = priv;
    const char       *why = NULL;

    (void) owner;
    if (reply == NULL) {
        return; /* connection lost: the queue says so */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        why = reply->str;
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        size_t i;

        for (i = 0; i < reply->elements; i++) {
            if (reply->element[i]->type == REDIS_REPLY_ERROR) {
                why = reply->element[i]->str;
            }
        }
    }
    if (why != NULL && !hb->failing) {
        ragq_log(RAGQ_LOG_WARN, "heartbeat %s: %s", hb->key, why);
    }
    hb->failing = why != NULL;
    /* a beat's reply that comes after a clean exit began touches nothing */
    if (why == NULL && !hb->removing) {
        health_touch(hb);
    }
}

/* "name" "value" pairs of the hash, formatted into vals. */
#define RAGQ_HB_FIELDS 20

/*
 * The beat proper; now is Valkey's time in epoch ms (beat_at, the score and
 * the prune horizon's base).  A beat not sent is tried again shortly.
 */
static void
send_beat(ragq_heartbeat_t *hb, long long now)
{
    ragq_vconn_t *vc = ragq_queue_conn(hb->q);
    const char   *argv[2 + 2 * RAGQ_HB_FIELDS], *names[RAGQ_HB_FIELDS];
    char          vals[RAGQ_HB_FIELDS][32], ttl[32], now_s[32], prune[32];
    const char   *exec_argv[] = {"EXEC"}, *multi_argv[] = {"MULTI"};
    const char   *name = ragq_queue_consumer(hb->q);
    long long     horizon;
    int           n = 0, i, argc;

#define FIELD(k, fmt, v)                            \
    do {                                            \
        names[n] = (k);                             \
        snprintf(vals[n], sizeof(vals[n]), fmt, v); \
        n++;                                        \
    } while (0)

    FIELD("started_at", "%lld", hb->started_at);
    FIELD("version", "%s", RAGQ_VERSION);
    FIELD("pid", "%ld", (long) getpid());
    FIELD("concurrency", "%u", hb->cfg->concurrency);
    FIELD("in_flight", "%u", ragq_queue_held(hb->q));
    for (i = 0; i < RAGQ_ENDS; i++) {
        FIELD(end_fields[i], "%llu", counters.ends[i]);
    }
    for (i = 0; i < RAGQ_APIS; i++) {
        FIELD(call_fields[i], "%llu", counters.calls[i]);
        FIELD(error_fields[i], "%llu", counters.errors[i]);
    }
    FIELD("last_job_at", "%lld", counters.last_job_at);
    FIELD("beat_at", "%lld", now);
    FIELD("interval_ms", "%ld", hb->cfg->heartbeat_ms);
#undef FIELD

    argv[0] = "HSET";
    argv[1] = hb->key;
    argc = 2;
    argv[argc++] = "host";
    argv[argc++] = hb->host;
    for (i = 0; i < n; i++) {
        argv[argc++] = names[i];
        argv[argc++] = vals[i];
    }

    snprintf(ttl, sizeof(ttl), "%ld", ttl_ms(hb));
    snprintf(now_s, sizeof(now_s), "%lld", now);
    horizon = RAGQ_HB_PRUNE_TTLS * (long long) ttl_ms(hb);
    if (horizon < 60000) {
        horizon = 60000;
    }
    snprintf(prune, sizeof(prune), "(%lld", now - horizon);

    {
        const char *pexpire[] = {"PEXPIRE", hb->key, ttl};
        const char *zadd[] = {"ZADD", hb->live, now_s, name};
        const char *zrem[] = {"ZREMRANGEBYSCORE", hb->live, "-inf", prune};

        /*
         * Queued in one go, so nothing else on the connection comes between
         * MULTI and EXEC; a connection lost half way discards the MULTI.
         */
        if (ragq_vconn_send(vc, NULL, NULL, 1, multi_argv, NULL) != 0 ||
            ragq_vconn_send(vc, NULL, NULL, argc, argv, NULL) != 0 ||
            ragq_vconn_send(vc, NULL, NULL, 3, pexpire, NULL) != 0 ||
            ragq_vconn_send(vc, NULL, NULL, 4, zadd, NULL) != 0 ||
            ragq_vconn_send(vc, NULL, NULL, 4, zrem, NULL) != 0 ||
            ragq_vconn_send(vc, exec_reply, hb, 1, exec_argv, NULL) != 0) {
            ragq_timer_start(hb->loop, &hb->timer, RAGQ_HB_RETRY_MS);
            return;
        }
    }
    if (!hb->beaten) {
        ragq_log(RAGQ_LOG_DEBUG, "heartbeat %s: first beat, TTL %ld ms",
                 hb->key, ttl_ms(hb));
    }
    hb->beaten = 1;
}

/*
 * Valkey's TIME ([seconds, microseconds], both decimal strings) in epoch
 * ms, or -1 when reply is not that.
 */
static long long
valkey_time_ms(const struct redisReply *reply)
{
    long long v[2];
    char     *end;
    size_t    i;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        return -1;
    }
    for (i = 0; i < 2; i++) {
        const struct redisReply *e = reply->element[i];

        if (e->type != REDIS_REPLY_STRING || e->len == 0) {
            return -1;
        }
        errno = 0;
        v[i] = strtoll(e->str, &end, 10);
        if (errno != 0 || *end != '\0' || v[i] < 0) {
            return -1;
        }
    }
    if (v[0] > 4000000000LL || v[1] > 999999) {
        return -1;
    }
    return v[0] * 1000 + v[1] / 1000;
}

static void
time_reply(void *owner, struct redisReply *reply, void *priv)
{
    ragq_heartbeat_t *hb = priv;
    long long         now;

    (void) owner;
    if (reply == NULL || hb->removing) {
        return; /* connection lost (the queue says so), or a clean exit */
    }
    now = valkey_time_ms(reply);
    if (now < 0) {
        if (!hb->time_failing) {
            ragq_log(RAGQ_LOG_WARN,
                     "heartbeat %s: TIME: %s; the listing P:workers:live "
                     "takes this host's clock instead (grant +time)",
                     hb->key,
                     reply->type == REDIS_REPLY_ERROR ? reply->str
                                                      : "unexpected reply");
        }
        hb->time_failing = 1;
        now = ragq_epoch_ms();
    } else if (hb->time_failing) {
        ragq_log(RAGQ_LOG_INFO, "heartbeat %s: TIME works again", hb->key);
        hb->time_failing = 0;
    }
    send_beat(hb, now);
}

static void
beat(void *data)
{
    ragq_heartbeat_t *hb = data;
    ragq_vconn_t     *vc = ragq_queue_conn(hb->q);
    const char       *time_argv[] = {"TIME"};

    if (hb->removing) {
        return;
    }
    /* Live means taking jobs: a worker that cannot claim (yet) does not beat.
     */
    if (!ragq_vconn_ready(vc) || !ragq_queue_ready(hb->q)) {
        ragq_timer_start(hb->loop, &hb->timer, RAGQ_HB_RETRY_MS);
        return;
    }
    ragq_timer_start(hb->loop, &hb->timer, (uint64_t) hb->cfg->heartbeat_ms);
    if (ragq_vconn_send(vc, time_reply, hb, 1, time_argv, NULL) != 0) {
        ragq_timer_start(hb->loop, &hb->timer, RAGQ_HB_RETRY_MS);
    }
}

ragq_heartbeat_t *
ragq_heartbeat_new(ragq_loop_t *loop, const ragq_config_t *cfg, ragq_queue_t *q)
{
    ragq_heartbeat_t *hb = calloc(1, sizeof(*hb));
    const char       *name = ragq_queue_consumer(q);
    size_t            n;

    if (hb == NULL) {
        return NULL;
    }
    hb->loop = loop;
    hb->cfg = cfg;
    hb->q = q;
    n = strlen(cfg->prefix) + strlen(name) + sizeof(":worker:");
    hb->key = malloc(n);
    hb->live = malloc(strlen(cfg->prefix) + sizeof(":workers:live"));
    if (hb->key == NULL || hb->live == NULL) {
        ragq_heartbeat_free(hb);
        return NULL;
    }
    snprintf(hb->key, n, "%s:worker:%s", cfg->prefix, name);
    sprintf(hb->live, "%s:workers:live", cfg->prefix);
    if (gethostname(hb->host, sizeof(hb->host)) != 0) {
        hb->host[0] = '\0';
    }
    hb->host[sizeof(hb->host) - 1] = '\0';
    hb->started_at = ragq_epoch_ms();
    ragq_timer_init(&hb->timer, beat, hb);
    return hb;
}

void
ragq_heartbeat_start(ragq_heartbeat_t *hb)
{
    ragq_log(RAGQ_LOG_INFO, "ragq-worker %s: heartbeat %s every %ld ms",
             RAGQ_VERSION, hb->key, hb->cfg->heartbeat_ms);
    /* one left by an earlier run says nothing about this one */
    health_remove(hb);
    ragq_timer_start(hb->loop, &hb->timer, 0);
}

static void
removed(void *owner, struct redisReply *reply, void *priv)
{
    ragq_heartbeat_t *hb = priv;

    (void) owner;
    if (reply != NULL && reply->type != REDIS_REPLY_ERROR) {
        ragq_log(RAGQ_LOG_DEBUG, "heartbeat %s removed", hb->key);
    }
    hb->removed = 1;
    ragq_loop_stop(hb->loop);
}

static void
remove_timeout(void *data)
{
    ragq_heartbeat_t *hb = data;

    ragq_log(RAGQ_LOG_WARN,
             "heartbeat %s: Valkey did not confirm its removal; it expires "
             "by itself",
             hb->key);
    hb->removed = 1;
    ragq_loop_stop(hb->loop);
}

void
ragq_heartbeat_remove(ragq_heartbeat_t *hb)
{
    ragq_vconn_t *vc = ragq_queue_conn(hb->q);
    const char   *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    const char   *del[] = {"DEL", hb->key};
    const char   *zrem[] = {"ZREM", hb->live, ragq_queue_consumer(hb->q)};

    hb->removing = 1;
    ragq_timer_stop(hb->loop, &hb->timer);
    health_remove(hb);
    if (!hb->beaten || !ragq_vconn_ready(vc)) {
        return;
    }
    if (ragq_vconn_send(vc, NULL, NULL, 1, multi, NULL) != 0 ||
        ragq_vconn_send(vc, NULL, NULL, 2, del, NULL) != 0 ||
        ragq_vconn_send(vc, NULL, NULL, 3, zrem, NULL) != 0 ||
        ragq_vconn_send(vc, removed, hb, 1, exec, NULL) != 0) {
        return;
    }
    ragq_timer_init(&hb->remove_timer, remove_timeout, hb);
    ragq_timer_start(hb->loop, &hb->remove_timer, RAGQ_HB_REMOVE_MS);
    /* the queue may stop the loop too (its exit timer): run on until done */
    while (!hb->removed) {
        if (ragq_loop_run(hb->loop) != 0) {
            break;
        }
    }
    ragq_timer_stop(hb->loop, &hb->remove_timer);
}

void
ragq_heartbeat_free(ragq_heartbeat_t *hb)
{
    if (hb == NULL) {
        return;
    }
    ragq_timer_stop(hb->loop, &hb->timer);
    free(hb->key);
    free(hb->live);
    free(hb);
}
