/*
 * valkey_url.c: RAGQ_VALKEY_URL into a ragq_valkey_addr_t (valkey_url.h).
 */

#include "valkey_url.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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

void
ragq_valkey_addr_where(const ragq_valkey_addr_t *addr, char *buf, size_t len)
{
    if (addr->path) {
        snprintf(buf, len, "unix:%s", addr->path);
    } else {
        snprintf(buf, len, "%s:%d", addr->host, addr->port);
    }
}
