/*
 * ragq: Sentinel (ngx_http_ragq_sentinel.c): which server is the primary,
 * asked of the sentinels of ragq_valkey sentinel=... master=NAME, and
 * followed through their +switch-master announcements.
 */

#ifndef _NGX_HTTP_RAGQ_SENTINEL_H_INCLUDED_
#define _NGX_HTTP_RAGQ_SENTINEL_H_INCLUDED_


#include "ngx_http_ragq_module.h"
#include "ngx_http_ragq_valkey.h"


/* another primary is known: connections to an older one must move */
typedef void (*ngx_http_ragq_primary_pt)(void);


ngx_int_t ngx_http_ragq_sentinel_init(ngx_cycle_t                 *cycle,
                                      ngx_http_ragq_valkey_conf_t *conf,
                                      ngx_http_ragq_primary_pt     changed);
void      ngx_http_ragq_sentinel_exit(void);

/*
 * The primary as the sentinels last said, and its generation (it changes
 * with the address). NGX_DECLINED: not known yet; the hook will say.
 */
ngx_int_t ngx_http_ragq_sentinel_primary(ngx_http_ragq_peer_t **peer,
                                         ngx_uint_t            *gen);

/* the primary of generation gen failed us (refused, a replica, READONLY):
 * ask the sentinels again */
void ngx_http_ragq_sentinel_stale(ngx_uint_t gen);


#endif /* _NGX_HTTP_RAGQ_SENTINEL_H_INCLUDED_ */
