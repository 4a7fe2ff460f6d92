/*
 * valkey_conn.c: a connection of valkey_conn.h: a non-blocking socket on
 * the worker's loop (reached by valkey_connect.c, written by
 * valkey_wire.c), TLS through valkey_tls.c, replies read by hiredis's
 * redisReader and dispatched here, the handshake, the deadlines, and what
 * a loss does.
 *
 * States: IDLE (waiting to reconnect, or closed) -> LOCATING (asking the
 * sentinels) -> RESOLVING (a lookup thread) -> CONNECTING -> TLS ->
 * HANDSHAKE -> READY.  Any failure tears everything down (teardown), runs
 * the callbacks still waiting with NULL, calls the lost hook and schedules
 * the next try.  Callbacks may send, and may tear the connection down:
 * after every callback the reply loop checks the connection's epoch, which
 * every teardown bumps.
 *
 * Commands go into one output buffer and are written on the next turn of
 * the loop (flush_timer), so the commands of one turn leave in one write.
 * Their callbacks wait in a ring, in sending order, as RESP answers do;
 * a subscriber's pushed messages are not answers and bypass it.
 */

#include "valkey_conn_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "valkey_sentinel.h"

/* ---- deadline and sending ------------------------------------------ */

static void
reply_deadline(void *data)
{
    ragq_vconn_t *vc = data;
    uint64_t      limit, idle;
    char          why[128];

    if (vc->rcount == 0 || vc->state != VC_READY) {
        return;
    }
    limit = (uint64_t) (vc->net->reply_timeout_ms + vc->extra_timeout_ms);
    idle = ragq_now_ms() - vc->last_progress;
    if (idle < limit) {
        ragq_timer_start(vc->net->loop, &vc->reply_timer, limit - idle);
        return;
    }
    snprintf(why, sizeof(why),
             "no reply within %ld ms (RAGQ_VALKEY_TIMEOUT); the server "
             "seems hung",
             (long) limit);
    ragq_vc_fail(vc, why, RAGQ_VLOSS_HUNG);
}

int
ragq_vconn_send(ragq_vconn_t *vc, ragq_vconn_reply_cb cb, void *priv, int argc,
                const char **argv, const size_t *lens)
{
    if (vc->state != VC_READY || argc < 1) {
        return -1;
    }
    if (ragq_vc_queue_command(vc, cb, priv, HS_NONE, argc, argv, lens) != 0) {
        return -1;
    }
    if (cb) {
        vc->pending++;
    }
    return 0;
}

/* ---- teardown and retry ---------------------------------------------- */

/* Closes everything of the current try; callbacks waiting get NULL. */
static void
teardown(ragq_vconn_t *vc)
{
    ragq_vrec_t r;

    vc->epoch++;
    if (vc->state == VC_LOCATING && vc->net->sentinel) {
        ragq_sentinel_cancel(vc->net->sentinel, vc);
    }
    vc->state = VC_IDLE;
    if (vc->lookup) {
        ragq_resolve_cancel(vc->lookup);
        vc->lookup = NULL;
    }
    if (vc->fd >= 0) {
        ragq_loop_io(vc->net->loop, vc->fd, 0, NULL, NULL);
        ragq_tls_session_free(vc->tls);
        vc->tls = NULL;
        close(vc->fd);
        vc->fd = -1;
    }
    vc->io_events = 0;
    vc->tls_read_wants = vc->tls_write_wants = 0;
    if (vc->reader) {
        redisReaderFree(vc->reader);
        vc->reader = NULL;
    }
    vc->olen = vc->ooff = 0;
    vc->client_id = 0;
    ragq_timer_stop(vc->net->loop, &vc->connect_timer);
    ragq_timer_stop(vc->net->loop, &vc->flush_timer);
    ragq_timer_stop(vc->net->loop, &vc->reply_timer);
    /* A callback may send (refused: not ready) or close; never reconnect
     * synchronously, so the ring is only ever drained here. */
    while (vc->rcount > 0) {
        r = ragq_vc_ring_pop(vc);
        if (r.hs == HS_NONE && r.cb) {
            vc->pending--;
            r.cb(vc->owner, NULL, r.priv);
        }
    }
}

static void
schedule_retry(ragq_vconn_t *vc, int refused)
{
    if (vc->closed || (vc->flags & RAGQ_VCONN_NO_RETRY)) {
        return;
    }
    if (refused && vc->backoff.step_ms < RAGQ_RECONNECT_REFUSED_MS) {
        vc->backoff.step_ms = RAGQ_RECONNECT_REFUSED_MS;
    }
    ragq_timer_start(vc->net->loop, &vc->retry_timer,
                     ragq_backoff_next(&vc->backoff));
}

/*
 * The current try or connection failed (kind: RAGQ_VLOSS_*).  When the
 * server answered that it will not serve us (not a network fault),
 * retries slow down.
 */
void
ragq_vc_fail(ragq_vconn_t *vc, const char *why, int kind)
{
    int refused = kind == RAGQ_VLOSS_ROLE || kind == RAGQ_VLOSS_REFUSED ||
                  kind == RAGQ_VLOSS_TLS;

    snprintf(vc->last_error, sizeof(vc->last_error), "%s", why);
    vc->loss = kind;
    teardown(vc);
    vc->failures++;
    vc->healthy = 0;
    if (vc->closed) {
        return;
    }
    vc->hooks->lost(vc, vc->last_error, vc->owner);
    if (!vc->closed && vc->state == VC_IDLE) {
        schedule_retry(vc, refused);
    }
}

static void
connect_deadline(void *data)
{
    ragq_vconn_t *vc = data;
    char          why[128];

    snprintf(why, sizeof(why), "no answer within %ld ms (RAGQ_CONNECT_TIMEOUT)",
             vc->net->connect_timeout_ms);
    ragq_vc_fail(vc, why, RAGQ_VLOSS_HUNG);
}

static void
retry_now(void *data)
{
    ragq_vconn_connect(data);
}

/* ---- handshake ---------------------------------------------------------- */

void
ragq_vc_handshake_start(ragq_vconn_t *vc)
{
    const ragq_valkey_addr_t *a = vc->net->addr;
    const char               *user, *pass, *argv[3];
    char                      db[16];
    int                       sentinel = (vc->flags & RAGQ_VCONN_SENTINEL) != 0;
    int                       rc = 0;

    vc->state = VC_HANDSHAKE;
    vc->reader = redisReaderCreate();
    if (vc->reader == NULL) {
        ragq_vc_fail(vc, "out of memory", RAGQ_VLOSS_NET);
        return;
    }
    user = sentinel ? vc->net->sentinel_user : a->user;
    pass = sentinel ? vc->net->sentinel_password : a->password;
    vc->hs_left = 0;
    if (pass) {
        argv[0] = "AUTH";
        argv[1] = user ? user : pass;
        argv[2] = pass;
        rc |= ragq_vc_queue_command(vc, NULL, NULL, HS_AUTH, user ? 3 : 2, argv,
                                    NULL);
        vc->hs_left++;
    }
    if (!sentinel && a->db) {
        snprintf(db, sizeof(db), "%d", a->db);
        argv[0] = "SELECT";
        argv[1] = db;
        rc |= ragq_vc_queue_command(vc, NULL, NULL, HS_SELECT, 2, argv, NULL);
        vc->hs_left++;
    }
    if (vc->flags & RAGQ_VCONN_CLIENT_ID) {
        argv[0] = "CLIENT";
        argv[1] = "ID";
        rc |=
            ragq_vc_queue_command(vc, NULL, NULL, HS_CLIENT_ID, 2, argv, NULL);
        vc->hs_left++;
    }
    argv[0] = sentinel ? "PING" : "ROLE";
    rc |= ragq_vc_queue_command(vc, NULL, NULL, sentinel ? HS_PING : HS_ROLE, 1,
                                argv, NULL);
    vc->hs_left++;
    if (rc != 0) {
        ragq_vc_fail(vc, "out of memory", RAGQ_VLOSS_NET);
        return;
    }
    ragq_vc_flush(vc);
}

static const char *const hs_names[] = {"",          "AUTH", "SELECT",
                                       "CLIENT ID", "ROLE", "PING"};

/* One handshake answer; may fail the connection. */
static void
handshake_reply(ragq_vconn_t *vc, int hs, redisReply *r)
{
    char why[700];

    if (r->type == REDIS_REPLY_ERROR) {
        if (hs == HS_CLIENT_ID) {
            vc->client_id = 0; /* no CLIENT UNBLOCK then; not fatal */
        } else if (hs == HS_ROLE && (strncmp(r->str, "NOPERM", 6) == 0 ||
                                     strncmp(r->str, "ERR unknown", 11) == 0)) {
            /* Not allowed to ask: READONLY on a write still tells. */
            if (!vc->roles_unchecked) {
                vc->roles_unchecked = 1;
                ragq_log(RAGQ_LOG_WARN,
                         "valkey (%s connection): cannot check that %s is "
                         "the primary (ROLE: %s); add +role to the ACL",
                         vc->name, vc->peer, r->str);
            }
        } else {
            snprintf(why, sizeof(why), "%s: %s", hs_names[hs], r->str);
            ragq_vc_fail(vc, why, RAGQ_VLOSS_REFUSED);
            return;
        }
    } else if (hs == HS_CLIENT_ID) {
        vc->client_id = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    } else if (hs == HS_ROLE) {
        const char *role = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                                   r->element[0]->type == REDIS_REPLY_STRING
                               ? r->element[0]->str
                               : "?";

        if (strcmp(role, "master") != 0) {
            snprintf(why, sizeof(why), "%s is not the primary (ROLE %s)%s",
                     vc->peer, role,
                     vc->net->sentinel ? ""
                                       : "; RAGQ_VALKEY_URL must name "
                                         "the primary, or use Sentinel");
            ragq_vc_fail(vc, why, RAGQ_VLOSS_ROLE);
            return;
        }
    }
    if (--vc->hs_left > 0) {
        return;
    }
    ragq_timer_stop(vc->net->loop, &vc->connect_timer);
    vc->state = VC_READY;
    vc->failures = 0;
    if (vc->rcount > 0) {
        vc->last_progress = ragq_now_ms();
    }
    vc->hooks->ready(vc, vc->owner);
}

/* ---- replies ------------------------------------------------------------ */

/* An error that means the server is no longer the primary. */
static int
role_error(const char *s)
{
    return strncmp(s, "READONLY", 8) == 0 ||
           strncmp(s, "MASTERDOWN", 10) == 0 ||
           (strncmp(s, "UNBLOCKED", 9) == 0 && strstr(s, "state changed"));
}

/*
 * A message a subscribed server pushes (RESP2: ["message", channel,
 * payload] or ["pmessage", pattern, channel, payload]).  It may come while
 * a command waits (Sentinel writes +switch-master just before the pong of
 * our keep-alive PING), so it is told by its shape, not by the ring.  No
 * command a subscriber sends is answered with that shape: AUTH, SELECT,
 * CLIENT ID and PING before SUBSCRIBE not with an array, ROLE with one
 * that starts with the role, SUBSCRIBE with "subscribe" and a subscribed
 * PING with "pong" (both matched in order, as any reply).
 */
static int
pushed_message(const redisReply *r)
{
    const redisReply *kind;

    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
        return 0;
    }
    kind = r->element[0];
    if (kind->type != REDIS_REPLY_STRING) {
        return 0;
    }
    return (r->elements == 3 && strcmp(kind->str, "message") == 0) ||
           (r->elements == 4 && strcmp(kind->str, "pmessage") == 0);
}

static void
dispatch(ragq_vconn_t *vc, redisReply *r)
{
    ragq_vrec_t rec;
    unsigned    epoch = vc->epoch;
    char        why[600];

    if ((vc->flags & RAGQ_VCONN_SUBSCRIBER) && vc->hooks->message &&
        (vc->rcount == 0 || pushed_message(r))) {
        /* Taken from the ring, it would answer the command waiting and
         * that command's own reply would then be dropped as pushed. */
        vc->hooks->message(vc, r, vc->owner);
        return;
    }
    if (vc->rcount == 0) {
        ragq_vc_fail(vc, "a reply nobody asked for (protocol error)",
                     RAGQ_VLOSS_NET);
        return;
    }
    rec = ragq_vc_ring_pop(vc);
    if (rec.hs != HS_NONE) {
        handshake_reply(vc, rec.hs, r);
        return;
    }
    if (rec.cb) {
        vc->pending--;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        if (vc->hooks->error) {
            vc->hooks->error(vc, rec.cmd, r, vc->owner);
        }
        if (rec.cb && vc->epoch == epoch) {
            rec.cb(vc->owner, r, rec.priv);
        }
        if (vc->epoch == epoch && role_error(r->str)) {
            snprintf(why, sizeof(why), "%s is no longer the primary (%s: %s)%s",
                     vc->peer, rec.cmd, r->str,
                     vc->net->sentinel ? ""
                                       : "; RAGQ_VALKEY_URL must name the "
                                         "primary, or use Sentinel");
            ragq_vc_fail(vc, why, RAGQ_VLOSS_ROLE);
        }
        return;
    }
    if (!vc->healthy) {
        /* Only a command that worked proves the server serves us. */
        vc->healthy = 1;
        ragq_backoff_reset(&vc->backoff);
    }
    if (vc->watch_ok && vc->hooks->ok) {
        vc->hooks->ok(vc, rec.cmd, vc->owner);
    }
    if (rec.cb && vc->epoch == epoch) {
        rec.cb(vc->owner, r, rec.priv);
    }
}

/* Reads until the socket has nothing more; replies are dispatched as
 * they complete. */
static void
read_replies(ragq_vconn_t *vc)
{
    char     buf[RAGQ_READ_CHUNK], err[300];
    unsigned epoch = vc->epoch, want = 0;
    ssize_t  n;
    void    *reply;

    vc->tls_read_wants = 0;
    for (;;) {
        if (vc->tls) {
            n = ragq_tls_read(vc->tls, buf, sizeof(buf), &want, err,
                              sizeof(err));
            if (n < 0 && want) {
                vc->tls_read_wants = want;
                break;
            }
        } else {
            n = recv(vc->fd, buf, sizeof(buf), 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            }
            if (n < 0) {
                snprintf(err, sizeof(err), "read: %s", strerror(errno));
            }
        }
        if (n == 0) {
            ragq_vc_fail(vc, "connection closed by the server", RAGQ_VLOSS_NET);
            return;
        }
        if (n < 0) {
            ragq_vc_fail(vc, err, RAGQ_VLOSS_NET);
            return;
        }
        vc->last_progress = ragq_now_ms();
        if (redisReaderFeed(vc->reader, buf, (size_t) n) != REDIS_OK) {
            ragq_vc_fail(vc, "out of memory", RAGQ_VLOSS_NET);
            return;
        }
        for (;;) {
            reply = NULL;
            if (redisReaderGetReply(vc->reader, &reply) != REDIS_OK) {
                snprintf(err, sizeof(err), "protocol error: %s",
                         vc->reader->errstr);
                ragq_vc_fail(vc, err, RAGQ_VLOSS_NET);
                return;
            }
            if (reply == NULL) {
                break;
            }
            dispatch(vc, reply);
            freeReplyObject(reply);
            if (vc->epoch != epoch) {
                return;
            }
        }
        if (!vc->tls && n < (ssize_t) sizeof(buf)) {
            break; /* drained: saves the recv that would say EAGAIN */
        }
    }
    if (vc->rcount == 0) {
        ragq_timer_stop(vc->net->loop, &vc->reply_timer);
    }
    ragq_vc_update_watch(vc);
}

/* ---- socket events ------------------------------------------------------ */

void
ragq_vc_io(int fd, unsigned events, void *data)
{
    ragq_vconn_t *vc = data;
    unsigned      epoch = vc->epoch;

    (void) fd;
    switch (vc->state) {
    case VC_CONNECTING:
        ragq_vc_connect_done(vc);
        return;
    case VC_TLS:
        ragq_vc_tls_step(vc);
        return;
    case VC_HANDSHAKE:
    case VC_READY:
        break;
    default:
        return;
    }
    /* TLS: a read may need the socket writable and a write readable. */
    if ((events & RAGQ_IO_READ) ||
        ((events & RAGQ_IO_WRITE) &&
         vc->tls_read_wants == RAGQ_TLS_WANT_WRITE)) {
        read_replies(vc);
        if (vc->epoch != epoch) {
            return;
        }
    }
    if (vc->olen > vc->ooff && ((events & RAGQ_IO_WRITE) ||
                                vc->tls_write_wants == RAGQ_TLS_WANT_READ)) {
        ragq_vc_flush(vc);
    }
}

/* ---- life ---------------------------------------------------------------- */

ragq_vconn_t *
ragq_vconn_new(ragq_vnet_t *net, const char *name, unsigned flags,
               const ragq_vconn_hooks_t *hooks, void *owner)
{
    ragq_vconn_t *vc = calloc(1, sizeof(*vc));

    if (vc == NULL) {
        return NULL;
    }
    vc->net = net;
    vc->name = name;
    vc->flags = flags;
    vc->hooks = hooks;
    vc->owner = owner;
    vc->fd = -1;
    ragq_backoff_init(&vc->backoff, RAGQ_RECONNECT_MIN_MS,
                      RAGQ_RECONNECT_MAX_MS);
    ragq_timer_init(&vc->connect_timer, connect_deadline, vc);
    ragq_timer_init(&vc->retry_timer, retry_now, vc);
    ragq_timer_init(&vc->flush_timer, ragq_vc_flush_posted, vc);
    ragq_timer_init(&vc->reply_timer, reply_deadline, vc);
    if (net->sentinel && !(flags & RAGQ_VCONN_SENTINEL)) {
        ragq_sentinel_watch(net->sentinel, vc);
    }
    return vc;
}

void
ragq_vconn_set_target(ragq_vconn_t *vc, const char *host, int port)
{
    snprintf(vc->host, sizeof(vc->host), "%s", host);
    vc->port = port;
}

void
ragq_vconn_set_extra_timeout(ragq_vconn_t *vc, long ms)
{
    vc->extra_timeout_ms = ms;
}

void
ragq_vconn_watch_ok(ragq_vconn_t *vc, int on)
{
    vc->watch_ok = on;
}

int
ragq_vconn_ready(const ragq_vconn_t *vc)
{
    return vc->state == VC_READY;
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
ragq_vconn_peer(const ragq_vconn_t *vc)
{
    return vc->peer;
}

const char *
ragq_vconn_last_error(const ragq_vconn_t *vc)
{
    return vc->last_error;
}

int
ragq_vconn_loss(const ragq_vconn_t *vc)
{
    return vc->loss;
}

unsigned
ragq_vconn_failures(const ragq_vconn_t *vc)
{
    return vc->failures;
}

void
ragq_vconn_disconnect(ragq_vconn_t *vc)
{
    ragq_timer_stop(vc->net->loop, &vc->retry_timer);
    teardown(vc);
}

void
ragq_vconn_close(ragq_vconn_t *vc)
{
    vc->closed = 1;
    ragq_timer_stop(vc->net->loop, &vc->retry_timer);
    teardown(vc);
}

void
ragq_vconn_free(ragq_vconn_t *vc)
{
    if (vc == NULL) {
        return;
    }
    ragq_vconn_close(vc);
    if (vc->net->sentinel && !(vc->flags & RAGQ_VCONN_SENTINEL)) {
        ragq_sentinel_unwatch(vc->net->sentinel, vc);
    }
    free(vc->obuf);
    free(vc->ring);
    free(vc);
}
