/*
 * valkey_url.h: where the worker's Valkey is.  The one parser of
 * RAGQ_VALKEY_URL, used both by the configuration check (config.c, which
 * refuses a bad URL before anything starts) and to connect (main.c,
 * valkey_conn.c, valkey_sentinel.c), so the two can never disagree:
 *
 *   redis://[[user]:password@]host[:port][/db]       (or valkey://)
 *   rediss://[[user]:password@]host[:port][/db]      TLS (or valkeys://)
 *   unix:///absolute/path[?db=N]
 *   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/name[/db]
 *   rediss+sentinel://...                            TLS to the sentinels
 *                                                    and the primary
 *                                                    (or valkey[s]+sentinel)
 *
 * host is a name, an IPv4 address or an [IPv6] one; port defaults to 6379
 * (26379 for a sentinel), db to 0 (0 to 1000000).  The user information
 * ends at the last '@' before the path, so a password may hold '@' as is;
 * '%XX' escapes are decoded in the user name and password.  With Sentinel,
 * the user and password are those of the primary (the data), not of the
 * sentinels (RAGQ_VALKEY_SENTINEL_USER / _PASSWORD, config.h).  Names are
 * not resolved here: valkey_conn.c resolves them on every connect, off the
 * loop (resolver.h).
 * Implemented in valkey_url.c.
 */

#ifndef RAGQ_VALKEY_URL_H
#define RAGQ_VALKEY_URL_H

#include <stddef.h>

typedef enum {
    RAGQ_VALKEY_TCP,
    RAGQ_VALKEY_UNIX,
    RAGQ_VALKEY_SENTINEL /* the primary is asked from the sentinels */
} ragq_valkey_transport_t;

#define RAGQ_VALKEY_SENTINELS_MAX 16

typedef struct {
    char *host; /* as written, without IPv6 brackets */
    int   port;
} ragq_valkey_hostport_t;

typedef struct {
    ragq_valkey_transport_t transport;
    int                     tls; /* rediss://, valkeys://, rediss+sentinel:// */
    char                   *host; /* TCP: as written */
    int                     port;
    char                   *path;            /* unix socket */
    char                   *user, *password; /* decoded; NULL when not given */
    int                     db;
    /* Sentinel: the sentinels as written and the primary's name. */
    ragq_valkey_hostport_t *sentinels;
    int                     nsentinels;
    char                   *master;
} ragq_valkey_addr_t;

/*
 * Parses url into addr (no DNS).  Returns 0, or -1 with why set to what is
 * wrong ("the port must be a number from 1 to 65535") and addr empty.
 */
int ragq_valkey_addr_parse(const char *url, ragq_valkey_addr_t *addr, char *why,
                           size_t whylen);

void ragq_valkey_addr_free(ragq_valkey_addr_t *addr);

/*
 * For messages: "HOST:PORT", "[V6]:PORT", "unix:PATH", or "sentinels
 * H:P,H:P (primary NAME)".
 */
void ragq_valkey_addr_where(const ragq_valkey_addr_t *addr, char *buf,
                            size_t len);

/* "HOST:PORT" or "[V6]:PORT" of one host. */
void ragq_valkey_hostport_fmt(const char *host, int port, char *buf,
                              size_t len);

/* url for messages, its password (or the whole user information when it
 * has no ':') replaced by "***". */
void ragq_valkey_url_mask(const char *url, char *out, size_t outlen);

#endif
