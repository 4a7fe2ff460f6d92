/*
 * ragq: reading Valkey's replies (ngx_http_ragq_reply.c): RESP2 from the
 * bytes a connection reads to redisReply trees, built either in the
 * per-process arena (the command connection's) or with malloc().
 */

#ifndef _NGX_HTTP_RAGQ_REPLY_H_INCLUDED_
#define _NGX_HTTP_RAGQ_REPLY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <hiredis/hiredis.h>


/* arrays nested deeper than this are a protocol error, as in hiredis 0.14 */
#define NGX_HTTP_RAGQ_REPLY_DEPTH 8


typedef struct {
    u_char     *buf; /* bytes read, not yet made into replies: [pos, len) */
    size_t      pos;
    size_t      len;
    size_t      size;
    size_t      need; /* the reply being read cannot end before len is this */
    unsigned    arena : 1;
    const char *err; /* why the bytes are not RESP */
} ngx_http_ragq_reader_t;


/*
 * arena: replies are built in one per-process arena, rewound when the
 * reply is freed: a reply must not be used after it is freed, and one
 * reader at a time may have the arena (the command connection's). Without
 * it, each reply is malloc()ed and may be kept until
 * ngx_http_ragq_reply_free().
 */
void ngx_http_ragq_reader_init(ngx_http_ragq_reader_t *rd, ngx_uint_t arena);
void ngx_http_ragq_reader_free(ngx_http_ragq_reader_t *rd);

/* appends n bytes read; NGX_ERROR: out of memory */
ngx_int_t ngx_http_ragq_reader_feed(ngx_http_ragq_reader_t *rd, u_char *p,
                                    size_t n);

/*
 * The next complete reply in *reply, or NULL when more bytes are needed;
 * NGX_ERROR: not RESP (or out of memory), the reason in rd->err.
 */
ngx_int_t ngx_http_ragq_reader_next(ngx_http_ragq_reader_t *rd,
                                    redisReply            **reply);

/* a reply of rd once its handler is done with it */
void ngx_http_ragq_reply_free(ngx_http_ragq_reader_t *rd, redisReply *reply);

/* a reply a handler kept (conn->keep; only readers without the arena) */
void ngx_http_ragq_reply_free_kept(redisReply *reply);


#endif /* _NGX_HTTP_RAGQ_REPLY_H_INCLUDED_ */
