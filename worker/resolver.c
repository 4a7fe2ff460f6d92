/*
 * resolver.c: the off-loop name lookups of resolver.h.
 *
 * Ownership: a lookup is shared by the loop (until its callback ran or it
 * was cancelled) and its thread (until it has queued the answer); it is
 * freed by whichever lets go last, under the resolver's mutex.  The
 * resolver itself is shared by the loop and the running threads the same
 * way (refs), so freeing it while lookups run is safe.
 */

#include "resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct ragq_lookup_s {
    ragq_resolver_t *r;
    char            *host;
    int              port;
    ragq_resolved_cb cb;
    void            *data;
    int              cancelled; /* loop side only */
    ragq_addrs_t     addrs;
    char             err[256];
    ragq_lookup_t   *next; /* on the done list */
};

struct ragq_resolver_s {
    ragq_loop_t    *loop;
    int             efd;
    pthread_mutex_t mu;
    ragq_lookup_t  *done; /* answered, for the loop to deliver */
    int             refs; /* the loop's one + one per running thread */
};

static void
resolver_unref_locked(ragq_resolver_t *r, int *destroy)
{
    *destroy = --r->refs == 0;
}

static void
resolver_destroy(ragq_resolver_t *r)
{
    ragq_lookup_t *l;

    while ((l = r->done) != NULL) {
        r->done = l->next;
        free(l->host);
        free(l);
    }
    close(r->efd);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static void
lookup_run(ragq_lookup_t *l)
{
    struct addrinfo hints, *res, *ai;
    char            port[16];
    int             rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = AI_ADDRCONFIG;
    snprintf(port, sizeof(port), "%d", l->port);
    rc = getaddrinfo(l->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(l->err, sizeof(l->err), "cannot resolve \"%s\": %s", l->host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return;
    }
    for (ai = res; ai && l->addrs.n < RAGQ_RESOLVE_MAX; ai = ai->ai_next) {
        if (ai->ai_addrlen <= sizeof(l->addrs.addr[0])) {
            memcpy(&l->addrs.addr[l->addrs.n], ai->ai_addr, ai->ai_addrlen);
            l->addrs.len[l->addrs.n++] = ai->ai_addrlen;
        }
    }
    freeaddrinfo(res);
    if (l->addrs.n == 0) {
        snprintf(l->err, sizeof(l->err), "\"%s\" has no address", l->host);
    }
}

static void *
lookup_thread(void *arg)
{
    ragq_lookup_t   *l = arg;
    ragq_resolver_t *r = l->r;
    uint64_t         one = 1;
    int              destroy;
    ssize_t          n;

    lookup_run(l);
    pthread_mutex_lock(&r->mu);
    l->next = r->done;
    r->done = l;
    resolver_unref_locked(r, &destroy);
    if (!destroy) {
        /* Under the mutex: the loop cannot close efd meanwhile. */
        do {
            n = write(r->efd, &one, sizeof(one));
        } while (n < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&r->mu);
    if (destroy) {
        resolver_destroy(r);
    }
    return NULL;
}

static void
resolver_readable(int fd, unsigned events, void *data)
{
    ragq_resolver_t *r = data;
    ragq_lookup_t   *list, *l, *rev = NULL;
    uint64_t         v;

    (void) events;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    list = r->done;
    r->done = NULL;
    pthread_mutex_unlock(&r->mu);
    /* In the order answered. */
    while ((l = list) != NULL) {
        list = l->next;
        l->next = rev;
        rev = l;
    }
    while ((l = rev) != NULL) {
        rev = l->next;
        if (!l->cancelled) {
            l->cb(l->data, l->addrs.n ? &l->addrs : NULL,
                  l->addrs.n ? NULL : l->err);
        }
        free(l->host);
        free(l);
    }
}

ragq_resolver_t *
ragq_resolver_new(ragq_loop_t *loop)
{
    ragq_resolver_t *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->loop = loop;
    r->refs = 1;
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    if (ragq_loop_io(loop, r->efd, RAGQ_IO_READ, resolver_readable, r) != 0) {
        close(r->efd);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return NULL;
    }
    return r;
}

ragq_lookup_t *
ragq_resolve(ragq_resolver_t *r, const char *host, int port,
             ragq_resolved_cb cb, void *data)
{
    ragq_lookup_t *l = calloc(1, sizeof(*l));
    pthread_attr_t attr;
    pthread_t      t;
    sigset_t       all, old;
    int            rc;

    if (l == NULL || (l->host = strdup(host)) == NULL) {
        free(l);
        return NULL;
    }
    l->r = r;
    l->port = port;
    l->cb = cb;
    l->data = data;
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* getaddrinfo needs little stack; 256 kB instead of 8 MB of address
     * space per lookup. */
    pthread_attr_setstacksize(&attr, 256 * 1024);
    /* The thread must never take SIGTERM/SIGINT (the loop's signalfd). */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&t, &attr, lookup_thread, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_lock(&r->mu);
        r->refs--;
        pthread_mutex_unlock(&r->mu);
        free(l->host);
        free(l);
        return NULL;
    }
    return l;
}

void
ragq_resolve_cancel(ragq_lookup_t *l)
{
    if (l) {
        l->cancelled = 1;
    }
}

int
ragq_resolve_numeric(const char *host, int port, ragq_addrs_t *addrs)
{
    struct sockaddr_in  *in4 = (struct sockaddr_in *) &addrs->addr[0];
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &addrs->addr[0];

    memset(addrs, 0, sizeof(*addrs));
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t) port);
        addrs->len[0] = sizeof(*in4);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t) port);
        addrs->len[0] = sizeof(*in6);
    } else {
        return -1;
    }
    addrs->n = 1;
    return 0;
}

void
ragq_resolver_free(ragq_resolver_t *r)
{
    ragq_lookup_t *l;
    int            destroy;

    if (r == NULL) {
        return;
    }
    ragq_loop_io(r->loop, r->efd, 0, NULL, NULL);
    pthread_mutex_lock(&r->mu);
    /* Answers not delivered yet are dropped; running lookups are the
     * threads' to free (they find refs at 0 and destroy the resolver). */
    while ((l = r->done) != NULL) {
        r->done = l->next;
        free(l->host);
        free(l);
    }
    resolver_unref_locked(r, &destroy);
    pthread_mutex_unlock(&r->mu);
    if (destroy) {
        resolver_destroy(r);
    }
}
