/*
 * valkey_conn.h: one connection to Valkey on the worker loop, and all its
 * user sees of it: commands sent with a reply callback, and hooks: when
 * the connection is ready (after every (re)connect), when it is lost, and
 * optionally on every error reply, on every good reply, and on pushed
 * messages (a subscriber).  The connection does the rest on its own: find
 * the server (the URL's host, or the primary the sentinels name), resolve
 * its name off the loop (resolver.h), connect, TLS (valkey_tls.h), the
 * handshake (AUTH, SELECT, CLIENT ID when asked, then ROLE, which must say
 * master), all within the connect timeout; then a reply deadline (commands
 * waiting and no byte for RAGQ_VALKEY_TIMEOUT: the server is taken for
 * hung), TCP keep-alive, and reconnection with a jittered doubling backoff
 * (retry.h) after any loss, until it is closed.  An error reply that says
 * the server is no longer the primary (READONLY, MASTERDOWN, UNBLOCKED by a
 * role change) drops the connection after its callback ran, so the next
 * connect finds the primary again.  Replies are hiredis's redisReply:
 * hiredis 0.14 is only the reply parser (redisReader); the socket, the
 * bytes and TLS are this file's.  Implemented in valkey_conn.c.
 */

#ifndef RAGQ_VALKEY_CONN_H
#define RAGQ_VALKEY_CONN_H

#include <stddef.h>

#include "loop.h"
#include "resolver.h"
#include "valkey_tls.h"
#include "valkey_url.h"

struct redisReply;
struct ragq_sentinel_s;

/* What every connection of a program shares (valkey_net.c sets it up). */
typedef struct {
    ragq_loop_t              *loop;
    const ragq_valkey_addr_t *addr;
    ragq_tls_t               *tls; /* rediss://: the TLS context, else NULL */
    ragq_resolver_t          *resolver;
    struct ragq_sentinel_s   *sentinel; /* redis+sentinel://, else NULL */
    long connect_timeout_ms; /* find + resolve + connect + TLS + handshake */
    long reply_timeout_ms;   /* no byte while commands wait: dropped */
    const char *sentinel_user, *sentinel_password; /* AUTH to sentinels */
} ragq_vnet_t;

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
    /*
     * Optional: an error reply to command cmd (its first word, upper
     * case), before the command's own callback (which may be none).
     */
    void (*error)(ragq_vconn_t *vc, const char *cmd,
                  const struct redisReply *reply, void *owner);
    /* Optional, when ragq_vconn_watch_ok is on: a good reply to cmd. */
    void (*ok)(ragq_vconn_t *vc, const char *cmd, void *owner);
    /*
     * Optional (RAGQ_VCONN_SUBSCRIBER): a pushed message ("message",
     * "pmessage"), even while a command waits, or a reply no command
     * waits for.
     */
    void (*message)(ragq_vconn_t *vc, struct redisReply *reply, void *owner);
} ragq_vconn_hooks_t;

/* Flags of ragq_vconn_new. */
#define RAGQ_VCONN_CLIENT_ID  1u /* learn CLIENT ID, for CLIENT UNBLOCK */
#define RAGQ_VCONN_SENTINEL   2u /* to a sentinel (ragq_vconn_set_target) */
#define RAGQ_VCONN_SUBSCRIBER 4u /* pushed messages go to hooks->message */
#define RAGQ_VCONN_NO_RETRY   8u /* after a loss, wait for ragq_vconn_connect */

/*
 * name appears in log lines ("command", "claim").  net and hooks must
 * outlive the connection.  Nothing happens until ragq_vconn_connect.
 */
ragq_vconn_t *ragq_vconn_new(ragq_vnet_t *net, const char *name, unsigned flags,
                             const ragq_vconn_hooks_t *hooks, void *owner);

/* Starts connecting (and reconnecting after any loss). */
void ragq_vconn_connect(ragq_vconn_t *vc);

/*
 * Sends one command (argv/lens as hiredis's Argv functions; lens NULL means
 * strlen).  cb NULL: the reply is read and dropped.  Returns -1 when the
 * connection is not ready; cb is then never called.
 */
int ragq_vconn_send(ragq_vconn_t *vc, ragq_vconn_reply_cb cb, void *priv,
                    int argc, const char **argv, const size_t *lens);

/* Ready for commands: connected and handshake done. */
int ragq_vconn_ready(const ragq_vconn_t *vc);

/* The decimal text of v at p (room for 20 digits), unterminated; its
 * length.  For numeric arguments built without printf. */
size_t ragq_vconn_decimal(char *p, size_t v);

/* Commands sent with a callback that has not run yet. */
long ragq_vconn_pending(const ragq_vconn_t *vc);

/* CLIENT ID of the current connection (RAGQ_VCONN_CLIENT_ID), else 0. */
long long ragq_vconn_client_id(const ragq_vconn_t *vc);

const char *ragq_vconn_name(const ragq_vconn_t *vc);

/* "HOST:PORT" (or "unix:PATH") of the server connected or tried last. */
const char *ragq_vconn_peer(const ragq_vconn_t *vc);

/* Why the last connect or connection failed, "" if it never did. */
const char *ragq_vconn_last_error(const ragq_vconn_t *vc);

/* What kind of failure the last one was, for logging once per kind. */
enum {
    RAGQ_VLOSS_NET,     /* unreachable, refused, reset, closed, DNS */
    RAGQ_VLOSS_HUNG,    /* no answer within a deadline */
    RAGQ_VLOSS_ROLE,    /* not (or no longer) the primary */
    RAGQ_VLOSS_REFUSED, /* AUTH / SELECT / PING refused */
    RAGQ_VLOSS_TLS,     /* TLS handshake failed (certificate...) */
    RAGQ_VLOSS_MOVED    /* Sentinel: the primary moved */
};
int ragq_vconn_loss(const ragq_vconn_t *vc);

/* Consecutive failed connects or losses since the connection was last
 * ready. */
unsigned ragq_vconn_failures(const ragq_vconn_t *vc);

/*
 * More time for replies on this connection, for commands that block in
 * the server (XREADGROUP BLOCK): the deadline is RAGQ_VALKEY_TIMEOUT plus
 * ms.
 */
void ragq_vconn_set_extra_timeout(ragq_vconn_t *vc, long ms);

/* Calls hooks->ok on good replies (to clear a fault), or stops. */
void ragq_vconn_watch_ok(ragq_vconn_t *vc, int on);

/* RAGQ_VCONN_SENTINEL: where the next connect goes. */
void ragq_vconn_set_target(ragq_vconn_t *vc, const char *host, int port);

/*
 * The primary moved (Sentinel): unless already connected or connecting to
 * host:port, drop the connection (lost hook, why) and reconnect at once.
 */
void ragq_vconn_moved(ragq_vconn_t *vc, const char *host, int port,
                      const char *why);

/* For valkey_sentinel.c: the primary to connect to, or why there is none. */
void ragq_vconn_located(ragq_vconn_t *vc, const char *host, int port);
void ragq_vconn_locate_failed(ragq_vconn_t *vc, const char *why);

/*
 * Drops the connection now without the lost hook and without a retry
 * (callbacks in flight run with NULL); ragq_vconn_connect starts again.
 * May be called from the connection's own callbacks.
 */
void ragq_vconn_disconnect(ragq_vconn_t *vc);

/*
 * Closes the connection now and for good: no reconnection, no lost hook.
 * Callbacks of commands in flight run with NULL.
 */
void ragq_vconn_close(ragq_vconn_t *vc);

/* ragq_vconn_close, then frees it.  NULL is fine.  Not from its own
 * callbacks. */
void ragq_vconn_free(ragq_vconn_t *vc);

#endif
