/*
 * valkey_url.c: RAGQ_VALKEY_URL into a ragq_valkey_addr_t (valkey_url.h).
 */

#include "valkey_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/*
 * host[:port] in p[0..end): host without IPv6 brackets into *host
 * (allocated), port into *port (dflt when absent).  -1 with *bad the
 * reason, -2 with *bad where unexpected text starts.
 */
static int
parse_hostport(const char *p, const char *end, int dflt, char **host, int *port,
               const char **bad)
{
    const char *h, *he;
    long        n;

    if (p < end && *p == '[') {
        he = memchr(p, ']', (size_t) (end - p));
        if (he == NULL) {
            *bad = "an IPv6 address needs its closing ']'";
            return -1;
        }
        h = p + 1;
        p = he + 1;
    } else {
        h = p;
        he = memchr(p, ':', (size_t) (end - p));
        if (he == NULL) {
            he = end;
        }
        p = he;
    }
    if (he == h) {
        *bad = "the host is missing";
        return -1;
    }
    *port = dflt;
    if (p < end && *p == ':') {
        n = number(p + 1, (size_t) (end - p - 1), 65535);
        if (n < 1) {
            *bad = "the port must be a number from 1 to 65535";
            return -1;
        }
        *port = (int) n;
    } else if (p < end) {
        *bad = p;
        return -2;
    }
    *host = dup_range(h, (size_t) (he - h));
    if (*host == NULL) {
        *bad = "out of memory";
        return -1;
    }
    return 0;
}

static int
hostport_fail(ragq_valkey_addr_t *a, char *why, size_t whylen, int rc,
              const char *bad, const char *end)
{
    char msg[300];

    if (rc == -2) {
        snprintf(msg, sizeof(msg), "unexpected '%.*s'", (int) (end - bad), bad);
        return fail(a, why, whylen, msg);
    }
    return fail(a, why, whylen, bad);
}

/* The sentinels, comma-separated, in p[0..end). */
static int
parse_sentinels(const char *p, const char *end, ragq_valkey_addr_t *a,
                char *why, size_t whylen)
{
    ragq_valkey_hostport_t *s;
    const char             *bad = NULL, *comma;
    int                     n = 1, rc;

    for (const char *c = p; c < end; c++) {
        n += *c == ',';
    }
    if (n > RAGQ_VALKEY_SENTINELS_MAX) {
        return fail(a, why, whylen, "at most 16 sentinels");
    }
    a->sentinels = calloc((size_t) n, sizeof(*a->sentinels));
    if (a->sentinels == NULL) {
        return fail(a, why, whylen, "out of memory");
    }
    while (a->nsentinels < n) {
        comma = memchr(p, ',', (size_t) (end - p));
        if (comma == NULL) {
            comma = end;
        }
        s = &a->sentinels[a->nsentinels];
        rc = parse_hostport(p, comma, 26379, &s->host, &s->port, &bad);
        if (rc != 0) {
            return hostport_fail(a, why, whylen, rc, bad, comma);
        }
        a->nsentinels++;
        p = comma + 1;
    }
    return 0;
}

/* /name[/db] after the sentinels. */
static int
parse_master(const char *p, ragq_valkey_addr_t *a, char *why, size_t whylen)
{
    const char *slash;
    long        db;

    if (*p != '/' || p[1] == '\0' || p[1] == '/') {
        return fail(a, why, whylen,
                    "the primary's name must follow the sentinels "
                    "(redis+sentinel://HOST:PORT,.../NAME)");
    }
    p++;
    slash = strchr(p, '/');
    a->master = slash ? dup_range(p, (size_t) (slash - p)) : strdup(p);
    if (a->master == NULL) {
        return fail(a, why, whylen, "out of memory");
    }
    if (strpbrk(a->master, " \t\r\n?#") != NULL) {
        return fail(a, why, whylen,
                    "the primary's name cannot hold spaces, ? or #");
    }
    if (slash && slash[1] != '\0') {
        db = number(slash + 1, strlen(slash + 1), RAGQ_VALKEY_DB_MAX);
        if (db < 0) {
            return fail(a, why, whylen,
                        "the database must be a number (/NAME/0)");
        }
        a->db = (int) db;
    }
    return 0;
}

static const struct {
    const char             *scheme;
    ragq_valkey_transport_t transport;
    int                     tls;
} schemes[] = {
    {"redis://", RAGQ_VALKEY_TCP, 0},
    {"valkey://", RAGQ_VALKEY_TCP, 0},
    {"rediss://", RAGQ_VALKEY_TCP, 1},
    {"valkeys://", RAGQ_VALKEY_TCP, 1},
    {"redis+sentinel://", RAGQ_VALKEY_SENTINEL, 0},
    {"valkey+sentinel://", RAGQ_VALKEY_SENTINEL, 0},
    {"rediss+sentinel://", RAGQ_VALKEY_SENTINEL, 1},
    {"valkeys+sentinel://", RAGQ_VALKEY_SENTINEL, 1},
};

int
ragq_valkey_addr_parse(const char *url, ragq_valkey_addr_t *a, char *why,
                       size_t whylen)
{
    const char *p = NULL, *end, *at, *h, *bad = NULL;
    long        db;
    int         rc;
    size_t      i;

    memset(a, 0, sizeof(*a));
    a->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        return parse_unix(url + 7, a, why, whylen);
    }
    for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strncmp(url, schemes[i].scheme, strlen(schemes[i].scheme)) == 0) {
            p = url + strlen(schemes[i].scheme);
            a->transport = schemes[i].transport;
            a->tls = schemes[i].tls;
            break;
        }
    }
    if (p == NULL) {
        return fail(a, why, whylen,
                    "the scheme must be redis://, rediss://, "
                    "redis+sentinel://, rediss+sentinel:// or unix://");
    }

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
    if (a->transport == RAGQ_VALKEY_SENTINEL) {
        if (parse_sentinels(p, end, a, why, whylen) != 0) {
            return -1;
        }
        return parse_master(end, a, why, whylen);
    }
    if (memchr(p, ',', (size_t) (end - p)) != NULL) {
        return fail(a, why, whylen,
                    "several hosts need redis+sentinel:// (a list of "
                    "sentinels)");
    }
    rc = parse_hostport(p, end, 6379, &a->host, &a->port, &bad);
    if (rc != 0) {
        return hostport_fail(a, why, whylen, rc, bad, end);
    }
    if (*end == '/' && end[1] != '\0') {
        db = number(end + 1, strlen(end + 1), RAGQ_VALKEY_DB_MAX);
        if (db < 0) {
            return fail(a, why, whylen, "the database must be a number (/0)");
        }
        a->db = (int) db;
    }
    return 0;
}

void
ragq_valkey_addr_free(ragq_valkey_addr_t *a)
{
    for (int i = 0; i < a->nsentinels; i++) {
        free(a->sentinels[i].host);
    }
    free(a->sentinels);
    free(a->master);
    free(a->host);
    free(a->path);
    free(a->user);
    free(a->password);
    memset(a, 0, sizeof(*a));
}

void
ragq_valkey_hostport_fmt(const char *host, int port, char *buf, size_t len)
{
    snprintf(buf, len, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

void
ragq_valkey_addr_where(const ragq_valkey_addr_t *addr, char *buf, size_t len)
{
    size_t n;

    if (addr->transport == RAGQ_VALKEY_UNIX) {
        snprintf(buf, len, "unix:%s", addr->path);
        return;
    }
    if (addr->transport == RAGQ_VALKEY_TCP) {
        ragq_valkey_hostport_fmt(addr->host, addr->port, buf, len);
        return;
    }
    snprintf(buf, len, "sentinels ");
    n = strlen(buf);
    for (int i = 0; i < addr->nsentinels && n + 1 < len; i++) {
        if (i > 0) {
            buf[n++] = ',';
            buf[n] = '\0';
        }
        ragq_valkey_hostport_fmt(addr->sentinels[i].host,
                                 addr->sentinels[i].port, buf + n, len - n);
        n += strlen(buf + n);
    }
    if (n + 1 < len) {
        snprintf(buf + n, len - n, " (primary %s)", addr->master);
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
