/*
 * valkey.c: the queue protocol of valkey.h on hiredis 0.14.
 *
 * hiredis 0.14 traps handled here: it has no timeouts (connect timeout and
 * reconnect backoff are loop timers); a failed connect calls the connect
 * callback and frees the context without the disconnect callback; on any
 * teardown every pending reply callback runs first with reply == NULL; the
 * connect/disconnect callbacks must not free the context; cleanup() can run
 * inside our own read handler, so the adapter defers its own free.
 * Claim, final write and release are Lua scripts, so each is one atomic step
 * that also refuses to touch a job already in a final state: a job run
 * twice (reclaimed from a slow worker) still ends in exactly one final state.
 */

#include "valkey.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RAGQ_XREAD_BLOCK_MS 5000
#define RAGQ_BACKOFF_MIN_MS 100
#define RAGQ_BACKOFF_MAX_MS 5000

enum { JOB_CLAIMING, JOB_RUNNING, JOB_WRITING, JOB_PARKED, JOB_RELEASING };

typedef struct ragq_vconn_s ragq_vconn_t;

typedef struct {
    ragq_loop_t       *loop;
    redisAsyncContext *ac;
    int                fd;
    unsigned           events;
    int                entered, dead;
} ragq_adapter_t;

struct ragq_vconn_s {
    ragq_queue_t      *q;
    const char        *name;
    redisAsyncContext *ac;
    int                ready, handshake_failed;
    long long          client_id; /* CLIENT ID, for CLIENT UNBLOCK */
    uint64_t           backoff_ms;
    ragq_timer_t       connect_timer, retry_timer;
    char               last_error[256];
};

struct ragq_queue_s {
    ragq_loop_t              *loop;
    ragq_pipeline_t          *pipeline;
    const ragq_config_t      *cfg;
    const ragq_valkey_addr_t *addr;
    char                      consumer[256];
    char *k_jobs, *k_group, *k_events, *k_dead, *k_job_prefix;

    ragq_vconn_t cmd, blk;
    int          group_ready, group_creating;
    int          started, stopping, exit_code;

    ragq_job_t *jobs;
    unsigned    njobs;
    unsigned    reserved_read, reserved_reclaim;
    int         reading, reclaiming, probing, reclaim_due;
    char        reclaim_cursor[64];

    ragq_timer_t startup_timer, keepalive_timer, reclaim_timer, grace_timer;
    ragq_timer_t exit_timer;
    long         cmd_pending;

    /* SHA1s from SCRIPT LOAD on the command connection; "" = use EVAL. */
    char sha[3][41];
};

static const char claim_script[] =
    "local h = redis.call('HMGET', KEYS[1], 'status', 'query', 'top_k',"
    " 'collection')\n"
    "if not h[1] then return {0} end\n"
    "if h[1] == 'finished' or h[1] == 'failed' or h[1] == 'canceled' then\n"
    "  return {1, h[1]}\n"
    "end\n"
    "local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)\n"
    "if a <= tonumber(ARGV[1]) then\n"
    "  redis.call('HSET', KEYS[1], 'status', 'started', 'started_at',"
    " ARGV[2])\n"
    "  redis.call('PUBLISH', KEYS[2], ARGV[3] .. ' started')\n"
    "end\n"
    "return {2, a, h[2] or '', h[3] or '', h[4] or ''}\n";

/*
 * KEYS: job hash, events, dead, jobs stream.  ARGV: status, ended_at,
 * ttl ms, result, sources, usage, error, entry id, job id, group.
 */
static const char final_script[] =
    "local s = redis.call('HGET', KEYS[1], 'status')\n"
    "local wrote = 0\n"
    "if s and s ~= 'finished' and s ~= 'failed' and s ~= 'canceled' then\n"
    "  if ARGV[1] == 'finished' then\n"
    "    redis.call('HSET', KEYS[1], 'status', 'finished', 'ended_at',"
    " ARGV[2], 'result', ARGV[4], 'sources', ARGV[5], 'usage', ARGV[6])\n"
    "    redis.call('HDEL', KEYS[1], 'error')\n"
    "  else\n"
    "    redis.call('HSET', KEYS[1], 'status', 'failed', 'ended_at',"
    " ARGV[2], 'error', ARGV[7])\n"
    "    redis.call('XADD', KEYS[3], '*', 'job', ARGV[9], 'error', ARGV[7])\n"
    "  end\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "  redis.call('PUBLISH', KEYS[2], ARGV[9] .. ' ' .. ARGV[1])\n"
    "  wrote = 1\n"
    "end\n"
    "redis.call('XACK', KEYS[4], ARGV[10], ARGV[8])\n"
    "redis.call('XDEL', KEYS[4], ARGV[8])\n"
    "return wrote\n";

/* KEYS: job hash, events.  ARGV: error json, job id. */
static const char release_script[] =
    "if redis.call('HGET', KEYS[1], 'status') == 'started' then\n"
    "  redis.call('HSET', KEYS[1], 'status', 'queued', 'error', ARGV[1])\n"
    "  redis.call('PUBLISH', KEYS[2], ARGV[2] .. ' queued')\n"
    "end\n"
    "return 1\n";

enum { SCRIPT_CLAIM, SCRIPT_FINAL, SCRIPT_RELEASE, NSCRIPTS };

static const char *const scripts[NSCRIPTS] = {claim_script, final_script,
                                              release_script};

static void vconn_connect(ragq_vconn_t *vc);
static void vconn_drop(ragq_vconn_t *vc, const char *why);
static void on_vconn_ready(ragq_vconn_t *vc);
static void claim_more(ragq_queue_t *q);
static void reclaim(void *data);
static void reclaim_now(ragq_queue_t *q);
static void write_final(ragq_queue_t *q, ragq_job_t *job);
static void check_drained(ragq_queue_t *q);

/* ---- address ---------------------------------------------------------- */

static char *
dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *
percent_decode(const char *s, size_t n)
{
    char  *d = malloc(n + 1);
    size_t i, j = 0;

    if (d == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        unsigned v;

        if (s[i] == '%' && i + 2 < n && sscanf(s + i + 1, "%2x", &v) == 1) {
            d[j++] = (char) v;
            i += 2;
        } else {
            d[j++] = s[i];
        }
    }
    d[j] = '\0';
    return d;
}

void
ragq_valkey_addr_free(ragq_valkey_addr_t *a)
{
    free(a->host);
    free(a->path);
    free(a->user);
    free(a->password);
    memset(a, 0, sizeof(*a));
}

int
ragq_valkey_addr_parse(const char *url, ragq_valkey_addr_t *a, char *err,
                       size_t errlen)
{
    const char     *p, *at, *hostend, *slash;
    char           *host = NULL, hostbuf[256], *end;
    struct addrinfo hints, *res;
    int             rc;

    memset(a, 0, sizeof(*a));
    a->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *q = strchr(url + 7, '?');

        a->path =
            q ? dup_range(url + 7, (size_t) (q - url - 7)) : strdup(url + 7);
        if (q && strncmp(q, "?db=", 4) == 0) {
            a->db = atoi(q + 4);
        }
        if (a->path == NULL || a->path[0] != '/') {
            snprintf(err, errlen,
                     "RAGQ_VALKEY_URL \"%s\": a unix socket URL is "
                     "unix:///absolute/path",
                     url);
            ragq_valkey_addr_free(a);
            return -1;
        }
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0 && strncmp(url, "valkey://", 9) != 0) {
        snprintf(err, errlen,
                 "RAGQ_VALKEY_URL \"%s\": expected "
                 "redis://[:password@]host:port[/db] or unix:///path",
                 url);
        return -1;
    }
    p = strstr(url, "://") + 3;
    slash = strchr(p, '/');
    at = strchr(p, '@');
    if (at && slash && at > slash) {
        at = NULL;
    }
    if (at) {
        const char *colon = memchr(p, ':', (size_t) (at - p));

        if (colon) {
            if (colon > p) {
                a->user = percent_decode(p, (size_t) (colon - p));
            }
            a->password = percent_decode(colon + 1, (size_t) (at - colon - 1));
        } else {
            a->password = percent_decode(p, (size_t) (at - p));
        }
        p = at + 1;
    }
    hostend = slash ? slash : p + strlen(p);
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t) (hostend - p));

        if (rb == NULL) {
            goto bad;
        }
        host = dup_range(p + 1, (size_t) (rb - p - 1));
        p = rb + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t) (hostend - p));
        const char *he = colon ? colon : hostend;

        host = dup_range(p, (size_t) (he - p));
        p = he;
    }
    if (host == NULL || host[0] == '\0') {
        goto bad;
    }
    if (*p == ':') {
        long port = strtol(p + 1, &end, 10);

        if (end == p + 1 || end != hostend || port < 1 || port > 65535) {
            goto bad;
        }
        a->port = (int) port;
    } else if (p != hostend) {
        goto bad;
    }
    if (slash && slash[1]) {
        long db = strtol(slash + 1, &end, 10);

        if (*end || db < 0) {
            goto bad;
        }
        a->db = (int) db;
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "RAGQ_VALKEY_URL: cannot resolve \"%s\": %s",
                 host, gai_strerror(rc));
        free(host);
        ragq_valkey_addr_free(a);
        return -1;
    }
    if (getnameinfo(res->ai_addr, res->ai_addrlen, hostbuf, sizeof(hostbuf),
                    NULL, 0, NI_NUMERICHOST) != 0) {
        snprintf(hostbuf, sizeof(hostbuf), "%s", host);
    }
    freeaddrinfo(res);
    free(host);
    a->host = strdup(hostbuf);
    return a->host ? 0 : -1;

bad:
    free(host);
    ragq_valkey_addr_free(a);
    snprintf(err, errlen,
             "RAGQ_VALKEY_URL \"%s\": expected "
             "redis://[[user]:password@]host[:port][/db] or unix:///path",
             url);
    return -1;
}

/* ---- hiredis adapter -------------------------------------------------- */

static void
adapter_io(int fd, unsigned events, void *data)
{
    ragq_adapter_t *a = data;

    (void) fd;
    a->entered++;
    if ((events & RAGQ_IO_READ) && !a->dead) {
        redisAsyncHandleRead(a->ac);
    }
    if ((events & RAGQ_IO_WRITE) && !a->dead) {
        redisAsyncHandleWrite(a->ac);
    }
    a->entered--;
    if (a->dead && a->entered == 0) {
        free(a);
    }
}

static void
adapter_update(ragq_adapter_t *a, unsigned events)
{
    if (a->dead || events == a->events) {
        return;
    }
    a->events = events;
    ragq_loop_io(a->loop, a->fd, events, adapter_io, a);
}

static void
adapter_add_read(void *p)
{
    ragq_adapter_t *a = p;

    adapter_update(a, a->events | RAGQ_IO_READ);
}

static void
adapter_del_read(void *p)
{
    ragq_adapter_t *a = p;

    adapter_update(a, a->events & ~RAGQ_IO_READ);
}

static void
adapter_add_write(void *p)
{
    ragq_adapter_t *a = p;

    adapter_update(a, a->events | RAGQ_IO_WRITE);
}

static void
adapter_del_write(void *p)
{
    ragq_adapter_t *a = p;

    adapter_update(a, a->events & ~RAGQ_IO_WRITE);
}

static void
adapter_cleanup(void *p)
{
    ragq_adapter_t *a = p;

    ragq_loop_io(a->loop, a->fd, 0, NULL, NULL);
    a->dead = 1;
    if (a->entered == 0) {
        free(a);
    }
}

static int
adapter_attach(ragq_loop_t *loop, redisAsyncContext *ac)
{
    ragq_adapter_t *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        return -1;
    }
    a->loop = loop;
    a->ac = ac;
    a->fd = ac->c.fd;
    ac->ev.data = a;
    ac->ev.addRead = adapter_add_read;
    ac->ev.delRead = adapter_del_read;
    ac->ev.addWrite = adapter_add_write;
    ac->ev.delWrite = adapter_del_write;
    ac->ev.cleanup = adapter_cleanup;
    return 0;
}

/* ---- connections ------------------------------------------------------ */

static void
vconn_schedule(ragq_vconn_t *vc)
{
    uint64_t d = vc->backoff_ms;

    ragq_timer_stop(vc->q->loop, &vc->connect_timer);
    if (vc->q->stopping && vc == &vc->q->blk) {
        return;
    }
    vc->backoff_ms = d * 2 > RAGQ_BACKOFF_MAX_MS ? RAGQ_BACKOFF_MAX_MS : d * 2;
    /* Half fixed, half jitter, so a fleet does not reconnect in lockstep. */
    d = d / 2 + (uint64_t) random() % (d / 2 + 1);
    ragq_timer_start(vc->q->loop, &vc->retry_timer, d);
}

static void
vconn_lost(ragq_vconn_t *vc, const char *why)
{
    ragq_queue_t *q = vc->q;

    if (why) {
        snprintf(vc->last_error, sizeof(vc->last_error), "%s", why);
    }
    if (q->started) {
        ragq_log(RAGQ_LOG_WARN, "valkey (%s connection): %s; reconnecting",
                 vc->name, vc->last_error);
    } else {
        ragq_log(RAGQ_LOG_DEBUG, "valkey (%s connection): %s", vc->name,
                 vc->last_error);
    }
    if (vc == &q->blk) {
        q->reading = 0;
        q->reserved_read = 0;
    } else {
        q->reclaiming = 0;
        q->reserved_reclaim = 0;
        q->group_creating = 0;
        q->probing = 0;
        /* The next server may not have them: EVAL until reloaded. */
        memset(q->sha, 0, sizeof(q->sha));
    }
    vconn_schedule(vc);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
    ragq_vconn_t *vc = ac->data;

    if (status == REDIS_OK || vc->ac != ac) {
        return;
    }
    /* hiredis frees ac after we return. */
    vc->ac = NULL;
    vc->ready = 0;
    vconn_lost(vc, ac->errstr);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    ragq_vconn_t *vc = ac->data;

    (void) status;
    if (vc->ac != ac) {
        return; /* our own vconn_drop */
    }
    vc->ac = NULL;
    vc->ready = 0;
    vconn_lost(vc, ac->err ? ac->errstr : "connection closed by the server");
}

static void
vconn_drop(ragq_vconn_t *vc, const char *why)
{
    redisAsyncContext *ac = vc->ac;

    vc->ac = NULL;
    vc->ready = 0;
    if (ac) {
        redisAsyncFree(ac);
    }
    vconn_lost(vc, why);
}

static void
vconn_connect_timeout(void *data)
{
    ragq_vconn_t *vc = data;
    char          why[64];

    snprintf(why, sizeof(why), "no answer within %ld ms",
             vc->q->cfg->connect_timeout_ms);
    vconn_drop(vc, why);
}

static void
handshake_reply(redisAsyncContext *ac, void *r, void *priv)
{
    ragq_vconn_t *vc = ac->data;
    redisReply   *reply = r;

    if (reply == NULL || vc->ac != ac) {
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Cannot free from a reply callback safely: let a timer do it. */
        snprintf(vc->last_error, sizeof(vc->last_error), "%s: %s",
                 (const char *) priv, reply->str);
        vc->handshake_failed = 1;
        vc->ready = 0;
        ragq_timer_start(vc->q->loop, &vc->connect_timer, 0);
        return;
    }
    if (strcmp(priv, "CLIENT ID") == 0) {
        vc->client_id = reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
        return;
    }
    if (strcmp(priv, "PING") == 0 && !vc->handshake_failed) {
        ragq_timer_stop(vc->q->loop, &vc->connect_timer);
        vc->ready = 1;
        vc->backoff_ms = RAGQ_BACKOFF_MIN_MS;
        on_vconn_ready(vc);
    }
}

static void
vconn_connect(ragq_vconn_t *vc)
{
    const ragq_valkey_addr_t *addr = vc->q->addr;
    redisAsyncContext        *ac;
    char                      db[16];

    ac = addr->path ? redisAsyncConnectUnix(addr->path)
                    : redisAsyncConnect(addr->host, addr->port);
    if (ac == NULL) {
        vconn_lost(vc, "out of memory");
        return;
    }
    if (ac->err) {
        char why[256];

        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        vconn_lost(vc, why);
        return;
    }
    if (adapter_attach(vc->q->loop, ac) < 0) {
        redisAsyncFree(ac);
        vconn_lost(vc, "out of memory");
        return;
    }
    ac->data = vc;
    vc->ac = ac;
    vc->ready = 0;
    vc->handshake_failed = 0;
    /* After attach: setting the connect callback registers write interest. */
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (addr->password) {
        if (addr->user) {
            redisAsyncCommand(ac, handshake_reply, "AUTH", "AUTH %s %s",
                              addr->user, addr->password);
        } else {
            redisAsyncCommand(ac, handshake_reply, "AUTH", "AUTH %s",
                              addr->password);
        }
    }
    if (addr->db) {
        snprintf(db, sizeof(db), "%d", addr->db);
        redisAsyncCommand(ac, handshake_reply, "SELECT", "SELECT %s", db);
    }
    if (vc == &vc->q->blk) {
        vc->client_id = 0;
        redisAsyncCommand(ac, handshake_reply, "CLIENT ID", "CLIENT ID");
    }
    redisAsyncCommand(ac, handshake_reply, "PING", "PING");
    ragq_timer_start(vc->q->loop, &vc->connect_timer,
                     (uint64_t) vc->q->cfg->connect_timeout_ms);
}

static void
vconn_retry(void *data)
{
    vconn_connect(data);
}

static void
vconn_connect_timer(void *data)
{
    ragq_vconn_t *vc = data;

    /* Either the handshake failed (last_error set) or it took too long. */
    if (vc->ac && !vc->ready && vc->handshake_failed) {
        vconn_drop(vc, NULL);
        return;
    }
    vconn_connect_timeout(vc);
}

static void
vconn_init(ragq_queue_t *q, ragq_vconn_t *vc, const char *name)
{
    vc->q = q;
    vc->name = name;
    vc->backoff_ms = RAGQ_BACKOFF_MIN_MS;
    ragq_timer_init(&vc->connect_timer, vconn_connect_timer, vc);
    ragq_timer_init(&vc->retry_timer, vconn_retry, vc);
}

/* Sends on the command connection; -1 when it is down. */
static int
qsend(ragq_queue_t *q, redisCallbackFn *fn, void *priv, int argc,
      const char **argv, const size_t *lens)
{
    if (q->cmd.ac == NULL || !q->cmd.ready) {
        return -1;
    }
    if (redisAsyncCommandArgv(q->cmd.ac, fn, priv, argc, argv, lens) !=
        REDIS_OK) {
        return -1;
    }
    if (fn) {
        q->cmd_pending++;
    }
    return 0;
}

/* ---- scripts ---------------------------------------------------------- */

/*
 * Scripts run by EVALSHA once SCRIPT LOAD has answered: EVAL would send
 * the text and have Valkey hash it again three times a job.  A NOSCRIPT
 * answer (script cache flushed, failover) falls back to EVAL and reloads.
 */
static void
script_loaded(redisAsyncContext *ac, void *r, void *priv)
{
    ragq_queue_t *q = ((ragq_vconn_t *) ac->data)->q;
    redisReply   *reply = r;
    int           which = (int) (intptr_t) priv;

    q->cmd_pending--;
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(q->sha[which], reply->str, 40);
        q->sha[which][40] = '\0';
    }
}

static void
script_load(ragq_queue_t *q, int which)
{
    const char *argv[] = {"SCRIPT", "LOAD", scripts[which]};

    q->sha[which][0] = '\0';
    qsend(q, script_loaded, (void *) (intptr_t) which, 3, argv, NULL);
}

/* argv[0] and argv[1] of a script call. */
static void
script_head(const ragq_queue_t *q, int which, const char **argv)
{
    if (q->sha[which][0]) {
        argv[0] = "EVALSHA";
        argv[1] = q->sha[which];
    } else {
        argv[0] = "EVAL";
        argv[1] = scripts[which];
    }
}

/* The script was not in the server's cache: reload it, caller re-sends. */
static int
script_missing(ragq_queue_t *q, const redisReply *reply, int which)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR ||
        strncmp(reply->str, "NOSCRIPT", 8) != 0) {
        return 0;
    }
    script_load(q, which);
    return 1;
}

/* ---- jobs and slots --------------------------------------------------- */

static unsigned
free_slots(const ragq_queue_t *q)
{
    unsigned used = q->njobs + q->reserved_read + q->reserved_reclaim;

    return used >= q->cfg->concurrency ? 0 : q->cfg->concurrency - used;
}

static void
job_unlink_free(ragq_queue_t *q, ragq_job_t *job)
{
    if (job->prev) {
        job->prev->next = job->next;
    } else {
        q->jobs = job->next;
    }
    if (job->next) {
        job->next->prev = job->prev;
    }
    q->njobs--;
    ragq_job_free(job);
}

/* Called after a job leaves: claim more, or finish a graceful stop. */
static void
slot_freed(ragq_queue_t *q)
{
    claim_more(q);
    check_drained(q);
}

static void
job_drop(ragq_queue_t *q, ragq_job_t *job)
{
    job_unlink_free(q, job);
    slot_freed(q);
}

static void
ack_entry(ragq_queue_t *q, const char *entry)
{
    const char *a1[] = {"XACK", q->k_jobs, q->k_group, entry};
    const char *a2[] = {"XDEL", q->k_jobs, entry};

    qsend(q, NULL, NULL, 4, a1, NULL);
    qsend(q, NULL, NULL, 3, a2, NULL);
}

static int
job_in_flight(const ragq_queue_t *q, const char *entry)
{
    const ragq_job_t *j;

    for (j = q->jobs; j; j = j->next) {
        if (strcmp(j->entry, entry) == 0) {
            return 1;
        }
    }
    return 0;
}

static char *
job_key(const ragq_queue_t *q, const char *id)
{
    size_t n = strlen(q->k_job_prefix) + strlen(id) + 1;
    char  *k = malloc(n);

    if (k) {
        snprintf(k, n, "%s%s", q->k_job_prefix, id);
    }
    return k;
}

static void
final_reply(redisAsyncContext *ac, void *r, void *priv)
{
    ragq_queue_t *q = ((ragq_vconn_t *) ac->data)->q;
    redisReply   *reply = r;
    ragq_job_t   *job = priv;
    long          ms = (long) (ragq_now_ms() - job->claimed_at);

    q->cmd_pending--;
    if (script_missing(q, reply, SCRIPT_FINAL)) {
        write_final(q, job);
        return;
    }
    if (reply == NULL) {
        /* Connection lost: the write may or may not have happened. */
        job->state = JOB_PARKED;
        q->cmd.ready = 0;
        check_drained(q);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        ragq_log(RAGQ_LOG_ERROR,
                 "job %s: cannot write its final state: %s; left for "
                 "reclaim",
                 job->id, reply->str);
    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        ragq_log(RAGQ_LOG_INFO,
                 "job %s was already final (run twice); acknowledged", job->id);
    } else if (job->outcome == RAGQ_JOB_FINISHED) {
        ragq_log(RAGQ_LOG_INFO,
                 "job %s finished in %ld ms (embed %ld, retrieve %ld, "
                 "generate %ld)",
                 job->id, ms, job->ms_embed, job->ms_retrieve,
                 job->ms_generate);
    } else {
        ragq_log(RAGQ_LOG_INFO,
                 "job %s failed in %ld ms (attempt %ld of %u): "
                 "%s: %s",
                 job->id, ms, job->attempts, q->cfg->max_attempts,
                 job->err.code, job->err.message);
    }
    job_drop(q, job);
}

static void
write_final(ragq_queue_t *q, ragq_job_t *job)
{
    char        ended[32], ttl[32], *err_json = NULL, *key;
    const char *argv[15];
    size_t      lens[15];
    int         i, finished = job->outcome == RAGQ_JOB_FINISHED, rc;

    key = job_key(q, job->id);
    if (!finished) {
        err_json = ragq_job_error_json(job);
    }
    if (key == NULL || (!finished && err_json == NULL)) {
        free(key);
        free(err_json);
        job->state = JOB_PARKED;
        return;
    }
    snprintf(ended, sizeof(ended), "%lld", (long long) ragq_epoch_ms());
    snprintf(ttl, sizeof(ttl), "%ld", q->cfg->result_ttl_ms);
    script_head(q, SCRIPT_FINAL, argv);
    argv[2] = "4";
    argv[3] = key;
    argv[4] = q->k_events;
    argv[5] = q->k_dead;
    argv[6] = q->k_jobs;
    argv[7] = finished ? "finished" : "failed";
    argv[8] = ended;
    argv[9] = ttl;
    argv[10] = finished ? job->result : "";
    argv[11] = finished ? job->sources_json : "";
    argv[12] = finished ? job->usage_json : "";
    argv[13] = finished ? "" : err_json;
    argv[14] = job->entry;
    for (i = 0; i < 15; i++) {
        lens[i] = strlen(argv[i]);
    }
    /* ARGV[9] job id and ARGV[10] group follow: build the full vector. */
    {
        const char *full[17];
        size_t      flens[17];

        memcpy(full, argv, sizeof(argv));
        memcpy(flens, lens, sizeof(lens));
        full[15] = job->id;
        full[16] = q->k_group;
        flens[15] = strlen(job->id);
        flens[16] = strlen(q->k_group);
        rc = qsend(q, final_reply, job, 17, full, flens);
    }
    free(key);
    free(err_json);
    job->state = rc == 0 ? JOB_WRITING : JOB_PARKED;
    if (rc != 0) {
        ragq_log(RAGQ_LOG_WARN,
                 "job %s: Valkey is down; its result waits for the "
                 "reconnection",
                 job->id);
        check_drained(q);
    }
}

static int send_release(ragq_queue_t *q, ragq_job_t *job);

static void
release_reply(redisAsyncContext *ac, void *r, void *priv)
{
    ragq_queue_t *q = ((ragq_vconn_t *) ac->data)->q;

    q->cmd_pending--;
    if (script_missing(q, r, SCRIPT_RELEASE) && send_release(q, priv) == 0) {
        return;
    }
    job_drop(q, priv);
}

static int
send_release(ragq_queue_t *q, ragq_job_t *job)
{
    char       *key = job_key(q, job->id), *err_json = ragq_job_error_json(job);
    const char *argv[7];
    int         rc = -1;

    script_head(q, SCRIPT_RELEASE, argv);
    argv[2] = "2";
    argv[3] = key ? key : "";
    argv[4] = q->k_events;
    argv[5] = err_json ? err_json : "";
    argv[6] = job->id;
    if (key != NULL && err_json != NULL) {
        rc = qsend(q, release_reply, job, 7, argv, NULL);
    }
    free(key);
    free(err_json);
    return rc;
}

/*
 * Transient errors outlasted this attempt's retries: leave the entry
 * un-acknowledged and stop keeping it alive, so it is reclaimed (by any
 * worker) after RAGQ_RECLAIM_AFTER, which is the backoff between attempts.
 */
static void
release_job(ragq_queue_t *q, ragq_job_t *job)
{
    ragq_log(RAGQ_LOG_WARN,
             "job %s: attempt %ld of %u gave up (%s: %s); another attempt "
             "after %ld ms",
             job->id, job->attempts, q->cfg->max_attempts, job->err.code,
             job->err.message, q->cfg->reclaim_after_ms);
    job->state = JOB_RELEASING;
    if (send_release(q, job) != 0) {
        job_drop(q, job);
    }
}

static void
job_done(ragq_job_t *job, void *data)
{
    ragq_queue_t *q = data;

    if (job->outcome == RAGQ_JOB_EXHAUSTED) {
        if (job->attempts < (long) q->cfg->max_attempts) {
            release_job(q, job);
            return;
        }
        job->outcome = RAGQ_JOB_FAILED;
    }
    write_final(q, job);
}

static int send_claim(ragq_queue_t *q, ragq_job_t *job);

static void
claim_reply(redisAsyncContext *ac, void *r, void *priv)
{
    ragq_queue_t *q = ((ragq_vconn_t *) ac->data)->q;
    redisReply   *reply = r;
    ragq_job_t   *job = priv;
    long long     kind;

    q->cmd_pending--;
    if (script_missing(q, reply, SCRIPT_CLAIM)) {
        if (send_claim(q, job) != 0) {
            job_drop(q, job);
        }
        return;
    }
    if (reply == NULL) {
        q->cmd.ready = 0;
        job_drop(q, job);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        ragq_log(RAGQ_LOG_ERROR, "job %s: claim failed: %s", job->id,
                 reply->type == REDIS_REPLY_ERROR ? reply->str
                                                  : "unexpected reply");
        job_drop(q, job);
        return;
    }
    kind = reply->element[0]->integer;
    if (kind != 2 || reply->elements < 5) {
        ragq_log(RAGQ_LOG_INFO, "job %s is %s; acknowledged its entry", job->id,
                 kind == 1 && reply->elements > 1 && reply->element[1]->str
                     ? reply->element[1]->str
                     : "gone (expired or deleted)");
        ack_entry(q, job->entry);
        job_drop(q, job);
        return;
    }
    job->attempts = (long) reply->element[1]->integer;
    job->query = strdup(reply->element[2]->str ? reply->element[2]->str : "");
    job->top_k = (unsigned) strtoul(
        reply->element[3]->str ? reply->element[3]->str : "0", NULL, 10);
    job->collection =
        strdup(reply->element[4]->str ? reply->element[4]->str : "");
    if (job->query == NULL || job->collection == NULL) {
        job_drop(q, job);
        return;
    }
    if (job->attempts > (long) q->cfg->max_attempts) {
        ragq_upstream_error_set(&job->err, 0, 0, "max_attempts",
                                "the job was claimed %ld times without "
                                "finishing (RAGQ_MAX_ATTEMPTS is %u); the "
                                "workers running it may have crashed",
                                job->attempts, q->cfg->max_attempts);
        job->outcome = RAGQ_JOB_FAILED;
        write_final(q, job);
        return;
    }
    if (job->query[0] == '\0') {
        ragq_upstream_error_set(&job->err, 0, 0, "bad_request",
                                "the job has an empty query");
        job->outcome = RAGQ_JOB_FAILED;
        write_final(q, job);
        return;
    }
    job->state = JOB_RUNNING;
    ragq_log(RAGQ_LOG_DEBUG, "job %s started (attempt %ld)", job->id,
             job->attempts);
    ragq_job_run(q->pipeline, job, job_done, q);
}

static int
valid_job_id(const char *s, size_t n)
{
    size_t i;

    if (n != 32) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/*
 * A stream entry [id, [field, value, ...]] now held by this consumer.
 * reclaimed: it came from XAUTOCLAIM and may be one we are running already
 * (XREADGROUP ">" only hands out entries never delivered, so the O(jobs)
 * scan is skipped for those).
 */
static void
take_entry(ragq_queue_t *q, redisReply *e, int reclaimed)
{
    redisReply *fields;
    const char *entry, *id = NULL;
    size_t      idlen = 0, i;
    ragq_job_t *job;

    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING) {
        return; /* deleted entry (XAUTOCLAIM on older servers) */
    }
    entry = e->element[0]->str;
    fields = e->element[1];
    if (fields->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i + 1 < fields->elements; i += 2) {
            if (fields->element[i]->str &&
                strcmp(fields->element[i]->str, "job") == 0 &&
                fields->element[i + 1]->str) {
                id = fields->element[i + 1]->str;
                idlen = fields->element[i + 1]->len;
            }
        }
    }
    if (id == NULL || !valid_job_id(id, idlen)) {
        ragq_log(RAGQ_LOG_WARN,
                 "stream entry %s has no valid \"job\" field; dropped", entry);
        ack_entry(q, entry);
        return;
    }
    if (reclaimed && job_in_flight(q, entry)) {
        return;
    }
    job = ragq_job_new();
    if (job == NULL || (job->entry = strdup(entry)) == NULL) {
        ragq_job_free(job);
        return;
    }
    memcpy(job->id, id, 32);
    job->id[32] = '\0';
    job->state = JOB_CLAIMING;
    job->claimed_at = ragq_now_ms();
    job->next = q->jobs;
    if (q->jobs) {
        q->jobs->prev = job;
    }
    q->jobs = job;
    q->njobs++;

    if (send_claim(q, job) != 0) {
        /* Not acked: the entry stays ours and is reclaimed later. */
        job_unlink_free(q, job);
    }
}

static int
send_claim(ragq_queue_t *q, ragq_job_t *job)
{
    char       *key = job_key(q, job->id);
    char        now[32], max[16];
    const char *argv[8];
    int         rc;

    if (key == NULL) {
        return -1;
    }
    snprintf(now, sizeof(now), "%lld", (long long) ragq_epoch_ms());
    snprintf(max, sizeof(max), "%u", q->cfg->max_attempts);
    script_head(q, SCRIPT_CLAIM, argv);
    argv[2] = "2";
    argv[3] = key;
    argv[4] = q->k_events;
    argv[5] = max;
    argv[6] = now;
    argv[7] = job->id;
    rc = qsend(q, claim_reply, job, 8, argv, NULL);
    free(key);
    return rc;
}

/* ---- claiming --------------------------------------------------------- */

static void create_group(ragq_queue_t *q);

static void
xread_reply(redisAsyncContext *ac, void *r, void *priv)
{
    ragq_queue_t *q = ((ragq_vconn_t *) ac->data)->q;
    redisReply   *reply = r, *streams;
    size_t        i, j;

    (void) priv;
    q->reading = 0;
    q->reserved_read = 0;
    if (reply == NULL) {
        q->blk.ready = 0;
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        ragq_log(RAGQ_LOG_WARN, "XREADGROUP: %s", reply->str);
        if (strncmp(reply->str, "NOGROUP", 7) == 0) {
            /* The server lost the group (restart without persistence). */
            q->group_ready = 0;
            create_group(q);
        }
        claim_more(q);
        return;
    }
    streams = reply;
    if (streams->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < streams->elements; i++) {
            redisReply *s = streams->element[i];

            if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 ||
                s->element[1]->type != REDIS_REPLY_ARRAY) {
                continue;
            }
            for (j = 0; j < s->element[1]->elements; j++) {
                take_entry(q, s->element[1]->element[j], 0);
            }
        }
    }
    claim_more(q);
}

static void
claim_more(ragq_queue_t *q)
{
    unsigned    n;
    char        count[16], block[16];
    const char *argv[11];

    if (q->stopping || !q->group_ready || q->reading || !q->blk.ready ||
        q->blk.ac == NULL || !q->cmd.ready) {
        return;
    }
    if (q->reclaim_due && !q->reclaiming) {
        q->reclaim_due = 0;
        reclaim_now(q);
    }
    n = free_slots(q);
    if (n == 0) {
        return;
    }
    snprintf(count, sizeof(count), "%u", n);
    snprintf(block, sizeof(block), "%d", RAGQ_XREAD_BLOCK_MS);
    argv[0] = "XREADGROUP";
    argv[1] = "GROUP";
    argv[2] = q->k_group;
    argv[3] = q->consumer;
    argv[4] = "COUNT";
    argv[5] = count;
    argv[6] = "BLOCK";
    argv[7] = block;
    argv[8] = "STREAMS";
    argv[9] = q->k_jobs;
    argv[10] = ">";
    if (redisAsyncCommandArgv(q->blk.ac, xread_reply, NULL, 11, argv, NULL) ==
        REDIS_OK) {
        q->reading = 1;
        q->reserved_read = n;
    }
}

static void
xautoclaim_reply(redisAsyncContext *ac, void *r, void *priv)
{
    ragq_queue_t *q = ((ragq_vconn_t *) ac->data)->q;
    redisReply   *reply = r;
    size_t        i, got = 0;

    (void) priv;
    q->cmd_pending--;
    q->reclaiming = 0;
    q->reserved_reclaim = 0;
    if (reply == NULL) {
        q->cmd.ready = 0;
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        ragq_log(RAGQ_LOG_WARN, "XAUTOCLAIM: %s", reply->str);
        check_drained(q);
        return;
    }
    /* Redis 6.2 answers [cursor, entries], 7.0+ adds [deleted ids]. */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_ARRAY) {
        snprintf(q->reclaim_cursor, sizeof(q->reclaim_cursor), "%s",
                 reply->element[0]->str);
        for (i = 0; i < reply->element[1]->elements; i++) {
            redisReply *e = reply->element[1]->element[i];

            if (e->type == REDIS_REPLY_ARRAY && e->elements >= 2) {
                if (!q->stopping) {
                    ragq_log(RAGQ_LOG_INFO, "reclaimed stream entry %s",
                             e->element[0]->str);
                    take_entry(q, e, 1);
                }
                got++;
            }
        }
    }
    if (got > 0 && strcmp(q->reclaim_cursor, "0-0") != 0 && !q->stopping) {
        ragq_timer_start(q->loop, &q->reclaim_timer, 0);
    }
    claim_more(q);
    check_drained(q);
}

static uint64_t
reclaim_period(const ragq_queue_t *q)
{
    long p = q->cfg->reclaim_after_ms / 4;

    return (uint64_t) (p < 100 ? 100 : p > 5000 ? 5000 : p);
}

static void
probe_reply(redisAsyncContext *ac, void *r, void *priv)
{
    ragq_queue_t *q = ((ragq_vconn_t *) ac->data)->q;
    redisReply   *reply = r;
    char          id[32];
    const char   *argv[3];

    (void) priv;
    q->cmd_pending--;
    q->probing = 0;
    if (reply == NULL) {
        q->cmd.ready = 0;
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0 ||
        q->stopping) {
        return;
    }
    /*
     * Something is ripe for reclaim but the blocked XREADGROUP holds every
     * free slot: wake it, and claim_more() reclaims before reading again.
     */
    q->reclaim_due = 1;
    if (q->reading && q->blk.client_id > 0) {
        snprintf(id, sizeof(id), "%lld", q->blk.client_id);
        argv[0] = "CLIENT";
        argv[1] = "UNBLOCK";
        argv[2] = id;
        qsend(q, NULL, NULL, 3, argv, NULL);
    }
}


static void
reclaim(void *data)
{
    ragq_queue_t *q = data;
    char          idle[32];
    const char   *argv[9];

    if (q->stopping) {
        return;
    }
    ragq_timer_start(q->loop, &q->reclaim_timer, reclaim_period(q));
    if (!q->group_ready || q->reclaiming || !q->cmd.ready) {
        return;
    }
    if (free_slots(q) > 0) {
        reclaim_now(q);
        return;
    }
    if (!q->reading || q->reserved_read == 0 || q->probing) {
        return; /* really full: nothing to take over now */
    }
    snprintf(idle, sizeof(idle), "%ld", q->cfg->reclaim_after_ms);
    argv[0] = "XPENDING";
    argv[1] = q->k_jobs;
    argv[2] = q->k_group;
    argv[3] = "IDLE";
    argv[4] = idle;
    argv[5] = "-";
    argv[6] = "+";
    argv[7] = "1";
    if (qsend(q, probe_reply, NULL, 8, argv, NULL) == 0) {
        q->probing = 1;
    }
}

static void
reclaim_now(ragq_queue_t *q)
{
    char        idle[32], count[16];
    unsigned    n;
    const char *argv[9];

    if (q->stopping || !q->group_ready || q->reclaiming || !q->cmd.ready) {
        return;
    }
    n = free_slots(q);
    if (n == 0) {
        return;
    }
    snprintf(idle, sizeof(idle), "%ld", q->cfg->reclaim_after_ms);
    snprintf(count, sizeof(count), "%u", n);
    argv[0] = "XAUTOCLAIM";
    argv[1] = q->k_jobs;
    argv[2] = q->k_group;
    argv[3] = q->consumer;
    argv[4] = idle;
    argv[5] = q->reclaim_cursor;
    argv[6] = "COUNT";
    argv[7] = count;
    if (qsend(q, xautoclaim_reply, NULL, 8, argv, NULL) == 0) {
        q->reclaiming = 1;
        q->reserved_reclaim = n;
    }
}

/*
 * Resets the idle time of every entry we hold, so RAGQ_RECLAIM_AFTER
 * measures a silent worker, not a long generation.
 */
static void
keepalive(void *data)
{
    ragq_queue_t *q = data;
    const char  **argv;
    ragq_job_t   *j;
    int           argc = 0;
    long          period = q->cfg->reclaim_after_ms / 3;

    ragq_timer_start(q->loop, &q->keepalive_timer,
                     (uint64_t) (period < 50 ? 50 : period));
    if (q->njobs == 0 || !q->cmd.ready) {
        return;
    }
    argv = malloc((q->njobs + 7) * sizeof(*argv));
    if (argv == NULL) {
        return;
    }
    argv[argc++] = "XCLAIM";
    argv[argc++] = q->k_jobs;
    argv[argc++] = q->k_group;
    argv[argc++] = q->consumer;
    argv[argc++] = "0";
    for (j = q->jobs; j; j = j->next) {
        if (j->state != JOB_RELEASING) {
            argv[argc++] = j->entry;
        }
    }
    argv[argc++] = "JUSTID";
    if (argc > 6) {
        qsend(q, NULL, NULL, argc, argv, NULL);
    }
    free(argv);
}

static void
group_reply(redisAsyncContext *ac, void *r, void *priv)
{
    ragq_queue_t *q = ((ragq_vconn_t *) ac->data)->q;
    redisReply   *reply = r;

    (void) priv;
    q->cmd_pending--;
    q->group_creating = 0;
    if (reply == NULL) {
        q->cmd.ready = 0;
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        ragq_log(RAGQ_LOG_ERROR, "XGROUP CREATE %s %s: %s", q->k_jobs,
                 q->k_group, reply->str);
        return;
    }
    q->group_ready = 1;
    if (!q->started) {
        q->started = 1;
        ragq_timer_stop(q->loop, &q->startup_timer);
        ragq_log(RAGQ_LOG_INFO,
                 "ready: consumer %s, stream %s, group %s, concurrency %u, "
                 "embedder %s, store %s, answerer %s",
                 q->consumer, q->k_jobs, q->k_group, q->cfg->concurrency,
                 q->cfg->embedder, q->cfg->store, q->cfg->answerer);
        ragq_timer_start(q->loop, &q->keepalive_timer, 0);
    }
    if (!q->stopping) {
        ragq_timer_start(q->loop, &q->reclaim_timer, 0);
    }
    claim_more(q);
}

static void
create_group(ragq_queue_t *q)
{
    const char *argv[] = {"XGROUP",   "CREATE", q->k_jobs,
                          q->k_group, "0",      "MKSTREAM"};

    if (q->group_creating) {
        return;
    }
    if (qsend(q, group_reply, NULL, 6, argv, NULL) == 0) {
        q->group_creating = 1;
    }
}

static void
on_vconn_ready(ragq_vconn_t *vc)
{
    ragq_queue_t *q = vc->q;
    ragq_job_t   *j, *next;

    if (q->started) {
        ragq_log(RAGQ_LOG_INFO, "valkey (%s connection): connected", vc->name);
    }
    if (vc == &q->blk) {
        claim_more(q);
        return;
    }
    for (int i = 0; i < NSCRIPTS; i++) {
        script_load(q, i);
    }
    create_group(q);
    for (j = q->jobs; j; j = next) {
        next = j->next;
        if (j->state == JOB_PARKED) {
            write_final(q, j);
        }
    }
}

/* ---- start and stop --------------------------------------------------- */

static void
startup_timeout(void *data)
{
    ragq_queue_t *q = data;
    char          where[300];

    if (q->addr->path) {
        snprintf(where, sizeof(where), "unix:%s", q->addr->path);
    } else {
        snprintf(where, sizeof(where), "%s:%d", q->addr->host, q->addr->port);
    }
    ragq_log(RAGQ_LOG_ERROR,
             "Valkey at %s (RAGQ_VALKEY_URL) is unreachable: %s (gave up "
             "after %ld ms)",
             where, q->cmd.last_error[0] ? q->cmd.last_error : "no answer",
             q->cfg->connect_timeout_ms);
    q->exit_code = 1;
    ragq_loop_stop(q->loop);
}

static void
exit_now(void *data)
{
    ragq_queue_t *q = data;

    ragq_loop_stop(q->loop);
}

static void
check_drained(ragq_queue_t *q)
{
    ragq_job_t *j;

    if (!q->stopping || ragq_timer_active(&q->exit_timer)) {
        return;
    }
    for (j = q->jobs; j; j = j->next) {
        if (j->state != JOB_PARKED) {
            return;
        }
    }
    if (q->njobs == 0 && q->cmd_pending > 0) {
        return; /* final writes and acks still on the wire */
    }
    if (q->njobs > 0) {
        return; /* parked results wait for Valkey until the grace ends */
    }
    ragq_log(RAGQ_LOG_INFO, "drained: no job in flight; exiting");
    ragq_timer_start(q->loop, &q->exit_timer, 0);
}

static void
grace_over(void *data)
{
    ragq_queue_t *q = data;
    ragq_job_t   *j;

    ragq_log(RAGQ_LOG_WARN,
             "shutdown grace (%ld ms) is over: %u job(s) left un-acknowledged "
             "for another worker to reclaim",
             q->cfg->shutdown_grace_ms, q->njobs);
    for (j = q->jobs; j; j = j->next) {
        ragq_job_abort(j);
    }
    ragq_loop_stop(q->loop);
}

void
ragq_queue_stop(ragq_queue_t *q)
{
    if (q->stopping) {
        ragq_log(RAGQ_LOG_WARN, "second signal: exiting now");
        grace_over(q);
        return;
    }
    q->stopping = 1;
    if (!q->started) {
        ragq_loop_stop(q->loop);
        return;
    }
    ragq_log(RAGQ_LOG_INFO,
             "stopping: no new claims, waiting up to %ld ms for %u job(s)",
             q->cfg->shutdown_grace_ms, q->njobs);
    ragq_timer_stop(q->loop, &q->reclaim_timer);
    ragq_timer_stop(q->loop, &q->blk.retry_timer);
    /* Closing the blocked XREADGROUP stops claims at once. */
    if (q->blk.ac) {
        redisAsyncContext *ac = q->blk.ac;

        q->blk.ac = NULL;
        q->blk.ready = 0;
        redisAsyncFree(ac);
    }
    ragq_timer_stop(q->loop, &q->blk.connect_timer);
    ragq_timer_start(q->loop, &q->grace_timer,
                     (uint64_t) q->cfg->shutdown_grace_ms);
    check_drained(q);
}

static char *
key_of(const char *prefix, const char *suffix)
{
    size_t n = strlen(prefix) + strlen(suffix) + 2;
    char  *k = malloc(n);

    if (k) {
        snprintf(k, n, "%s:%s", prefix, suffix);
    }
    return k;
}

ragq_queue_t *
ragq_queue_new(ragq_loop_t *loop, ragq_pipeline_t *pipeline,
               const ragq_config_t *cfg, const ragq_valkey_addr_t *addr)
{
    ragq_queue_t *q = calloc(1, sizeof(*q));

    if (q == NULL) {
        return NULL;
    }
    q->loop = loop;
    q->pipeline = pipeline;
    q->cfg = cfg;
    q->addr = addr;
    if (cfg->consumer && cfg->consumer[0]) {
        snprintf(q->consumer, sizeof(q->consumer), "%s", cfg->consumer);
    } else {
        char host[200];

        if (gethostname(host, sizeof(host)) != 0) {
            snprintf(host, sizeof(host), "worker");
        }
        host[sizeof(host) - 1] = '\0';
        snprintf(q->consumer, sizeof(q->consumer), "%s-%d", host,
                 (int) getpid());
    }
    q->k_jobs = key_of(cfg->prefix, "jobs");
    q->k_group = key_of(cfg->prefix, "workers");
    q->k_events = key_of(cfg->prefix, "events");
    q->k_dead = key_of(cfg->prefix, "dead");
    q->k_job_prefix = key_of(cfg->prefix, "job:");
    if (!q->k_jobs || !q->k_group || !q->k_events || !q->k_dead ||
        !q->k_job_prefix) {
        ragq_queue_free(q);
        return NULL;
    }
    snprintf(q->reclaim_cursor, sizeof(q->reclaim_cursor), "0-0");
    vconn_init(q, &q->cmd, "command");
    vconn_init(q, &q->blk, "claim");
    ragq_timer_init(&q->startup_timer, startup_timeout, q);
    ragq_timer_init(&q->keepalive_timer, keepalive, q);
    ragq_timer_init(&q->reclaim_timer, reclaim, q);
    ragq_timer_init(&q->grace_timer, grace_over, q);
    ragq_timer_init(&q->exit_timer, exit_now, q);
    return q;
}

void
ragq_queue_start(ragq_queue_t *q)
{
    /* A little past the connect timeout, so one full try always fits. */
    ragq_timer_start(q->loop, &q->startup_timer,
                     (uint64_t) q->cfg->connect_timeout_ms + 100);
    vconn_connect(&q->cmd);
    vconn_connect(&q->blk);
}

int
ragq_queue_exit_code(const ragq_queue_t *q)
{
    return q->exit_code;
}

void
ragq_queue_free(ragq_queue_t *q)
{
    ragq_vconn_t *vcs[2];
    int           i;

    if (q == NULL) {
        return;
    }
    vcs[0] = &q->cmd;
    vcs[1] = &q->blk;
    for (i = 0; i < 2; i++) {
        redisAsyncContext *ac = vcs[i]->ac;

        if (vcs[i]->q == NULL) {
            continue;
        }
        ragq_timer_stop(q->loop, &vcs[i]->connect_timer);
        ragq_timer_stop(q->loop, &vcs[i]->retry_timer);
        vcs[i]->ac = NULL;
        vcs[i]->ready = 0;
        if (ac) {
            /* Pending callbacks run with NULL; jobs are still listed. */
            redisAsyncFree(ac);
        }
    }
    while (q->jobs) {
        job_unlink_free(q, q->jobs);
    }
    if (q->loop) {
        ragq_timer_stop(q->loop, &q->startup_timer);
        ragq_timer_stop(q->loop, &q->keepalive_timer);
        ragq_timer_stop(q->loop, &q->reclaim_timer);
        ragq_timer_stop(q->loop, &q->grace_timer);
        ragq_timer_stop(q->loop, &q->exit_timer);
    }
    free(q->k_jobs);
    free(q->k_group);
    free(q->k_events);
    free(q->k_dead);
    free(q->k_job_prefix);
    free(q);
}
