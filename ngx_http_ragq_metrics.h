/*
 * ragq: Prometheus metrics (ngx_http_ragq_metrics.c): the shared memory
 * zone of counters summed over the nginx workers, the log-phase handler
 * that counts every request of a ragq location, the per-worker gauges, and
 * the ragq_metrics location that exposes them with what Valkey says.
 */

#ifndef _NGX_HTTP_RAGQ_METRICS_H_INCLUDED_
#define _NGX_HTTP_RAGQ_METRICS_H_INCLUDED_


#include "ngx_http_ragq_module.h"


/* postconfiguration: the zone (NULL on failure) and the log-phase handler */
ngx_shm_zone_t *ngx_http_ragq_metrics_init(ngx_conf_t *cf);

/* a worker takes a slot of the zone, and gives it back at exit */
void ngx_http_ragq_metrics_init_process(ngx_cycle_t    *cycle,
                                        ngx_shm_zone_t *zone);
void ngx_http_ragq_metrics_exit_process(void);

/* ragq_metrics: GET the exposition */
ngx_int_t ngx_http_ragq_metrics_handler(ngx_http_request_t *r);

/*
 * Open long-polls and streams of this worker: r starts waiting (it then
 * stays out of the latency histogram), and a wait ends.
 */
void ngx_http_ragq_metrics_waiting(ngx_http_request_t *r);
void ngx_http_ragq_metrics_waited(void);
void ngx_http_ragq_metrics_streaming(ngx_http_request_t *r);
void ngx_http_ragq_metrics_streamed(void);


#endif /* _NGX_HTTP_RAGQ_METRICS_H_INCLUDED_ */
