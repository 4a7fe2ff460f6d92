/*
 * ragq: a job as the module sees it (ngx_http_ragq_job.c): job ids, its
 * visibility to a tenant, and the job view, the /job-status JSON of a job
 * hash.
 */

#ifndef _NGX_HTTP_RAGQ_JOB_H_INCLUDED_
#define _NGX_HTTP_RAGQ_JOB_H_INCLUDED_


#include "ngx_http_ragq_module.h"
#include "ngx_http_ragq_valkey.h"


void       ngx_http_ragq_job_init_process(void);
ngx_int_t  ngx_http_ragq_job_id(u_char *id);
ngx_flag_t ngx_http_ragq_job_id_valid(u_char *p, size_t len);
/* NGX_OK: the job in a HGETALL reply exists and is r's tenant's */
ngx_int_t ngx_http_ragq_job_visible(ngx_http_request_t       *r,
                                    ngx_http_ragq_loc_conf_t *lcf,
                                    redisReply               *reply);
/* the /job-status answer for a HGETALL reply (NULL: the read failed) */
ngx_int_t ngx_http_ragq_status_respond(ngx_http_request_t       *r,
                                       ngx_http_ragq_loc_conf_t *lcf,
                                       u_char *id, redisReply *reply);


#endif /* _NGX_HTTP_RAGQ_JOB_H_INCLUDED_ */
