/*
 * valkey_net.h: how ragq-worker reaches Valkey, set up once from the
 * configuration: the parsed RAGQ_VALKEY_URL, the TLS context (rediss://,
 * RAGQ_VALKEY_CA_FILE ...), the off-loop name resolver and, for
 * redis+sentinel://, the Sentinel client; the ragq_vnet_t every
 * connection (valkey_conn.h) shares.  Implemented in valkey_net.c.
 */

#ifndef RAGQ_VALKEY_NET_H
#define RAGQ_VALKEY_NET_H

#include "config.h"
#include "valkey_conn.h"

/*
 * Fills net for cfg (whose RAGQ_VALKEY_URL passed ragq_config_check).
 * Files (CA, certificate, key) are read now.  0, or -1 with err.
 */
int ragq_vnet_init(ragq_vnet_t *net, ragq_valkey_addr_t *addr,
                   ragq_loop_t *loop, const ragq_config_t *cfg, char *err,
                   size_t errlen);

/* Starts what runs on its own (the Sentinel subscriber). */
void ragq_vnet_start(ragq_vnet_t *net);

/* After every connection using it is freed. */
void ragq_vnet_free(ragq_vnet_t *net);

#endif
