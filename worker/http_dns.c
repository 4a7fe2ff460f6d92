/*
 * http_dns.c: libcurl's DNS cache after a failed connect.  curl keeps a
 * name's addresses 60 s whatever happens to them; a model server or
 * Qdrant recreated at a new address (a container, a redeployed service)
 * would then fail every call of that minute.  A name none of whose
 * addresses took a connection is forgotten by the next transfer
 * (CURLOPT_RESOLVE "-HOST:PORT"), so the job's next try looks it up again,
 * as the own client does (http1_origin.c).
 */

#include "http_int.h"
#include "log.h"
#include "resolver.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not more often than this: a server that is down is no reason to ask the
 * resolver on every try. */
#define RAGQ_HTTP_DNS_FORGET_MS 1000

/* curl gives an IPv6 address in brackets; an address is never looked up */
static int
numeric_host(const char *host)
{
    ragq_addrs_t addrs;
    char         v6[INET6_ADDRSTRLEN];
    size_t       len = strlen(host);

    if (host[0] == '[' && len > 2 && len - 2 < sizeof(v6)) {
        memcpy(v6, host + 1, len - 2);
        v6[len - 2] = '\0';
        host = v6;
    }
    return ragq_resolve_numeric(host, 0, &addrs) == 0;
}

void
ragq_http_dns_unreachable(ragq_http_t *http, ragq_http_req_t *req)
{
    CURLU             *u;
    char              *url = NULL, *host = NULL, *port = NULL, entry[300];
    struct curl_slist *l;
    uint64_t           now = ragq_now_ms();

    if (req->proxied || (http->dns_forget_at != 0 &&
                         now - http->dns_forget_at < RAGQ_HTTP_DNS_FORGET_MS)) {
        return;
    }
    if (curl_easy_getinfo(req->easy, CURLINFO_EFFECTIVE_URL, &url) !=
            CURLE_OK ||
        url == NULL || (u = curl_url()) == NULL) {
        return;
    }
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
            CURLUE_OK &&
        !numeric_host(host) &&
        (size_t) snprintf(entry, sizeof(entry), "-%s:%s", host, port) <
            sizeof(entry) &&
        (l = curl_slist_append(http->dns_forget, entry)) != NULL) {
        http->dns_forget = l;
        http->dns_forget_at = now;
        ragq_log(RAGQ_LOG_INFO,
                 "%s:%s: no address of the name took a connection; "
                 "looking it up again",
                 host, port);
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

void
ragq_http_dns_apply(ragq_http_t *http, ragq_http_req_t *req)
{
    curl_slist_free_all(req->resolve);
    req->resolve = http->dns_forget;
    http->dns_forget = NULL;
    curl_easy_setopt(req->easy, CURLOPT_RESOLVE, req->resolve);
}
