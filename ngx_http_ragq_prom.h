/*
 * ragq: the Prometheus text exposition (ngx_http_ragq_prom.c): the writer
 * the metrics handler builds its answer with, and the Valkey side of a
 * scrape rendered from the metrics script's reply.
 */

#ifndef _NGX_HTTP_RAGQ_PROM_H_INCLUDED_
#define _NGX_HTTP_RAGQ_PROM_H_INCLUDED_


#include "ngx_http_ragq_module.h"
#include <hiredis/hiredis.h>


/* the output under construction: a chain of buffers in r->pool */
typedef struct {
    ngx_http_request_t *r;
    ngx_chain_t        *out;
    ngx_chain_t       **last;
    ngx_buf_t          *b;
    size_t              size;
    ngx_flag_t          failed; /* out of memory: the answer is a 500 */
} ngx_http_ragq_mw_t;


void ngx_http_ragq_mw_add(ngx_http_ragq_mw_t *w, u_char *p, size_t n);
void ngx_http_ragq_mw_printf(ngx_http_ragq_mw_t *w, const char *fmt, ...);
/* # HELP and # TYPE of a family */
void ngx_http_ragq_mw_family(ngx_http_ragq_mw_t *w, const char *name,
                             const char *type, const char *help);
/* name="value", the value escaped (and non-UTF-8 bytes replaced) */
void ngx_http_ragq_mw_label(ngx_http_ragq_mw_t *w, const char *name, u_char *p,
                            size_t len);
/* name{endpoint="..."[,label="value"]} n */
void ngx_http_ragq_mw_endpoint(ngx_http_ragq_mw_t *w, const char *name,
                               ngx_str_t *endpoint, const char *label,
                               ngx_str_t *value, uint64_t n);
/* a whole gauge family of one sample */
void ngx_http_ragq_mw_gauge(ngx_http_ragq_mw_t *w, const char *name,
                            const char *help, uint64_t n);

/* the Valkey side from the metrics script's reply; 0: unknown (NULL reply,
 * an error, an unexpected shape: logged) */
ngx_flag_t ngx_http_ragq_prom_valkey(ngx_http_ragq_mw_t *w, redisReply *reply);


#endif /* _NGX_HTTP_RAGQ_PROM_H_INCLUDED_ */
