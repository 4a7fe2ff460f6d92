/*
 * valkey_wire.c: the bytes a Valkey connection sends (valkey_conn_int.h):
 * commands written as RESP straight into one output buffer, the ring of
 * their callbacks in sending order (RESP answers in that order), and the
 * writes, plain or TLS, posted once per loop turn (flush_timer) so that
 * the commands of one turn leave in one write.
 */

#include "valkey_conn_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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

size_t
ragq_vconn_decimal(char *p, size_t v)
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
    p += ragq_vconn_decimal(p, (size_t) argc);
    *p++ = '\r';
    *p++ = '\n';
    for (i = 0; i < argc; i++) {
        len = lens ? lens[i] : strlen(argv[i]);
        *p++ = '$';
        p += ragq_vconn_decimal(p, len);
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
        ragq_loop_io(vc->net->loop, vc->fd, events, ragq_vc_io, vc);
    }
}

/* What the socket must be watched for now. */
void
ragq_vc_update_watch(ragq_vconn_t *vc)
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
int
ragq_vc_flush(ragq_vconn_t *vc)
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
            ragq_vc_fail(vc, err, RAGQ_VLOSS_NET);
            return -1;
        }
        vc->ooff += (size_t) n;
    }
    if (vc->ooff == vc->olen) {
        vc->ooff = vc->olen = 0;
    }
    ragq_vc_update_watch(vc);
    return 0;
}

void
ragq_vc_flush_posted(void *data)
{
    ragq_vconn_t *vc = data;

    if (vc->state == VC_HANDSHAKE || vc->state == VC_READY) {
        ragq_vc_flush(vc);
    }
}

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

ragq_vrec_t
ragq_vc_ring_pop(ragq_vconn_t *vc)
{
    ragq_vrec_t r = vc->ring[vc->rhead];

    vc->rhead = (vc->rhead + 1) & (vc->rcap - 1);
    vc->rcount--;
    return r;
}

/* Queues one command and its record; the write happens on the next turn. */
int
ragq_vc_queue_command(ragq_vconn_t *vc, ragq_vconn_reply_cb cb, void *priv,
                      int hs, int argc, const char **argv, const size_t *lens)
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
