/*
 * valkey_url.h: where the worker's Valkey is: RAGQ_VALKEY_URL parsed into
 * an address, its host name resolved once at start-up (no DNS on the loop).
 * Implemented in valkey_url.c.
 */

#ifndef RAGQ_VALKEY_URL_H
#define RAGQ_VALKEY_URL_H

#include <stddef.h>

typedef struct {
    char *host; /* numeric address, resolved at start-up; NULL for unix */
    int   port;
    char *path; /* unix socket */
    char *user, *password;
    int   db;
} ragq_valkey_addr_t;

/*
 * Parses redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N]
 * and resolves host (blocking: call it before the loop runs).  -1 + err.
 */
int ragq_valkey_addr_parse(const char *url, ragq_valkey_addr_t *addr, char *err,
                           size_t errlen);
void ragq_valkey_addr_free(ragq_valkey_addr_t *addr);

/* "HOST:PORT" or "unix:PATH", for messages. */
void ragq_valkey_addr_where(const ragq_valkey_addr_t *addr, char *buf,
                            size_t len);

#endif
