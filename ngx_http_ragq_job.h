/*
 * ragq: a job as the module sees it (ngx_http_ragq_job.c): job ids, new
 * jobs, and what a job hash (a HGETALL reply) says: its fields, whether it
 * is final and visible to a tenant, and the job view (the /job-status JSON).
 */

#ifndef _NGX_HTTP_RAGQ_JOB_H_INCLUDED_
#define _NGX_HTTP_RAGQ_JOB_H_INCLUDED_


#include "ngx_http_ragq_module.h"
#include "ngx_http_ragq_valkey.h"


/*
 * A job id is 32 lowercase hex characters: its queue entry's id (16) and
 * this many of random bits in hex, which the entry holds as "r".
 */
#define NGX_HTTP_RAGQ_JOB_RANDOM (NGX_HTTP_RAGQ_JOB_ID_LEN - 16)


void ngx_http_ragq_job_init_process(void);

/* a new job, and the reply that says how it went */
ngx_int_t ngx_http_ragq_job_create(ngx_http_request_t       *r,
                                   ngx_http_ragq_loc_conf_t *lcf,
                                   ngx_http_ragq_cell_t *cell, ngx_str_t *query,
                                   ngx_uint_t top_k, ngx_str_t *callback,
                                   ngx_str_t *idem);
/* NGX_DECLINED: the Idempotency-Key names a job with another question;
 * NGX_BUSY: retry (an entry id no job id can carry) */
ngx_int_t ngx_http_ragq_job_created(ngx_http_ragq_cell_t *cell,
                                    redisReply *reply, u_char **id,
                                    ngx_int_t *queue_len);

ngx_flag_t ngx_http_ragq_job_id_valid(u_char *p, size_t len);

/* job ids and queue entry ids "<ms>-<seq>" (DEVELOPERS.md, "data model") */
ngx_int_t ngx_http_ragq_job_id_from_entry(u_char *id, u_char *entry,
                                          size_t len);
u_char   *ngx_http_ragq_job_entry_of_id(u_char *buf, u_char *id);

/*
 * Reading a job: its hash (HGETALL), else its queue entry (XRANGE), else
 * its hash once more; ngx_http_ragq_job_found() says which comes next.
 */
#define NGX_HTTP_RAGQ_READ_HASH       0
#define NGX_HTTP_RAGQ_READ_ENTRY      1
#define NGX_HTTP_RAGQ_READ_HASH_AGAIN 2
/* the hash and the entry in one round trip: the cell gets both replies */
#define NGX_HTTP_RAGQ_READ_PAIR 3

/* the most fields a queued job's view takes from its entry, times two */
#define NGX_HTTP_RAGQ_ENTRY_MAX 32

/* a queue entry's job in HGETALL form, pointing into the XRANGE reply */
typedef struct {
    redisReply  reply;
    redisReply *element[NGX_HTTP_RAGQ_ENTRY_MAX];
} ngx_http_ragq_job_entry_t;

ngx_int_t ngx_http_ragq_job_read(ngx_http_ragq_cell_t     *cell,
                                 ngx_http_ragq_loc_conf_t *lcf, u_char *id,
                                 ngx_uint_t step);
ngx_int_t ngx_http_ragq_job_found(u_char *id, ngx_uint_t *step,
                                  redisReply                *reply,
                                  ngx_http_ragq_job_entry_t *je,
                                  redisReply               **job);

/* about the job hash of a HGETALL reply (an array, possibly empty) */
redisReply *ngx_http_ragq_job_field(redisReply *reply, const char *name,
                                    size_t len);
/* a status that does not change any more */
ngx_flag_t ngx_http_ragq_job_final(u_char *status, size_t len);
/* NGX_OK: the job exists and is r's tenant's; NGX_DECLINED: 404 */
ngx_int_t ngx_http_ragq_job_visible(ngx_http_request_t       *r,
                                    ngx_http_ragq_loc_conf_t *lcf,
                                    redisReply               *reply);
/* the job view: the /job-status JSON of the job, allocated in pool */
ngx_int_t ngx_http_ragq_job_view(ngx_pool_t *pool, u_char *id,
                                 redisReply *reply, ngx_str_t *json);
/* the /job-status answer for a HGETALL reply (NULL: the read failed) */
ngx_int_t ngx_http_ragq_job_respond(ngx_http_request_t       *r,
                                    ngx_http_ragq_loc_conf_t *lcf, u_char *id,
                                    redisReply *reply);


#endif /* _NGX_HTTP_RAGQ_JOB_H_INCLUDED_ */
