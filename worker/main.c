/*
 * main.c: ragq-worker: configuration, start-up checks, and the one event
 * loop that runs the queue (queue.c), the pipeline (job.c) and HTTP
 * (http.c); SIGTERM/SIGINT stop it gracefully; systemd is told (sdnotify.c).
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "heartbeat.h"
#include "http.h"
#include "job.h"
#include "loop.h"
#include "queue.h"
#include "sdnotify.h"
#include "valkey_net.h"

static void
on_signal(int signo, void *data)
{
    ragq_log(RAGQ_LOG_INFO, "%s received",
             signo == SIGTERM ? "SIGTERM" : "SIGINT");
    ragq_queue_stop(data);
}

int
main(int argc, char **argv)
{
    ragq_config_t      cfg;
    ragq_valkey_addr_t addr;
    ragq_vnet_t        net;
    ragq_heartbeat_t  *hb;
    ragq_sdnotify_t   *sd;
    ragq_pipeline_t    pipeline;
    ragq_loop_t       *loop;
    ragq_http_t       *http;
    ragq_queue_t      *q;
    char               err[1024];
    int                rc;
    long               per_host;

    memset(&cfg, 0, sizeof(cfg));
    memset(&addr, 0, sizeof(addr));
    rc = ragq_config_load(&cfg, RAGQ_PROG_WORKER, argc, argv);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    ragq_log_level = cfg.log_level;
    ragq_log_set_json(cfg.log_format && strcmp(cfg.log_format, "json") == 0);
    if (ragq_config_check(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "ragq-worker: %s\n", err);
        return 2;
    }
    /* Jitter must differ between workers started at the same moment. */
    srandom((unsigned) (time(NULL) ^ ((unsigned) getpid() << 16)));
    signal(SIGPIPE, SIG_IGN);

    loop = ragq_loop_new();
    /* Names are resolved on every connect, off the loop (resolver.h);
     * the TLS files are read now, so a bad one stops us here. */
    if (loop &&
        ragq_vnet_init(&net, &addr, loop, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "ragq-worker: %s\n", err);
        ragq_loop_free(loop); /* sanitized runs look for leaks, also here */
        return 2;
    }
    /* nothing a log line says may show these */
    ragq_log_hide(cfg.chat_api_key);
    ragq_log_hide(cfg.embed_api_key);
    ragq_log_hide(cfg.qdrant_api_key);
    ragq_log_hide(addr.password);
    ragq_log_hide(cfg.valkey_sentinel_password);
    ragq_log_hide(getenv("RAGQ_WEBHOOK_SECRET"));
    ragq_log_hide(cfg.webhook_secret); /* also when given as a flag */
    /*
     * One connection per job in flight is what HTTP/1.1 needs; HTTP/2
     * servers multiplex and use far fewer.
     */
    per_host = (long) cfg.concurrency;
    http = loop ? ragq_http_new(loop, cfg.connect_timeout_ms, per_host) : NULL;
    if (loop == NULL || http == NULL) {
        fprintf(stderr, "ragq-worker: cannot set up the event loop\n");
        return 1;
    }
    ragq_http_set_pace(http, cfg.stream_interval_ms);
    ragq_http_use_curl(http, cfg.http_client != NULL &&
                                 strcmp(cfg.http_client, "curl") == 0);
    if (ragq_pipeline_init(&pipeline, loop, http, &cfg, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "ragq-worker: %s\n", err);
        ragq_http_free(http);
        ragq_vnet_free(&net);
        ragq_loop_free(loop);
        ragq_valkey_addr_free(&addr);
        return 2;
    }
    q = ragq_queue_new(loop, &pipeline, &cfg, &net);
    hb = q ? ragq_heartbeat_new(loop, &cfg, q) : NULL;
    /* systemd (Type=notify): READY=1, STOPPING=1, the watchdog's pings */
    sd = hb ? ragq_sdnotify_new(loop) : NULL;
    if (sd == NULL || ragq_loop_signals(loop, on_signal, q) != 0) {
        fprintf(stderr, "ragq-worker: cannot set up the queue\n");
        return 1;
    }
    ragq_queue_set_notify(q, sd);
    ragq_sdnotify_start(sd);
    ragq_vnet_start(&net);
    ragq_queue_start(q);
    ragq_heartbeat_start(hb);
    if (ragq_loop_run(loop) != 0) {
        return 1;
    }
    rc = ragq_queue_exit_code(q);
    if (rc == 0) {
        ragq_heartbeat_remove(hb);
    }
    ragq_queue_free(q);
    ragq_heartbeat_free(hb);
    ragq_sdnotify_free(sd);
    ragq_vnet_free(&net);
    ragq_pipeline_free(&pipeline);
    ragq_http_free(http);
    ragq_loop_free(loop);
    ragq_valkey_addr_free(&addr);
    free(cfg.paths); /* the worker takes no positional arguments */
    if (rc == 0) {
        ragq_log(RAGQ_LOG_INFO, "stopped");
    }
    return rc;
}
