/*
 * ragq: answer streams, shared by ngx_http_ragq_stream.c (a stream's events,
 * its sync, the request) and ngx_http_ragq_stream_jobs.c (the table of
 * streamed jobs and their subscriptions, what the pub/sub connection says,
 * the process's start and end).
 */

#ifndef _NGX_HTTP_RAGQ_STREAM_INT_H_INCLUDED_
#define _NGX_HTTP_RAGQ_STREAM_INT_H_INCLUDED_


#include "ngx_http_ragq_stream.h"
#include "ngx_http_ragq_job.h"


/*
 * A streamed job: the channel P:out:ID (also the stream's key) and the
 * streams of this worker on it. Allocated with its key, freed with its last
 * stream, or when its last SUBSCRIBE is acknowledged if that comes later
 * (so that an acknowledgement is never taken for a later SUBSCRIBE's).
 */
typedef struct {
    ngx_str_node_t sn; /* key: P:out:ID */
    ngx_queue_t    streams;
    ngx_uint_t     subs;      /* SUBSCRIBEs not acknowledged yet */
    unsigned       acked : 1; /* the SUBSCRIBE is in effect */
} ngx_http_ragq_sjob_t;


/*
 * Output the client has not taken, beyond which pieces are not written out
 * but left in P:out:ID (the stream is "behind"); read again, by a sync,
 * when the client has taken half of it. A sync reads at most
 * NGX_HTTP_RAGQ_STREAM_PAGE entries.
 */
#define NGX_HTTP_RAGQ_STREAM_BACKLOG 65536
#define NGX_HTTP_RAGQ_STREAM_PAGE    64


/* a stream; lives in its request's pool: the cleanup unlinks it */
typedef struct {
    ngx_http_request_t       *request; /* NULL once ended or gone */
    ngx_http_cleanup_t       *cleanup;
    ngx_http_ragq_loc_conf_t *lcf;
    ngx_http_ragq_sjob_t     *sjob;
    ngx_http_ragq_cell_t     *cell; /* the sync in flight */
    ngx_chain_t              *out;  /* the buffer being filled */
    ngx_chain_t              *free; /* buffers written out, to reuse */
    ngx_chain_t              *busy; /* buffers nginx still writes */
    ngx_queue_t               q;    /* in sjob->streams */
    ngx_queue_t               all;
    ngx_event_t               timer; /* the start deadline, then heartbeats */
    uint64_t                  last;  /* the last piece sent */
    u_char                    job_id[NGX_HTTP_RAGQ_JOB_ID_LEN];
    u_char                    step;   /* of the job read */
    u_char                    status; /* last sent: 0, 'q'ueued, 's'tarted */
    unsigned                  started : 1; /* the 200 is sent */
    unsigned                  again : 1;   /* sync again after this one */
    unsigned                  owed : 1;    /* a sync could not be sent */
    unsigned                  behind : 1;  /* pieces left in Valkey */
} ngx_http_ragq_stream_t;


/* ngx_http_ragq_stream_jobs.c */
ngx_http_ragq_sjob_t *ngx_http_ragq_sjob_get(ngx_str_t *key, ngx_log_t *log);
void                  ngx_http_ragq_stream_link(ngx_http_ragq_stream_t *s);
ngx_http_request_t   *ngx_http_ragq_stream_take(ngx_http_ragq_stream_t *s);

/* ngx_http_ragq_stream.c */
ngx_int_t  ngx_http_ragq_stream_send(ngx_http_ragq_stream_t *s, ngx_buf_t *b,
                                     ngx_flag_t last);
ngx_buf_t *ngx_http_ragq_stream_buf(ngx_http_ragq_stream_t *s, size_t len);
void       ngx_http_ragq_stream_cut(ngx_http_ragq_stream_t *s);
void       ngx_http_ragq_stream_fail(ngx_http_ragq_stream_t *s, ngx_int_t rc);
ngx_int_t  ngx_http_ragq_stream_sync(ngx_http_ragq_stream_t *s);
void       ngx_http_ragq_stream_resync(ngx_http_ragq_stream_t *s);
ngx_flag_t ngx_http_ragq_stream_full(ngx_http_ragq_stream_t *s, size_t max);
size_t     ngx_http_ragq_piece_len(u_char *text, size_t len);
u_char *ngx_http_ragq_piece(u_char *p, uint64_t seq, u_char *text, size_t len,
                            ngx_flag_t reset);


#endif /* _NGX_HTTP_RAGQ_STREAM_INT_H_INCLUDED_ */
