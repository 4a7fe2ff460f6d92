/*
 * valkey_conn.c: a connection of valkey_conn.h on hiredis 0.14's async API.
 *
 * hiredis 0.14 traps handled here: it has no timeouts (connect timeout and
 * reconnect backoff are loop timers); a failed connect calls the connect
 * callback and frees the context without the disconnect callback; on any
 * teardown every pending reply callback runs first with reply == NULL; the
 * connect/disconnect callbacks must not free the context; cleanup() can run
 * inside our own read handler, so the adapter defers its own free.
 *
 * The adapter and the async context are the part a transport of the
 * worker's own (a non-blocking socket on the loop, TLS, hiredis kept only
 * as a reply reader) replaces; valkey_conn.h does not change with it.
 * Pending callbacks are already ours (ragq_vcmd_t), in sending order.
 */

#include "valkey_conn.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retry.h"

#define RAGQ_RECONNECT_MIN_MS 100
#define RAGQ_RECONNECT_MAX_MS 5000

typedef struct {
    ragq_loop_t       *loop;
    redisAsyncContext *ac;
    int                fd;
    unsigned           events;
    int                entered, dead;
} ragq_adapter_t;

/*
 * A command's callback and its argument, the privdata hiredis hands back
 * with the reply.  Kept on a free list: one per command in flight.
 */
typedef struct ragq_vcmd_s ragq_vcmd_t;

struct ragq_vcmd_s {
    ragq_vconn_t       *vc;
    ragq_vconn_reply_cb cb;
    void               *priv;
    ragq_vcmd_t        *next;
};

struct ragq_vconn_s {
    ragq_loop_t              *loop;
    const ragq_valkey_addr_t *addr;
    const char               *name;
    long                      connect_timeout_ms;
    unsigned                  flags;
    const ragq_vconn_hooks_t *hooks;
    void                     *owner;

    redisAsyncContext *ac;
    int                ready, handshake_failed, closed;
    long long          client_id; /* CLIENT ID, for CLIENT UNBLOCK */
    long               pending;
    ragq_backoff_t     backoff;
    ragq_timer_t       connect_timer, retry_timer;
    ragq_vcmd_t       *free_cmds;
    char               last_error[256];
};

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

/* ---- connection ------------------------------------------------------- */

static void
vconn_schedule(ragq_vconn_t *vc)
{
    ragq_timer_stop(vc->loop, &vc->connect_timer);
    if (vc->closed) {
        return;
    }
    ragq_timer_start(vc->loop, &vc->retry_timer,
                     ragq_backoff_next(&vc->backoff));
}

static void
vconn_lost(ragq_vconn_t *vc, const char *why)
{
    if (why) {
        snprintf(vc->last_error, sizeof(vc->last_error), "%s", why);
    }
    vc->hooks->lost(vc, vc->last_error, vc->owner);
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
        return; /* our own vconn_drop or ragq_vconn_close */
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
vconn_connect_timeout(ragq_vconn_t *vc)
{
    char why[64];

    snprintf(why, sizeof(why), "no answer within %ld ms",
             vc->connect_timeout_ms);
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
        ragq_timer_start(vc->loop, &vc->connect_timer, 0);
        return;
    }
    if (strcmp(priv, "CLIENT ID") == 0) {
        vc->client_id = reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
        return;
    }
    if (strcmp(priv, "PING") == 0 && !vc->handshake_failed) {
        ragq_timer_stop(vc->loop, &vc->connect_timer);
        vc->ready = 1;
        ragq_backoff_reset(&vc->backoff);
        vc->hooks->ready(vc, vc->owner);
    }
}

void
ragq_vconn_connect(ragq_vconn_t *vc)
{
    const ragq_valkey_addr_t *addr = vc->addr;
    redisAsyncContext        *ac;
    char                      db[16];

    if (vc->closed) {
        return;
    }
    ac = addr->transport == RAGQ_VALKEY_UNIX
             ? redisAsyncConnectUnix(addr->path)
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
    if (adapter_attach(vc->loop, ac) < 0) {
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
    if (vc->flags & RAGQ_VCONN_CLIENT_ID) {
        vc->client_id = 0;
        redisAsyncCommand(ac, handshake_reply, "CLIENT ID", "CLIENT ID");
    }
    redisAsyncCommand(ac, handshake_reply, "PING", "PING");
    ragq_timer_start(vc->loop, &vc->connect_timer,
                     (uint64_t) vc->connect_timeout_ms);
}

static void
vconn_retry(void *data)
{
    ragq_vconn_connect(data);
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

ragq_vconn_t *
ragq_vconn_new(ragq_loop_t *loop, const ragq_valkey_addr_t *addr,
               const char *name, long connect_timeout_ms, unsigned flags,
               const ragq_vconn_hooks_t *hooks, void *owner)
{
    ragq_vconn_t *vc = calloc(1, sizeof(*vc));

    if (vc == NULL) {
        return NULL;
    }
    vc->loop = loop;
    vc->addr = addr;
    vc->name = name;
    vc->connect_timeout_ms = connect_timeout_ms;
    vc->flags = flags;
    vc->hooks = hooks;
    vc->owner = owner;
    ragq_backoff_init(&vc->backoff, RAGQ_RECONNECT_MIN_MS,
                      RAGQ_RECONNECT_MAX_MS);
    ragq_timer_init(&vc->connect_timer, vconn_connect_timer, vc);
    ragq_timer_init(&vc->retry_timer, vconn_retry, vc);
    return vc;
}

/* ---- commands --------------------------------------------------------- */

static void
on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ragq_vcmd_t        *c = privdata;
    ragq_vconn_t       *vc = c->vc;
    ragq_vconn_reply_cb cb = c->cb;
    void               *priv = c->priv;

    (void) ac;
    c->next = vc->free_cmds;
    vc->free_cmds = c;
    vc->pending--;
    if (r == NULL) {
        /* Only a teardown answers NULL: the connection is going away. */
        vc->ready = 0;
    }
    cb(vc->owner, r, priv);
}

int
ragq_vconn_send(ragq_vconn_t *vc, ragq_vconn_reply_cb cb, void *priv, int argc,
                const char **argv, const size_t *lens)
{
    ragq_vcmd_t *c = NULL;

    if (vc->ac == NULL || !vc->ready) {
        return -1;
    }
    if (cb) {
        c = vc->free_cmds;
        if (c) {
            vc->free_cmds = c->next;
        } else if ((c = malloc(sizeof(*c))) == NULL) {
            return -1;
        }
        c->vc = vc;
        c->cb = cb;
        c->priv = priv;
    }
    if (redisAsyncCommandArgv(vc->ac, c ? on_reply : NULL, c, argc, argv,
                              lens) != REDIS_OK) {
        if (c) {
            c->next = vc->free_cmds;
            vc->free_cmds = c;
        }
        return -1;
    }
    if (c) {
        vc->pending++;
    }
    return 0;
}

int
ragq_vconn_ready(const ragq_vconn_t *vc)
{
    return vc->ac != NULL && vc->ready;
}

long
ragq_vconn_pending(const ragq_vconn_t *vc)
{
    return vc->pending;
}

long long
ragq_vconn_client_id(const ragq_vconn_t *vc)
{
    return vc->client_id;
}

const char *
ragq_vconn_name(const ragq_vconn_t *vc)
{
    return vc->name;
}

const char *
ragq_vconn_last_error(const ragq_vconn_t *vc)
{
    return vc->last_error;
}

void
ragq_vconn_close(ragq_vconn_t *vc)
{
    redisAsyncContext *ac = vc->ac;

    vc->closed = 1;
    ragq_timer_stop(vc->loop, &vc->connect_timer);
    ragq_timer_stop(vc->loop, &vc->retry_timer);
    vc->ac = NULL;
    vc->ready = 0;
    if (ac) {
        /* Pending callbacks run now, with NULL. */
        redisAsyncFree(ac);
    }
}

void
ragq_vconn_free(ragq_vconn_t *vc)
{
    ragq_vcmd_t *c;

    if (vc == NULL) {
        return;
    }
    ragq_vconn_close(vc);
    while ((c = vc->free_cmds) != NULL) {
        vc->free_cmds = c->next;
        free(c);
    }
    free(vc);
}
