/*
 * valkey_sentinel.c: the Sentinel client of valkey_sentinel.h.  Both of its
 * connections are valkey_conn.h connections with RAGQ_VCONN_SENTINEL (the
 * target is set here; AUTH with RAGQ_VALKEY_SENTINEL_USER/_PASSWORD; PING
 * instead of ROLE); the query one with RAGQ_VCONN_NO_RETRY, since moving on
 * to the next sentinel is this file's decision.
 */

#include "valkey_sentinel.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAGQ_SENTINEL_PING_MS 10000

struct ragq_sentinel_s {
    ragq_vnet_t              *net;
    const ragq_valkey_addr_t *addr;
    ragq_vconn_t             *query, *sub;
    int                       cur, tried, querying, sub_cur;
    int                       check_moves; /* after a query: tell watched */
    ragq_vconn_t            **waiters, **watched;
    int                       nwaiters, nwatched;
    char                      primary[300], phost[256];
    int                       pport;
    char                      last_error[600], sub_logged[600];
    int                       sub_failed;
    ragq_timer_t              next_timer, ping_timer;
};

static void query_next(ragq_sentinel_t *s);

static const ragq_valkey_hostport_t *
sentinel_at(const ragq_sentinel_t *s, int i)
{
    return &s->addr->sentinels[i % s->addr->nsentinels];
}

/* ---- lists of connections ------------------------------------------ */

static int
list_add(ragq_vconn_t ***list, int *n, ragq_vconn_t *vc)
{
    ragq_vconn_t **l;

    for (int i = 0; i < *n; i++) {
        if ((*list)[i] == vc) {
            return 0;
        }
    }
    l = realloc(*list, (size_t) (*n + 1) * sizeof(**list));
    if (l == NULL) {
        return -1;
    }
    l[(*n)++] = vc;
    *list = l;
    return 0;
}

static void
list_remove(ragq_vconn_t **list, int *n, ragq_vconn_t *vc)
{
    for (int i = 0; i < *n; i++) {
        if (list[i] == vc) {
            list[i] = list[--*n];
            return;
        }
    }
}

/* ---- asking for the primary ---------------------------------------- */

/* The round is over: hand the answer (or the failure) to the waiters. */
static void
query_done(ragq_sentinel_t *s, int found)
{
    ragq_vconn_t **w = s->waiters;
    int            n = s->nwaiters, check = s->check_moves;
    char           why[800];

    s->querying = 0;
    s->check_moves = 0;
    s->waiters = NULL;
    s->nwaiters = 0;
    if (!found) {
        snprintf(why, sizeof(why),
                 "no sentinel named the primary \"%s\" (last: %s)",
                 s->addr->master, s->last_error);
    } else {
        snprintf(why, sizeof(why), "fail-over: the primary \"%s\" is now %s",
                 s->addr->master, s->primary);
    }
    for (int i = 0; i < n; i++) {
        if (found) {
            ragq_vconn_located(w[i], s->phost, s->pport);
        } else {
            ragq_vconn_locate_failed(w[i], why);
        }
    }
    free(w);
    if (found && check) {
        for (int i = 0; i < s->nwatched; i++) {
            ragq_vconn_moved(s->watched[i], s->phost, s->pport, why);
        }
    }
}

/* This sentinel could not answer: on to the next one. */
static void
query_skip(ragq_sentinel_t *s, const char *why)
{
    char where[300];

    ragq_valkey_hostport_fmt(sentinel_at(s, s->cur)->host,
                             sentinel_at(s, s->cur)->port, where,
                             sizeof(where));
    snprintf(s->last_error, sizeof(s->last_error), "sentinel %s: %s", where,
             why);
    s->cur = (s->cur + 1) % s->addr->nsentinels;
    s->tried++;
    /* Not from inside the connection's own callbacks. */
    ragq_timer_start(s->net->loop, &s->next_timer, 0);
}

static void
query_reply(void *owner, redisReply *r, void *priv)
{
    ragq_sentinel_t *s = owner;
    char             msg[400];

    (void) priv;
    if (r == NULL) {
        return; /* the lost hook moves on */
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        long port = strtol(r->element[1]->str, NULL, 10);

        if (port > 0 && port < 65536 && r->element[0]->len > 0 &&
            r->element[0]->len < sizeof(s->phost)) {
            snprintf(s->phost, sizeof(s->phost), "%s", r->element[0]->str);
            s->pport = (int) port;
            ragq_valkey_hostport_fmt(s->phost, s->pport, s->primary,
                                     sizeof(s->primary));
            ragq_vconn_disconnect(s->query);
            query_done(s, 1);
            return;
        }
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(msg, sizeof(msg), "%s", r->str);
    } else if (r->type == REDIS_REPLY_NIL) {
        snprintf(msg, sizeof(msg), "knows no primary named \"%s\"",
                 s->addr->master);
    } else {
        snprintf(msg, sizeof(msg), "unexpected answer");
    }
    ragq_vconn_disconnect(s->query);
    query_skip(s, msg);
}

static void
query_ready(ragq_vconn_t *vc, void *owner)
{
    ragq_sentinel_t *s = owner;
    const char      *argv[] = {"SENTINEL", "get-master-addr-by-name",
                               s->addr->master};

    if (ragq_vconn_send(vc, query_reply, NULL, 3, argv, NULL) != 0) {
        ragq_vconn_disconnect(vc);
        query_skip(s, "cannot send");
    }
}

static void
query_lost(ragq_vconn_t *vc, const char *why, void *owner)
{
    (void) vc;
    query_skip(owner, why);
}

static const ragq_vconn_hooks_t query_hooks = {query_ready, query_lost, NULL,
                                               NULL, NULL};

static void
query_next(ragq_sentinel_t *s)
{
    const ragq_valkey_hostport_t *h;

    if (!s->querying) {
        return;
    }
    if (s->tried >= s->addr->nsentinels) {
        query_done(s, 0);
        return;
    }
    h = sentinel_at(s, s->cur);
    ragq_vconn_disconnect(s->query);
    ragq_vconn_set_target(s->query, h->host, h->port);
    ragq_vconn_connect(s->query);
}

static void
next_timer(void *data)
{
    query_next(data);
}

static void
query_start(ragq_sentinel_t *s)
{
    if (s->querying) {
        return;
    }
    s->querying = 1;
    s->tried = 0;
    s->last_error[0] = '\0';
    query_next(s);
}

void
ragq_sentinel_locate(ragq_sentinel_t *s, ragq_vconn_t *vc)
{
    if (list_add(&s->waiters, &s->nwaiters, vc) != 0) {
        ragq_vconn_locate_failed(vc, "out of memory");
        return;
    }
    query_start(s);
}

void
ragq_sentinel_cancel(ragq_sentinel_t *s, ragq_vconn_t *vc)
{
    list_remove(s->waiters, &s->nwaiters, vc);
}

/* ---- following it ---------------------------------------------------- */

static void
sub_ping(void *data)
{
    ragq_sentinel_t *s = data;
    const char      *argv[] = {"PING"};

    if (ragq_vconn_ready(s->sub)) {
        ragq_vconn_send(s->sub, NULL, NULL, 1, argv, NULL);
        ragq_timer_start(s->net->loop, &s->ping_timer, RAGQ_SENTINEL_PING_MS);
    }
}

static void
subscribed(void *owner, redisReply *r, void *priv)
{
    ragq_sentinel_t *s = owner;

    (void) priv;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r) {
            ragq_log(RAGQ_LOG_WARN, "sentinel %s: SUBSCRIBE: %s",
                     ragq_vconn_peer(s->sub), r->str);
        }
        return;
    }
    if (s->sub_failed) {
        ragq_log(RAGQ_LOG_INFO, "sentinel %s: listening for fail-overs again",
                 ragq_vconn_peer(s->sub));
    }
    s->sub_failed = 0;
    s->sub_logged[0] = '\0';
    ragq_timer_start(s->net->loop, &s->ping_timer, RAGQ_SENTINEL_PING_MS);
    /* A switch may have happened while nobody listened. */
    s->check_moves = 1;
    query_start(s);
}

static void
sub_ready(ragq_vconn_t *vc, void *owner)
{
    const char *argv[] = {"SUBSCRIBE", "+switch-master"};

    ragq_vconn_send(vc, subscribed, NULL, 2, argv, NULL);
    (void) owner;
}

static void
sub_lost(ragq_vconn_t *vc, const char *why, void *owner)
{
    ragq_sentinel_t              *s = owner;
    const ragq_valkey_hostport_t *h;

    ragq_timer_stop(s->net->loop, &s->ping_timer);
    /* Logged once per change, not once per try. */
    if (strcmp(s->sub_logged, why) != 0) {
        ragq_log(RAGQ_LOG_WARN,
                 "sentinel %s: %s; fail-overs are noticed through the "
                 "other sentinels",
                 ragq_vconn_peer(vc), why);
        snprintf(s->sub_logged, sizeof(s->sub_logged), "%s", why);
    }
    s->sub_failed = 1;
    s->sub_cur = (s->sub_cur + 1) % s->addr->nsentinels;
    h = sentinel_at(s, s->sub_cur);
    ragq_vconn_set_target(vc, h->host, h->port);
}

/* "NAME old-ip old-port new-ip new-port" */
static void
sub_message(ragq_vconn_t *vc, redisReply *r, void *owner)
{
    ragq_sentinel_t *s = owner;
    char             name[256], oldh[256], newh[256], why[900];
    int              oldp, newp;

    (void) vc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[2]->type != REDIS_REPLY_STRING ||
        sscanf(r->element[2]->str, "%255s %255s %d %255s %d", name, oldh, &oldp,
               newh, &newp) != 5 ||
        strcmp(name, s->addr->master) != 0 || newp < 1 || newp > 65535) {
        return;
    }
    snprintf(s->phost, sizeof(s->phost), "%s", newh);
    s->pport = newp;
    ragq_valkey_hostport_fmt(newh, newp, s->primary, sizeof(s->primary));
    ragq_log(RAGQ_LOG_INFO,
             "sentinel: +switch-master: the primary \"%s\" moved from "
             "%s:%d to %s",
             name, oldh, oldp, s->primary);
    snprintf(why, sizeof(why), "fail-over: the primary \"%s\" is now %s", name,
             s->primary);
    for (int i = 0; i < s->nwatched; i++) {
        ragq_vconn_moved(s->watched[i], newh, newp, why);
    }
}

static const ragq_vconn_hooks_t sub_hooks = {sub_ready, sub_lost, NULL, NULL,
                                             sub_message};

/* ---- life -------------------------------------------------------------- */

ragq_sentinel_t *
ragq_sentinel_new(ragq_vnet_t *net)
{
    ragq_sentinel_t *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    s->net = net;
    s->addr = net->addr;
    s->query = ragq_vconn_new(net, "sentinel query",
                              RAGQ_VCONN_SENTINEL | RAGQ_VCONN_NO_RETRY,
                              &query_hooks, s);
    s->sub = ragq_vconn_new(net, "sentinel",
                            RAGQ_VCONN_SENTINEL | RAGQ_VCONN_SUBSCRIBER,
                            &sub_hooks, s);
    if (s->query == NULL || s->sub == NULL) {
        ragq_sentinel_free(s);
        return NULL;
    }
    ragq_timer_init(&s->next_timer, next_timer, s);
    ragq_timer_init(&s->ping_timer, sub_ping, s);
    return s;
}

void
ragq_sentinel_start(ragq_sentinel_t *s)
{
    const ragq_valkey_hostport_t *h = sentinel_at(s, s->sub_cur);

    ragq_vconn_set_target(s->sub, h->host, h->port);
    ragq_vconn_connect(s->sub);
}

void
ragq_sentinel_watch(ragq_sentinel_t *s, ragq_vconn_t *vc)
{
    list_add(&s->watched, &s->nwatched, vc);
}

void
ragq_sentinel_unwatch(ragq_sentinel_t *s, ragq_vconn_t *vc)
{
    list_remove(s->watched, &s->nwatched, vc);
    list_remove(s->waiters, &s->nwaiters, vc);
}

const char *
ragq_sentinel_primary(const ragq_sentinel_t *s)
{
    return s->primary;
}

void
ragq_sentinel_free(ragq_sentinel_t *s)
{
    if (s == NULL) {
        return;
    }
    ragq_timer_stop(s->net->loop, &s->next_timer);
    ragq_timer_stop(s->net->loop, &s->ping_timer);
    ragq_vconn_free(s->query);
    ragq_vconn_free(s->sub);
    free(s->waiters);
    free(s->watched);
    free(s);
}
