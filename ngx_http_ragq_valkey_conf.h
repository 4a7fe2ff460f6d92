/*
 * ragq: configuring the Valkey connections (ngx_http_ragq_valkey_conf.c):
 * the ragq_valkey directive (an address, or sentinel=... master=...; user,
 * passwords, db, tls) and nginx's SSL context of ragq_valkey_ssl_*.
 */

#ifndef _NGX_HTTP_RAGQ_VALKEY_CONF_H_INCLUDED_
#define _NGX_HTTP_RAGQ_VALKEY_CONF_H_INCLUDED_


#include "ngx_http_ragq_module.h"
#include "ngx_http_ragq_valkey.h"


/* the ragq_valkey_ssl_protocols names */
extern ngx_conf_bitmask_t ngx_http_ragq_valkey_ssl_protocols[];


/* the unset values, from the main configuration's create */
void ngx_http_ragq_valkey_conf_create(ngx_http_ragq_valkey_conf_t *vcf);

/* ragq_valkey; cmd->offset locates the ngx_http_ragq_valkey_conf_t */
char *ngx_http_ragq_valkey_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                     void *conf);

/* defaults and the SSL context, from the main configuration's init */
char *ngx_http_ragq_valkey_conf_init(ngx_conf_t                  *cf,
                                     ngx_http_ragq_valkey_conf_t *vcf);


#endif /* _NGX_HTTP_RAGQ_VALKEY_CONF_H_INCLUDED_ */
