/*
 * config.h: the settings of ragq-worker and ragq-ingest, read from the
 * environment names users already know (OPENAI_*, QDRANT_*) plus RAGQ_*,
 * each with a matching --flag (flags win), and --help.  Implemented in
 * config.c.
 */

#ifndef RAGQ_CONFIG_H
#define RAGQ_CONFIG_H

#include <stddef.h>

typedef enum { RAGQ_PROG_WORKER, RAGQ_PROG_INGEST } ragq_prog_t;

typedef struct {
    /* shared by both programs */
    const char *valkey_url;     /* RAGQ_VALKEY_URL  redis://127.0.0.1:6379 */
    const char *prefix;         /* RAGQ_PREFIX      ragq */
    const char *chat_base_url;  /* OPENAI_BASE_URL  https://api.openai.com/v1 */
    const char *chat_api_key;   /* OPENAI_API_KEY */
    const char *chat_model;     /* RAGQ_CHAT_MODEL  gpt-4o-mini */
    const char *embed_base_url; /* RAGQ_EMBED_BASE_URL, else OPENAI_BASE_URL */
    const char *embed_api_key;  /* RAGQ_EMBED_API_KEY, else OPENAI_API_KEY */
    const char *embed_model;    /* RAGQ_EMBED_MODEL text-embedding-3-small */
    const char *qdrant_url;     /* QDRANT_URL */
    const char *qdrant_api_key; /* QDRANT_API_KEY */
    const char *collection;     /* RAGQ_COLLECTION  documents */
    unsigned    top_k;          /* RAGQ_TOP_K       5 */

    /*
     * Backends, resolved: RAGQ_EMBEDDER "openai" | "hash", RAGQ_STORE
     * "qdrant" | "local", RAGQ_ANSWERER "openai" | "extractive".  When not
     * set: openai when OPENAI_BASE_URL or OPENAI_API_KEY (or the RAGQ_EMBED_
     * ones for the embedder) is set, else hash / extractive; qdrant when
     * QDRANT_URL is set, else local.
     */
    const char *embedder;
    const char *store;
    const char *answerer;
    const char *store_path; /* RAGQ_STORE_PATH  ./ragq-data */

    /* ragq-worker */
    unsigned    concurrency;        /* RAGQ_CONCURRENCY     64 */
    unsigned    max_attempts;       /* RAGQ_MAX_ATTEMPTS    3 */
    long        reclaim_after_ms;   /* RAGQ_RECLAIM_AFTER   60s */
    long        shutdown_grace_ms;  /* RAGQ_SHUTDOWN_GRACE  30s */
    long        result_ttl_ms;      /* RAGQ_RESULT_TTL      24h */
    long        http_timeout_ms;    /* RAGQ_HTTP_TIMEOUT    120s, one call */
    long        connect_timeout_ms; /* RAGQ_CONNECT_TIMEOUT 5s */
    const char *http_client;        /* RAGQ_HTTP_CLIENT own | curl; NULL own */
    /* RAGQ_MAX_ANSWER_BYTES; 0: the default of each call (job.h) */
    unsigned long max_answer_bytes;
    unsigned      max_tokens;         /* RAGQ_MAX_TOKENS      0 = not sent */
    const char   *stream;             /* RAGQ_STREAM on | off; NULL on */
    long          stream_interval_ms; /* RAGQ_STREAM_INTERVAL 50ms */
    const char   *consumer;           /* RAGQ_CONSUMER        <host>-<pid> */

    /* ragq-worker's Valkey connections (valkey_net.c) */
    long        valkey_timeout_ms;      /* RAGQ_VALKEY_TIMEOUT     10s */
    const char *valkey_ca_file;         /* RAGQ_VALKEY_CA_FILE     system CAs */
    const char *valkey_cert_file;       /* RAGQ_VALKEY_CERT_FILE */
    const char *valkey_key_file;        /* RAGQ_VALKEY_KEY_FILE */
    const char *valkey_tls_server_name; /* RAGQ_VALKEY_TLS_SERVER_NAME */
    unsigned    valkey_tls_verify;      /* RAGQ_VALKEY_TLS_VERIFY  1 */
    const char *valkey_sentinel_user;   /* RAGQ_VALKEY_SENTINEL_USER */
    const char *valkey_sentinel_password; /* RAGQ_VALKEY_SENTINEL_PASSWORD */
    int         log_level;    /* RAGQ_LOG_LEVEL 0 error .. 3 debug (2) */
    const char *log_format;   /* RAGQ_LOG_FORMAT text | json; NULL text */
    long        heartbeat_ms; /* RAGQ_HEARTBEAT       5s; TTL 3x */
    const char *health_file;  /* RAGQ_HEALTH_FILE     none (heartbeat.c) */

    /* ragq-worker's callbacks (callback.c) */
    const char *webhook_secret;       /* RAGQ_WEBHOOK_SECRET whsec_... */
    unsigned    callback_attempts;    /* RAGQ_CALLBACK_ATTEMPTS    5 */
    long        callback_timeout_ms;  /* RAGQ_CALLBACK_TIMEOUT     10s */
    unsigned    callback_concurrency; /* RAGQ_CALLBACK_CONCURRENCY 16 */

    /* ragq-ingest */
    unsigned chunk_size;    /* RAGQ_CHUNK_SIZE     1000 characters */
    unsigned chunk_overlap; /* RAGQ_CHUNK_OVERLAP  200 */
    unsigned batch_size;    /* RAGQ_BATCH_SIZE     64 texts per embed call */
    char   **paths;         /* positional arguments: files and directories */
    int      npaths;
} ragq_config_t;

/*
 * Durations accept "250ms", "30s", "5m", "24h" or a bare number of seconds.
 * Returns 0 when cfg is ready, 1 when --help or --version was printed (exit
 * 0), -1 after printing a message that says what is wrong (exit 2).
 */
int ragq_config_load(ragq_config_t *cfg, ragq_prog_t prog, int argc,
                     char **argv);

/*
 * Checks that need no network: URLs parse, API keys are present where the
 * server needs one (api.openai.com), numbers are in range.  Returns 0, or
 * -1 with a message for the user in err.
 */
int ragq_config_check(const ragq_config_t *cfg, char *err, size_t errlen);

#endif
