/*
 * valkey_url.h: where the worker's Valkey is.  The one parser of
 * RAGQ_VALKEY_URL, used both by the configuration check (config.c, which
 * refuses a bad URL before anything starts) and to connect (main.c,
 * valkey_conn.c), so the two can never disagree:
 *
 *   redis://[[user]:password@]host[:port][/db]   (or valkey://)
 *   unix:///absolute/path[?db=N]
 *
 * host is a name, an IPv4 address or an [IPv6] one; port defaults to 6379,
 * db to 0 (0 to 1000000).  The user information ends at the last '@' before
 * the path, so a password may hold '@' as is; '%XX' escapes are decoded in
 * the user name and password.  rediss:// is refused for now.
 * Implemented in valkey_url.c.
 */

#ifndef RAGQ_VALKEY_URL_H
#define RAGQ_VALKEY_URL_H

#include <stddef.h>

typedef enum {
    RAGQ_VALKEY_TCP,
    RAGQ_VALKEY_UNIX
    /* to come: TLS (rediss://) and Sentinel (redis+sentinel://) */
} ragq_valkey_transport_t;

typedef struct {
    ragq_valkey_transport_t transport;
    char *host; /* TCP: as written; numeric after ragq_valkey_addr_resolve */
    int   port;
    char *path;            /* unix socket */
    char *user, *password; /* decoded; NULL when not given */
    int   db;
    /* TLS settings and the Sentinel hosts + master name will go here. */
} ragq_valkey_addr_t;

/*
 * Parses url into addr (no DNS).  Returns 0, or -1 with why set to what is
 * wrong ("the port must be a number from 1 to 65535") and addr empty.
 */
int ragq_valkey_addr_parse(const char *url, ragq_valkey_addr_t *addr, char *why,
                           size_t whylen);

/*
 * Resolves a TCP host to a numeric address, once, at start-up: it blocks,
 * and the worker's loop must never wait on DNS.  -1 + err on failure.
 */
int ragq_valkey_addr_resolve(ragq_valkey_addr_t *addr, char *err,
                             size_t errlen);

void ragq_valkey_addr_free(ragq_valkey_addr_t *addr);

/* "HOST:PORT" or "unix:PATH", for messages. */
void ragq_valkey_addr_where(const ragq_valkey_addr_t *addr, char *buf,
                            size_t len);

/* url for messages, its password (or the whole user information when it
 * has no ':') replaced by "***". */
void ragq_valkey_url_mask(const char *url, char *out, size_t outlen);

#endif
