/*
 * valkey_conn.h: one connection to Valkey on the worker loop, and all its
 * user sees of it: commands sent with a reply callback, and two hooks, one
 * when the connection is ready (after every (re)connect) and one when it
 * is lost.  The connection does the rest on its own: connect, handshake
 * (AUTH, SELECT, CLIENT ID when asked, PING) within a connect timeout, and
 * reconnection with a jittered doubling backoff after any loss, until it
 * is closed.  Replies are hiredis's redisReply (hiredis stays the reply
 * parser); how the bytes travel is this file's business alone.
 * Implemented in valkey_conn.c.
 */

#ifndef RAGQ_VALKEY_CONN_H
#define RAGQ_VALKEY_CONN_H

#include <stddef.h>

#include "loop.h"
#include "valkey_url.h"

struct redisReply;

typedef struct ragq_vconn_s ragq_vconn_t;

/*
 * The answer to one command.  reply is NULL when the connection went away
 * before it came (lost, closed or freed); it is valid only during the call.
 * owner is the one given to ragq_vconn_new, priv the one given with the
 * command.
 */
typedef void (*ragq_vconn_reply_cb)(void *owner, struct redisReply *reply,
                                    void *priv);

typedef struct {
    /* The handshake succeeded: commands can be sent. */
    void (*ready)(ragq_vconn_t *vc, void *owner);
    /*
     * The connection failed or was lost (why says how; the callbacks of
     * the commands in flight have run with NULL).  A reconnection is
     * scheduled unless the connection was closed.
     */
    void (*lost)(ragq_vconn_t *vc, const char *why, void *owner);
} ragq_vconn_hooks_t;

/* Flags of ragq_vconn_new. */
#define RAGQ_VCONN_CLIENT_ID 1u /* learn CLIENT ID, for CLIENT UNBLOCK */

/*
 * name appears in log lines ("command", "claim").  addr and hooks must
 * outlive the connection.  Nothing happens until ragq_vconn_connect.
 */
ragq_vconn_t *ragq_vconn_new(ragq_loop_t *loop, const ragq_valkey_addr_t *addr,
                             const char *name, long connect_timeout_ms,
                             unsigned flags, const ragq_vconn_hooks_t *hooks,
                             void *owner);

/* Starts connecting (and reconnecting after any loss). */
void ragq_vconn_connect(ragq_vconn_t *vc);

/*
 * Sends one command (argv/lens as hiredis's Argv functions; lens NULL means
 * strlen).  cb NULL: the reply is read and dropped.  Returns -1 when the
 * connection is not ready or the command could not be queued; cb is then
 * never called.
 */
int ragq_vconn_send(ragq_vconn_t *vc, ragq_vconn_reply_cb cb, void *priv,
                    int argc, const char **argv, const size_t *lens);

/* Ready for commands: connected and handshake done. */
int ragq_vconn_ready(const ragq_vconn_t *vc);

/* Commands sent with a callback that has not run yet. */
long ragq_vconn_pending(const ragq_vconn_t *vc);

/* CLIENT ID of the current connection (RAGQ_VCONN_CLIENT_ID), else 0. */
long long ragq_vconn_client_id(const ragq_vconn_t *vc);

const char *ragq_vconn_name(const ragq_vconn_t *vc);

/* Why the last connect or connection failed, "" if it never did. */
const char *ragq_vconn_last_error(const ragq_vconn_t *vc);

/*
 * Closes the connection now and for good: no reconnection, no lost hook.
 * Callbacks of commands in flight run with NULL.
 */
void ragq_vconn_close(ragq_vconn_t *vc);

/* ragq_vconn_close, then frees it.  NULL is fine. */
void ragq_vconn_free(ragq_vconn_t *vc);

#endif
