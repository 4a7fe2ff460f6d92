/*
 * valkey_url.c: RAGQ_VALKEY_URL into a ragq_valkey_addr_t (valkey_url.h).
 */

#include "valkey_url.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RAGQ_VALKEY_DB_MAX 1000000

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

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

/* s[0..n) with %XX decoded; a '%' without two hex digits stays as is. */
static char *
percent_decode(const char *s, size_t n)
{
    char  *d = malloc(n + 1);
    size_t i, j = 0;
    int    hi, lo;

    if (d == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
            (lo = hexval(s[i + 2])) >= 0) {
            d[j++] = (char) (hi << 4 | lo);
            i += 2;
        } else {
            d[j++] = s[i];
        }
    }
    d[j] = '\0';
    return d;
}

/* A decimal number that is all of s[0..n), at most max; -1 if not. */
static long
number(const char *s, size_t n, long max)
{
    long v = 0;

    if (n == 0 || n > 9) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

static int
fail(ragq_valkey_addr_t *a, char *why, size_t whylen, const char *what)
{
    ragq_valkey_addr_free(a);
    snprintf(why, whylen, "%s", what);
    return -1;
}

static int
parse_unix(const char *p, ragq_valkey_addr_t *a, char *why, size_t whylen)
{
    const char *q = strchr(p, '?');
    long        db;

    a->transport = RAGQ_VALKEY_UNIX;
    if (*p != '/') {
        return fail(a, why, whylen,
                    "the socket path must be absolute "
                    "(unix:///run/valkey.sock)");
    }
    if (q) {
        db = strncmp(q, "?db=", 4) == 0
                 ? number(q + 4, strlen(q + 4), RAGQ_VALKEY_DB_MAX)
                 : -1;
        if (db < 0) {
            return fail(a, why, whylen, "after the path only ?db=N may follow");
        }
        a->db = (int) db;
    }
    a->path = q ? dup_range(p, (size_t) (q - p)) : strdup(p);
    return a->path ? 0 : fail(a, why, whylen, "out of memory");
}

/* [[user]:password]: the user information before the last '@'. */
static int
parse_userinfo(const char *p, const char *at, ragq_valkey_addr_t *a, char *why,
               size_t whylen)
{
    const char *colon = memchr(p, ':', (size_t) (at - p));

    if (memmem(p, (size_t) (at - p), "%00", 3) != NULL) {
        return fail(a, why, whylen,
                    "the user name or password cannot hold %00");
    }
    if (at == p) {
        return 0; /* "redis://@host": nothing given */
    }
    if (colon) {
        if (colon > p &&
            (a->user = percent_decode(p, (size_t) (colon - p))) == NULL) {
            return fail(a, why, whylen, "out of memory");
        }
        a->password = percent_decode(colon + 1, (size_t) (at - colon - 1));
    } else {
        a->password = percent_decode(p, (size_t) (at - p));
    }
    return a->password ? 0 : fail(a, why, whylen, "out of memory");
}

int
ragq_valkey_addr_parse(const char *url, ragq_valkey_addr_t *a, char *why,
                       size_t whylen)
{
    const char *p, *end, *at, *h, *he;
    long        port, db;

    memset(a, 0, sizeof(*a));
    a->port = 6379;
    if (strncmp(url, "rediss://", 9) == 0 ||
        strncmp(url, "valkeys://", 10) == 0) {
        return fail(a, why, whylen,
                    "TLS is not supported; reach Valkey over loopback, a unix "
                    "socket or a TLS tunnel such as stunnel");
    }
    if (strncmp(url, "unix://", 7) == 0) {
        return parse_unix(url + 7, a, why, whylen);
    }
    if (strncmp(url, "redis://", 8) == 0) {
        p = url + 8;
    } else if (strncmp(url, "valkey://", 9) == 0) {
        p = url + 9;
    } else {
        return fail(a, why, whylen, "the scheme must be redis:// or unix://");
    }
    a->transport = RAGQ_VALKEY_TCP;

    /* The authority ends at the path; its user information at its last @. */
    end = p + strcspn(p, "/");
    at = NULL;
    for (h = p; h < end; h++) {
        if (*h == '@') {
            at = h;
        }
    }
    if (at) {
        if (parse_userinfo(p, at, a, why, whylen) != 0) {
            return -1;
        }
        p = at + 1;
    }

    if (*p == '[') {
        he = memchr(p, ']', (size_t) (end - p));
        if (he == NULL) {
            return fail(a, why, whylen,
                        "an IPv6 address needs its closing ']'");
        }
        h = p + 1;
        p = he + 1;
    } else {
        h = p;
        he = p + strcspn(p, ":/");
        if (he > end) {
            he = end;
        }
        p = he;
    }
    if (he == h) {
        return fail(a, why, whylen, "the host is missing");
    }
    if (p < end && *p == ':') {
        port = number(p + 1, (size_t) (end - p - 1), 65535);
        if (port < 1) {
            return fail(a, why, whylen,
                        "the port must be a number from 1 to 65535");
        }
        a->port = (int) port;
    } else if (p < end) {
        char msg[300];

        snprintf(msg, sizeof(msg), "unexpected '%.*s'", (int) (end - p), p);
        return fail(a, why, whylen, msg);
    }
    if (*end == '/' && end[1] != '\0') {
        db = number(end + 1, strlen(end + 1), RAGQ_VALKEY_DB_MAX);
        if (db < 0) {
            return fail(a, why, whylen, "the database must be a number (/0)");
        }
        a->db = (int) db;
    }
    a->host = dup_range(h, (size_t) (he - h));
    return a->host ? 0 : fail(a, why, whylen, "out of memory");
}

int
ragq_valkey_addr_resolve(ragq_valkey_addr_t *a, char *err, size_t errlen)
{
    struct addrinfo hints, *res;
    char            numeric[256], *h;
    int             rc;

    if (a->transport != RAGQ_VALKEY_TCP) {
        return 0;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(a->host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve \"%s\": %s", a->host,
                 gai_strerror(rc));
        return -1;
    }
    if (getnameinfo(res->ai_addr, res->ai_addrlen, numeric, sizeof(numeric),
                    NULL, 0, NI_NUMERICHOST) != 0) {
        snprintf(numeric, sizeof(numeric), "%s", a->host);
    }
    freeaddrinfo(res);
    if ((h = strdup(numeric)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(a->host);
    a->host = h;
    return 0;
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

void
ragq_valkey_addr_where(const ragq_valkey_addr_t *addr, char *buf, size_t len)
{
    if (addr->transport == RAGQ_VALKEY_UNIX) {
        snprintf(buf, len, "unix:%s", addr->path);
    } else if (strchr(addr->host, ':')) {
        snprintf(buf, len, "[%s]:%d", addr->host, addr->port);
    } else {
        snprintf(buf, len, "%s:%d", addr->host, addr->port);
    }
}

void
ragq_valkey_url_mask(const char *url, char *out, size_t outlen)
{
    const char *s = strstr(url, "://"), *end, *at = NULL, *colon, *p;

    snprintf(out, outlen, "%s", url);
    if (s == NULL) {
        return;
    }
    s += 3;
    end = s + strcspn(s, "/");
    for (p = s; p < end; p++) {
        if (*p == '@') {
            at = p; /* the last one, as the parser reads it */
        }
    }
    if (at == NULL) {
        return;
    }
    colon = memchr(s, ':', (size_t) (at - s));
    if (colon == NULL) {
        colon = s - 1; /* redis://password@host */
    }
    snprintf(out, outlen, "%.*s***%s", (int) (colon + 1 - url), url, at);
}
