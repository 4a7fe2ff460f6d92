/*
 * http1_head.c: what http1.c sends, before any connection: which URLs it
 * takes (plain http://, nothing curl must handle), their parts, and the
 * request head built into the request's own buffer (kept between uses).
 */

#include "http_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * http://host[:port][/path][?query], with no user, fragment, space or
 * control character; sets the parts.  0 when curl must take it instead.
 */
int
ragq_h1_url_split(const char *url, const char **auth, size_t *auth_len,
                  const char **host, size_t *host_len, int *port,
                  const char **path)
{
    const char *a, *e, *h, *he, *p;
    long        pn = 80;

    if (strncasecmp(url, "http://", 7) != 0) {
        return 0;
    }
    for (p = url; *p; p++) {
        if ((unsigned char) *p <= ' ' || *p == 0x7f || *p == '#') {
            return 0;
        }
    }
    a = url + 7;
    e = a + strcspn(a, "/?");
    if (e == a || memchr(a, '@', (size_t) (e - a)) != NULL) {
        return 0;
    }
    h = a;
    if (*h == '[') {
        he = memchr(h, ']', (size_t) (e - h));
        if (he == NULL) {
            return 0;
        }
        h++;
        p = he + 1;
    } else {
        he = memchr(h, ':', (size_t) (e - h));
        if (he == NULL) {
            he = e;
        }
        p = he;
    }
    if (he == h) {
        return 0;
    }
    if (p < e) {
        if (*p != ':' || p + 1 == e || e - p > 6) {
            return 0;
        }
        for (pn = 0, p++; p < e; p++) {
            if (*p < '0' || *p > '9') {
                return 0;
            }
            pn = pn * 10 + (*p - '0');
        }
        if (pn < 1 || pn > 65535) {
            return 0;
        }
    }
    *auth = a;
    *auth_len = (size_t) (e - a);
    *host = h;
    *host_len = (size_t) (he - h);
    *port = (int) pn;
    *path = e;
    return 1;
}

#define HEAD_LIT(b, s) ragq_jbuf_add(b, s, sizeof(s) - 1)

int
ragq_h1_head_build(ragq_http_req_t *req, const char *path, const char *auth,
                   size_t auth_len, const char *const *headers, size_t n,
                   size_t len)
{
    ragq_jbuf_t *b = &req->head;
    size_t       i, hl;

    ragq_jbuf_reset(b);
    HEAD_LIT(b, "POST ");
    if (*path != '/') {
        HEAD_LIT(b, "/");
    }
    ragq_jbuf_adds(b, path);
    HEAD_LIT(b, " HTTP/1.1\r\nHost: ");
    ragq_jbuf_add(b, auth, auth_len);
    HEAD_LIT(b, "\r\nUser-Agent: ragq-worker/1.0\r\n"
                "Content-Type: application/json\r\n"
                "Accept: application/json\r\n");
    for (i = 0; i < n; i++) {
        hl = strlen(headers[i]);
        /* Never a line break inside a header line of ours. */
        if (strpbrk(headers[i], "\r\n") != NULL) {
            return -1;
        }
        /* "Name:" alone removes a header, as with curl: none to add. */
        if (hl == 0 || headers[i][hl - 1] == ':') {
            continue;
        }
        ragq_jbuf_add(b, headers[i], hl);
        HEAD_LIT(b, "\r\n");
    }
    HEAD_LIT(b, "Content-Length: ");
    ragq_jbuf_uint(b, (unsigned long long) len);
    HEAD_LIT(b, "\r\n\r\n");
    return b->failed ? -1 : 0;
}
