/*
 * valkey_net.c: ragq_vnet_t from the configuration (valkey_net.h).
 */

#include "valkey_net.h"

#include <stdio.h>
#include <string.h>

#include "valkey_sentinel.h"

int
ragq_vnet_init(ragq_vnet_t *net, ragq_valkey_addr_t *addr, ragq_loop_t *loop,
               const ragq_config_t *cfg, char *err, size_t errlen)
{
    char why[300];

    memset(net, 0, sizeof(*net));
    if (ragq_valkey_addr_parse(cfg->valkey_url, addr, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "RAGQ_VALKEY_URL: %s", why);
        return -1;
    }
    net->loop = loop;
    net->addr = addr;
    net->connect_timeout_ms = cfg->connect_timeout_ms;
    net->reply_timeout_ms = cfg->valkey_timeout_ms;
    net->sentinel_user = cfg->valkey_sentinel_user;
    net->sentinel_password = cfg->valkey_sentinel_password;
    if (addr->tls) {
        ragq_tls_conf_t tc = {cfg->valkey_ca_file, cfg->valkey_cert_file,
                              cfg->valkey_key_file, cfg->valkey_tls_server_name,
                              (int) cfg->valkey_tls_verify};

        net->tls = ragq_tls_new(&tc, err, errlen);
        if (net->tls == NULL) {
            goto fail;
        }
    }
    net->resolver = ragq_resolver_new(loop);
    if (net->resolver == NULL) {
        snprintf(err, errlen, "cannot set up the name resolver");
        goto fail;
    }
    if (addr->transport == RAGQ_VALKEY_SENTINEL) {
        net->sentinel = ragq_sentinel_new(net);
        if (net->sentinel == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    return 0;

fail:
    ragq_vnet_free(net);
    ragq_valkey_addr_free(addr);
    return -1;
}

void
ragq_vnet_start(ragq_vnet_t *net)
{
    if (net->sentinel) {
        ragq_sentinel_start(net->sentinel);
    }
}

void
ragq_vnet_free(ragq_vnet_t *net)
{
    ragq_sentinel_free(net->sentinel);
    net->sentinel = NULL;
    ragq_resolver_free(net->resolver);
    net->resolver = NULL;
    ragq_tls_free(net->tls);
    net->tls = NULL;
}
