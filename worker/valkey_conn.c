/*
 * valkey_conn.c: a connection of valkey_conn.h: a non-blocking socket on
 * the worker's loop, TLS through valkey_tls.c, RESP written here and read
 * by hiredis's redisReader.
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
 * Their callbacks wait in a ring, in sending order, as RESP answers do.
 */

#include "valkey_conn.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "retry.h"
#include "valkey_sentinel.h"

#define RAGQ_RECONNECT_MIN_MS 100
#define RAGQ_RECONNECT_MAX_MS 5000
/* After a loss the server caused on purpose (a replica, AUTH refused):
 * no quick retries, the next try waits at least this long. */
#define RAGQ_RECONNECT_REFUSED_MS 1000
#define RAGQ_READ_CHUNK           16384
/* TCP keep-alive: a peer gone without a word is noticed in ~60 s. */
#define RAGQ_KEEPIDLE_S  30
#define RAGQ_KEEPINTVL_S 10
#define RAGQ_KEEPCNT     3

enum {
    VC_IDLE,
    VC_LOCATING,
    VC_RESOLVING,
    VC_CONNECTING,
    VC_TLS,
    VC_HANDSHAKE,
    VC_READY
};

/* Handshake commands, answered in this order. */
enum { HS_NONE, HS_AUTH, HS_SELECT, HS_CLIENT_ID, HS_ROLE, HS_PING };

typedef struct {
    ragq_vconn_reply_cb cb;
    void               *priv;
    int                 hs; /* HS_*: a handshake command of ours */
    char                cmd[16];
} ragq_vrec_t;

struct ragq_vconn_s {
    ragq_vnet_t              *net;
    const char               *name;
    unsigned                  flags;
    const ragq_vconn_hooks_t *hooks;
    void                     *owner;

    int                 state, closed, healthy, watch_ok, roles_unchecked;
    unsigned            epoch, failures;
    int                 fd;
    unsigned            io_events;
    ragq_tls_session_t *tls;
    unsigned            tls_read_wants, tls_write_wants;
    ragq_lookup_t      *lookup;
    redisReader        *reader;

    char         host[256]; /* the server tried (name or address) */
    int          port;
    char         peer[300];
    ragq_addrs_t addrs;
    int          addr_i;

    char  *obuf;
    size_t olen, ooff, ocap;

    ragq_vrec_t *ring;
    size_t       rcap, rhead, rcount;
    int          hs_left;
    long         pending;
    long long    client_id;

    long           extra_timeout_ms;
    int            loss; /* RAGQ_VLOSS_* of the last failure */
    uint64_t       last_progress;
    ragq_backoff_t backoff;
    ragq_timer_t   connect_timer, retry_timer, flush_timer, reply_timer;
    char           last_error[512];
};

static void vconn_fail(ragq_vconn_t *vc, const char *why, int kind);
static void vconn_io(int fd, unsigned events, void *data);
static void start_connect(ragq_vconn_t *vc);

/* ---- output ------------------------------------------------------------ */

static int
obuf_reserve(ragq_vconn_t *vc, size_t n)
{
    size_t cap;
    char  *b;

    if (vc->ooff > 0 && vc->ooff == vc->olen) {
        vc->ooff = vc->olen = 0;
    }
    if (vc->olen + n <= vc->ocap) {
        return 0;
    }
    if (vc->ooff > 0) {
        memmove(vc->obuf, vc->obuf + vc->ooff, vc->olen - vc->ooff);
        vc->olen -= vc->ooff;
        vc->ooff = 0;
        if (vc->olen + n <= vc->ocap) {
            return 0;
        }
    }
    cap = vc->ocap ? vc->ocap : 4096;
    while (cap < vc->olen + n) {
        cap *= 2;
    }
    b = realloc(vc->obuf, cap);
    if (b == NULL) {
        return -1;
    }
    vc->obuf = b;
    vc->ocap = cap;
    return 0;
}

static size_t
put_uint(char *p, size_t v)
{
    char   tmp[24];
    size_t n = 0, i;

    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++) {
        p[i] = tmp[n - 1 - i];
    }
    return n;
}

/* One command in RESP ("*N\r\n" then "$LEN\r\nBYTES\r\n" per argument). */
static int
obuf_command(ragq_vconn_t *vc, int argc, const char **argv, const size_t *lens)
{
    size_t need = 16, len;
    char  *p;
    int    i;

    for (i = 0; i < argc; i++) {
        need += (lens ? lens[i] : strlen(argv[i])) + 24;
    }
    if (obuf_reserve(vc, need) != 0) {
        return -1;
    }
    p = vc->obuf + vc->olen;
    *p++ = '*';
    p += put_uint(p, (size_t) argc);
    *p++ = '\r';
    *p++ = '\n';
    for (i = 0; i < argc; i++) {
        len = lens ? lens[i] : strlen(argv[i]);
        *p++ = '$';
        p += put_uint(p, len);
        *p++ = '\r';
        *p++ = '\n';
        memcpy(p, argv[i], len);
        p += len;
        *p++ = '\r';
        *p++ = '\n';
    }
    vc->olen = (size_t) (p - vc->obuf);
    return 0;
}

static void
watch(ragq_vconn_t *vc, unsigned events)
{
    if (events != vc->io_events && vc->fd >= 0) {
        vc->io_events = events;
        ragq_loop_io(vc->net->loop, vc->fd, events, vconn_io, vc);
    }
}

/* What the socket must be watched for now. */
static void
update_watch(ragq_vconn_t *vc)
{
    unsigned ev = RAGQ_IO_READ;

    if (vc->state == VC_CONNECTING) {
        ev = RAGQ_IO_WRITE;
    } else if (vc->state == VC_TLS) {
        ev = vc->tls_read_wants == RAGQ_TLS_WANT_WRITE ? RAGQ_IO_WRITE
                                                       : RAGQ_IO_READ;
    } else if ((vc->olen > vc->ooff &&
                vc->tls_write_wants != RAGQ_TLS_WANT_READ &&
                !ragq_timer_active(&vc->flush_timer)) ||
               vc->tls_read_wants == RAGQ_TLS_WANT_WRITE) {
        ev |= RAGQ_IO_WRITE;
    }
    watch(vc, ev);
}

/* Writes what it can; 0, or -1 after vconn_fail. */
static int
flush(ragq_vconn_t *vc)
{
    char     err[300];
    ssize_t  n;
    unsigned want = 0;

    vc->tls_write_wants = 0;
    while (vc->olen > vc->ooff) {
        if (vc->tls) {
            n = ragq_tls_write(vc->tls, vc->obuf + vc->ooff,
                               vc->olen - vc->ooff, &want, err, sizeof(err));
            if (n < 0 && want) {
                vc->tls_write_wants = want;
                break;
            }
        } else {
            n = send(vc->fd, vc->obuf + vc->ooff, vc->olen - vc->ooff,
                     MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            }
            if (n < 0) {
                snprintf(err, sizeof(err), "write: %s", strerror(errno));
            }
        }
        if (n < 0) {
            vconn_fail(vc, err, RAGQ_VLOSS_NET);
            return -1;
        }
        vc->ooff += (size_t) n;
    }
    if (vc->ooff == vc->olen) {
        vc->ooff = vc->olen = 0;
    }
    update_watch(vc);
    return 0;
}

static void
flush_posted(void *data)
{
    ragq_vconn_t *vc = data;

    if (vc->state == VC_HANDSHAKE || vc->state == VC_READY) {
        flush(vc);
    }
}

/* ---- the ring of callbacks ------------------------------------------- */

static ragq_vrec_t *
ring_push(ragq_vconn_t *vc)
{
    if (vc->rcount == vc->rcap) {
        size_t       cap = vc->rcap ? vc->rcap * 2 : 64, i;
        ragq_vrec_t *r = malloc(cap * sizeof(*r));

        if (r == NULL) {
            return NULL;
        }
        for (i = 0; i < vc->rcount; i++) {
            r[i] = vc->ring[(vc->rhead + i) & (vc->rcap - 1)];
        }
        free(vc->ring);
        vc->ring = r;
        vc->rcap = cap;
        vc->rhead = 0;
    }
    return &vc->ring[(vc->rhead + vc->rcount++) & (vc->rcap - 1)];
}

static ragq_vrec_t
ring_pop(ragq_vconn_t *vc)
{
    ragq_vrec_t r = vc->ring[vc->rhead];

    vc->rhead = (vc->rhead + 1) & (vc->rcap - 1);
    vc->rcount--;
    return r;
}

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
    vconn_fail(vc, why, RAGQ_VLOSS_HUNG);
}

/* Queues one command and its record; the write happens on the next turn. */
static int
queue_command(ragq_vconn_t *vc, ragq_vconn_reply_cb cb, void *priv, int hs,
              int argc, const char **argv, const size_t *lens)
{
    ragq_vrec_t *r;
    size_t       olen = vc->olen;

    if (obuf_command(vc, argc, argv, lens) != 0 ||
        (r = ring_push(vc)) == NULL) {
        vc->olen = olen;
        return -1;
    }
    r->cb = cb;
    r->priv = priv;
    r->hs = hs;
    /* The command's first word, for the error and ok hooks. */
    {
        size_t n = lens ? lens[0] : strlen(argv[0]), i;

        n = n < sizeof(r->cmd) - 1 ? n : sizeof(r->cmd) - 1;
        for (i = 0; i < n; i++) {
            char c = argv[0][i];
            r->cmd[i] = (char) (c >= 'a' && c <= 'z' ? c - 32 : c);
        }
        r->cmd[n] = '\0';
    }
    if (vc->rcount == 1) {
        vc->last_progress = ragq_now_ms();
        if (!ragq_timer_active(&vc->reply_timer) && vc->state == VC_READY) {
            ragq_timer_start(
                vc->net->loop, &vc->reply_timer,
                (uint64_t) (vc->net->reply_timeout_ms + vc->extra_timeout_ms));
        }
    }
    if (!ragq_timer_active(&vc->flush_timer) && vc->tls_write_wants == 0 &&
        !(vc->io_events & RAGQ_IO_WRITE)) {
        ragq_timer_start(vc->net->loop, &vc->flush_timer, 0);
    }
    return 0;
}

int
ragq_vconn_send(ragq_vconn_t *vc, ragq_vconn_reply_cb cb, void *priv, int argc,
                const char **argv, const size_t *lens)
{
    if (vc->state != VC_READY || argc < 1) {
        return -1;
    }
    if (queue_command(vc, cb, priv, HS_NONE, argc, argv, lens) != 0) {
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
        r = ring_pop(vc);
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
static void
vconn_fail(ragq_vconn_t *vc, const char *why, int kind)
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
    vconn_fail(vc, why, RAGQ_VLOSS_HUNG);
}

static void
retry_now(void *data)
{
    ragq_vconn_connect(data);
}

/* ---- handshake ---------------------------------------------------------- */

static void
handshake_start(ragq_vconn_t *vc)
{
    const ragq_valkey_addr_t *a = vc->net->addr;
    const char               *user, *pass, *argv[3];
    char                      db[16];
    int                       sentinel = (vc->flags & RAGQ_VCONN_SENTINEL) != 0;
    int                       rc = 0;

    vc->state = VC_HANDSHAKE;
    vc->reader = redisReaderCreate();
    if (vc->reader == NULL) {
        vconn_fail(vc, "out of memory", RAGQ_VLOSS_NET);
        return;
    }
    user = sentinel ? vc->net->sentinel_user : a->user;
    pass = sentinel ? vc->net->sentinel_password : a->password;
    vc->hs_left = 0;
    if (pass) {
        argv[0] = "AUTH";
        argv[1] = user ? user : pass;
        argv[2] = pass;
        rc |= queue_command(vc, NULL, NULL, HS_AUTH, user ? 3 : 2, argv, NULL);
        vc->hs_left++;
    }
    if (!sentinel && a->db) {
        snprintf(db, sizeof(db), "%d", a->db);
        argv[0] = "SELECT";
        argv[1] = db;
        rc |= queue_command(vc, NULL, NULL, HS_SELECT, 2, argv, NULL);
        vc->hs_left++;
    }
    if (vc->flags & RAGQ_VCONN_CLIENT_ID) {
        argv[0] = "CLIENT";
        argv[1] = "ID";
        rc |= queue_command(vc, NULL, NULL, HS_CLIENT_ID, 2, argv, NULL);
        vc->hs_left++;
    }
    argv[0] = sentinel ? "PING" : "ROLE";
    rc |= queue_command(vc, NULL, NULL, sentinel ? HS_PING : HS_ROLE, 1, argv,
                        NULL);
    vc->hs_left++;
    if (rc != 0) {
        vconn_fail(vc, "out of memory", RAGQ_VLOSS_NET);
        return;
    }
    flush(vc);
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
            vconn_fail(vc, why, RAGQ_VLOSS_REFUSED);
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
            vconn_fail(vc, why, RAGQ_VLOSS_ROLE);
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

static void
dispatch(ragq_vconn_t *vc, redisReply *r)
{
    ragq_vrec_t rec;
    unsigned    epoch = vc->epoch;
    char        why[600];

    if (vc->rcount == 0) {
        if ((vc->flags & RAGQ_VCONN_SUBSCRIBER) && vc->hooks->message) {
            vc->hooks->message(vc, r, vc->owner);
            return;
        }
        vconn_fail(vc, "a reply nobody asked for (protocol error)",
                   RAGQ_VLOSS_NET);
        return;
    }
    rec = ring_pop(vc);
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
            vconn_fail(vc, why, RAGQ_VLOSS_ROLE);
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
            vconn_fail(vc, "connection closed by the server", RAGQ_VLOSS_NET);
            return;
        }
        if (n < 0) {
            vconn_fail(vc, err, RAGQ_VLOSS_NET);
            return;
        }
        vc->last_progress = ragq_now_ms();
        if (redisReaderFeed(vc->reader, buf, (size_t) n) != REDIS_OK) {
            vconn_fail(vc, "out of memory", RAGQ_VLOSS_NET);
            return;
        }
        for (;;) {
            reply = NULL;
            if (redisReaderGetReply(vc->reader, &reply) != REDIS_OK) {
                snprintf(err, sizeof(err), "protocol error: %s",
                         vc->reader->errstr);
                vconn_fail(vc, err, RAGQ_VLOSS_NET);
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
    update_watch(vc);
}

/* ---- connecting --------------------------------------------------------- */

static void
tls_step(ragq_vconn_t *vc)
{
    char     err[400], why[800];
    unsigned want = 0;
    int      rc;

    rc = ragq_tls_handshake(vc->tls, &want, err, sizeof(err));
    if (rc < 0) {
        snprintf(why, sizeof(why), "%s: %s", vc->peer, err);
        vconn_fail(vc, why, RAGQ_VLOSS_TLS);
        return;
    }
    if (rc == 0) {
        vc->tls_read_wants = want;
        update_watch(vc);
        return;
    }
    vc->tls_read_wants = 0;
    handshake_start(vc);
}

static void
connected(ragq_vconn_t *vc)
{
    char err[400];

    if (vc->net->tls && vc->net->addr->transport != RAGQ_VALKEY_UNIX) {
        vc->tls = ragq_tls_session_new(vc->net->tls, vc->fd, vc->host, err,
                                       sizeof(err));
        if (vc->tls == NULL) {
            vconn_fail(vc, err, RAGQ_VLOSS_NET);
            return;
        }
        vc->state = VC_TLS;
        tls_step(vc);
        return;
    }
    handshake_start(vc);
}

static void
set_socket_options(int fd)
{
    int on = 1, idle = RAGQ_KEEPIDLE_S, intvl = RAGQ_KEEPINTVL_S,
        cnt = RAGQ_KEEPCNT;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* connect() to addrs[addr_i], or on to the next address after a failure. */
static void
try_address(ragq_vconn_t *vc)
{
    const struct sockaddr *sa;
    char                   why[400];
    int                    fd, err = 0;

    while (vc->addr_i < vc->addrs.n) {
        sa = (const struct sockaddr *) &vc->addrs.addr[vc->addr_i];
        fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
        if (fd < 0) {
            err = errno;
            vc->addr_i++;
            continue;
        }
        set_socket_options(fd);
        if (connect(fd, sa, vc->addrs.len[vc->addr_i]) == 0 ||
            errno == EINPROGRESS) {
            vc->fd = fd;
            vc->state = VC_CONNECTING;
            update_watch(vc);
            return;
        }
        err = errno;
        close(fd);
        vc->addr_i++;
    }
    snprintf(why, sizeof(why), "connect to %s: %s", vc->peer, strerror(err));
    vconn_fail(vc, why, RAGQ_VLOSS_NET);
}

static void
connect_done(ragq_vconn_t *vc)
{
    int       err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(vc->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err == 0) {
        connected(vc);
        return;
    }
    ragq_loop_io(vc->net->loop, vc->fd, 0, NULL, NULL);
    close(vc->fd);
    vc->fd = -1;
    vc->io_events = 0;
    vc->addr_i++;
    if (vc->addr_i < vc->addrs.n) {
        try_address(vc);
        return;
    }
    {
        char why[400];

        snprintf(why, sizeof(why), "connect to %s: %s", vc->peer,
                 strerror(err));
        vconn_fail(vc, why, RAGQ_VLOSS_NET);
    }
}

static void
vconn_io(int fd, unsigned events, void *data)
{
    ragq_vconn_t *vc = data;
    unsigned      epoch = vc->epoch;

    (void) fd;
    switch (vc->state) {
    case VC_CONNECTING:
        connect_done(vc);
        return;
    case VC_TLS:
        tls_step(vc);
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
        flush(vc);
    }
}

static void
resolved(void *data, const ragq_addrs_t *addrs, const char *err)
{
    ragq_vconn_t *vc = data;

    vc->lookup = NULL;
    if (addrs == NULL) {
        vconn_fail(vc, err, RAGQ_VLOSS_NET);
        return;
    }
    vc->addrs = *addrs;
    vc->addr_i = 0;
    try_address(vc);
}

/* host:port known: resolve it (off the loop unless numeric), connect. */
static void
start_connect(ragq_vconn_t *vc)
{
    ragq_valkey_hostport_fmt(vc->host, vc->port, vc->peer, sizeof(vc->peer));
    vc->addr_i = 0;
    if (ragq_resolve_numeric(vc->host, vc->port, &vc->addrs) == 0) {
        try_address(vc);
        return;
    }
    vc->state = VC_RESOLVING;
    vc->lookup =
        ragq_resolve(vc->net->resolver, vc->host, vc->port, resolved, vc);
    if (vc->lookup == NULL) {
        vconn_fail(vc, "cannot start a name lookup", RAGQ_VLOSS_NET);
    }
}

static void
connect_unix(ragq_vconn_t *vc)
{
    struct sockaddr_un *sun = (struct sockaddr_un *) &vc->addrs.addr[0];
    const char         *path = vc->net->addr->path;

    snprintf(vc->peer, sizeof(vc->peer), "unix:%s", path);
    memset(&vc->addrs, 0, sizeof(vc->addrs));
    if (strlen(path) >= sizeof(sun->sun_path)) {
        vconn_fail(vc, "the socket path is too long", RAGQ_VLOSS_NET);
        return;
    }
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    vc->addrs.len[0] = sizeof(*sun);
    vc->addrs.n = 1;
    vc->addr_i = 0;
    try_address(vc);
}

void
ragq_vconn_connect(ragq_vconn_t *vc)
{
    const ragq_valkey_addr_t *a = vc->net->addr;
    long                      limit = vc->net->connect_timeout_ms;

    if (vc->closed || vc->state != VC_IDLE) {
        return;
    }
    ragq_timer_stop(vc->net->loop, &vc->retry_timer);
    vc->epoch++;
    if (a->transport == RAGQ_VALKEY_SENTINEL &&
        !(vc->flags & RAGQ_VCONN_SENTINEL)) {
        /* The sentinels are asked one after the other. */
        limit *= a->nsentinels + 1;
    }
    ragq_timer_start(vc->net->loop, &vc->connect_timer, (uint64_t) limit);
    if (vc->flags & RAGQ_VCONN_SENTINEL) {
        start_connect(vc);
    } else if (a->transport == RAGQ_VALKEY_UNIX) {
        connect_unix(vc);
    } else if (a->transport == RAGQ_VALKEY_SENTINEL) {
        vc->state = VC_LOCATING;
        snprintf(vc->peer, sizeof(vc->peer), "the primary \"%s\"", a->master);
        ragq_sentinel_locate(vc->net->sentinel, vc);
    } else {
        snprintf(vc->host, sizeof(vc->host), "%s", a->host);
        vc->port = a->port;
        start_connect(vc);
    }
}

void
ragq_vconn_located(ragq_vconn_t *vc, const char *host, int port)
{
    if (vc->state != VC_LOCATING) {
        return;
    }
    snprintf(vc->host, sizeof(vc->host), "%s", host);
    vc->port = port;
    start_connect(vc);
}

void
ragq_vconn_locate_failed(ragq_vconn_t *vc, const char *why)
{
    if (vc->state == VC_LOCATING) {
        vc->state = VC_IDLE; /* the sentinel forgot us already */
        vconn_fail(vc, why, RAGQ_VLOSS_NET);
    }
}

void
ragq_vconn_moved(ragq_vconn_t *vc, const char *host, int port, const char *why)
{
    if (vc->closed || vc->state == VC_LOCATING) {
        return;
    }
    if (vc->state != VC_IDLE && vc->port == port &&
        strcmp(vc->host, host) == 0) {
        return;
    }
    ragq_backoff_reset(&vc->backoff);
    if (vc->state == VC_IDLE) {
        ragq_vconn_connect(vc); /* waiting for a retry: go now */
        return;
    }
    vconn_fail(vc, why, RAGQ_VLOSS_MOVED);
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
    ragq_timer_init(&vc->flush_timer, flush_posted, vc);
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
