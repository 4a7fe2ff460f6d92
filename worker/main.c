/*
 * main.c: ragq-worker: configuration, start-up checks, and the one event
 * loop that runs the queue (queue.c), the pipeline (job.c) and HTTP
 * (http.c); SIGTERM/SIGINT stop it gracefully.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "job.h"
#include "loop.h"
#include "queue.h"
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
    ragq_pipeline_t    pipeline;
    ragq_loop_t       *loop;
    ragq_http_t       *http;
    ragq_queue_t      *q;
    char               err[1024];
    int                rc;
    long               per_host;

    memset(&cfg, 0, sizeof(cfg));
    rc = ragq_config_load(&cfg, RAGQ_PROG_WORKER, argc, argv);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    ragq_log_level = cfg.log_level;
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
        return 2;
    }
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
    if (ragq_pipeline_init(&pipeline, loop, http, &cfg, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "ragq-worker: %s\n", err);
        return 2;
    }
    q = ragq_queue_new(loop, &pipeline, &cfg, &net);
    if (q == NULL || ragq_loop_signals(loop, on_signal, q) != 0) {
        fprintf(stderr, "ragq-worker: cannot set up the queue\n");
        return 1;
    }
    ragq_vnet_start(&net);
    ragq_queue_start(q);
    if (ragq_loop_run(loop) != 0) {
        return 1;
    }
    rc = ragq_queue_exit_code(q);
    ragq_queue_free(q);
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
