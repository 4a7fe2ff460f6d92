/*
 * ragq: answer streams, GET /job-stream?job_id=ID (ngx_http_ragq_stream.c):
 * Server-Sent Events of a job's P:out:ID pieces, per-job subscriptions on
 * the worker's pub/sub connection, resume by Last-Event-ID.
 */

#ifndef _NGX_HTTP_RAGQ_STREAM_H_INCLUDED_
#define _NGX_HTTP_RAGQ_STREAM_H_INCLUDED_


#include "ngx_http_ragq_module.h"
#include "ngx_http_ragq_valkey.h"


/*
 * per worker, before the pub/sub connection starts and after the hooks of
 * the long-polls are set: chains its own hooks in front of them
 */
void ngx_http_ragq_stream_init(ngx_http_ragq_pubsub_t *pubsub);
void ngx_http_ragq_stream_exit(void);

/* ragq_stream: GET /job-stream?job_id=ID */
ngx_int_t ngx_http_ragq_stream_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_RAGQ_STREAM_H_INCLUDED_ */
