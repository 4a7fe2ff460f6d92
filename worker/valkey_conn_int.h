/*
 * valkey_conn_int.h: what the files of one Valkey connection share
 * (valkey_conn.h), and nobody else: the connection's state and the calls
 * between valkey_conn.c (its life: handshake, replies, deadlines, loss and
 * retry), valkey_wire.c (the bytes out: RESP, the output buffer, the ring
 * of callbacks) and valkey_connect.c (finding, resolving and reaching the
 * server, TLS included).
 */

#ifndef RAGQ_VALKEY_CONN_INT_H
#define RAGQ_VALKEY_CONN_INT_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "retry.h"
#include "valkey_conn.h"

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

/* valkey_conn.c */
void ragq_vc_fail(ragq_vconn_t *vc, const char *why, int kind);
void ragq_vc_io(int fd, unsigned events, void *data);
void ragq_vc_handshake_start(ragq_vconn_t *vc);

/* valkey_wire.c */
int ragq_vc_queue_command(ragq_vconn_t *vc, ragq_vconn_reply_cb cb, void *priv,
                          int hs, int argc, const char **argv,
                          const size_t *lens);
ragq_vrec_t ragq_vc_ring_pop(ragq_vconn_t *vc);
int         ragq_vc_flush(ragq_vconn_t *vc);
void        ragq_vc_flush_posted(void *data);
void        ragq_vc_update_watch(ragq_vconn_t *vc);

/* valkey_connect.c */
void ragq_vc_tls_step(ragq_vconn_t *vc);
void ragq_vc_connect_done(ragq_vconn_t *vc);

#endif
