/*
 * test_config.c: worker/config.c: defaults, environment, flags (which
 * win), durations, range and URL checks, backend resolution, and the exact
 * messages users see.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "suites.h"

static const char *const envs[] = {
    "RAGQ_VALKEY_URL",
    "RAGQ_PREFIX",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "RAGQ_CHAT_MODEL",
    "RAGQ_EMBED_BASE_URL",
    "RAGQ_EMBED_API_KEY",
    "RAGQ_EMBED_MODEL",
    "QDRANT_URL",
    "QDRANT_API_KEY",
    "RAGQ_COLLECTION",
    "RAGQ_TOP_K",
    "RAGQ_EMBEDDER",
    "RAGQ_STORE",
    "RAGQ_ANSWERER",
    "RAGQ_STORE_PATH",
    "RAGQ_CONCURRENCY",
    "RAGQ_MAX_ATTEMPTS",
    "RAGQ_RECLAIM_AFTER",
    "RAGQ_SHUTDOWN_GRACE",
    "RAGQ_RESULT_TTL",
    "RAGQ_HTTP_TIMEOUT",
    "RAGQ_CONNECT_TIMEOUT",
    "RAGQ_MAX_TOKENS",
    "RAGQ_STREAM",
    "RAGQ_STREAM_INTERVAL",
    "RAGQ_CONSUMER",
    "RAGQ_HEARTBEAT",
    "RAGQ_HEALTH_FILE",
    "RAGQ_LOG_LEVEL",
    "RAGQ_CHUNK_SIZE",
    "RAGQ_CHUNK_OVERLAP",
    "RAGQ_BATCH_SIZE",
    "RAGQ_VALKEY_TIMEOUT",
    "RAGQ_VALKEY_CA_FILE",
    "RAGQ_VALKEY_CERT_FILE",
    "RAGQ_VALKEY_KEY_FILE",
    "RAGQ_VALKEY_TLS_SERVER_NAME",
    "RAGQ_VALKEY_TLS_VERIFY",
    "RAGQ_VALKEY_SENTINEL_USER",
    "RAGQ_VALKEY_SENTINEL_PASSWORD",
    "RAGQ_MAX_ANSWER_BYTES",
};

static void
clear_env(void)
{
    size_t i;

    for (i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
        unsetenv(envs[i]);
    }
}

static char captured[16384];

/*
 * Runs ragq_config_load with argv (NULL-terminated), stdout and stderr
 * going to captured[].
 */
static int
load(ragq_config_t *cfg, ragq_prog_t prog, const char **args)
{
    char  *argv[32];
    int    argc = 0, rc, saved_out, saved_err;
    FILE  *tmp = tmpfile();
    size_t n;

    argv[argc++] = prog == RAGQ_PROG_WORKER ? "ragq-worker" : "ragq-ingest";
    while (args && *args) {
        argv[argc++] = (char *) *args++;
    }
    argv[argc] = NULL;

    fflush(stdout);
    fflush(stderr);
    saved_out = dup(1);
    saved_err = dup(2);
    dup2(fileno(tmp), 1);
    dup2(fileno(tmp), 2);
    rc = ragq_config_load(cfg, prog, argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    rewind(tmp);
    n = fread(captured, 1, sizeof(captured) - 1, tmp);
    captured[n] = '\0';
    fclose(tmp);
    return rc;
}

START_TEST(test_defaults)
{
    ragq_config_t cfg;
    char          err[512];

    clear_env();
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), 0);
    ck_assert_str_eq(cfg.valkey_url, "redis://127.0.0.1:6379");
    ck_assert_str_eq(cfg.prefix, "ragq");
    ck_assert_str_eq(cfg.chat_base_url, "https://api.openai.com/v1");
    ck_assert_str_eq(cfg.embed_base_url, "https://api.openai.com/v1");
    ck_assert_str_eq(cfg.chat_model, "gpt-4o-mini");
    ck_assert_str_eq(cfg.embed_model, "text-embedding-3-small");
    ck_assert_str_eq(cfg.collection, "documents");
    ck_assert_uint_eq(cfg.top_k, 5);
    ck_assert_uint_eq(cfg.concurrency, 64);
    ck_assert_uint_eq(cfg.max_attempts, 3);
    ck_assert_int_eq(cfg.valkey_timeout_ms, 10000);
    ck_assert_uint_eq(cfg.valkey_tls_verify, 1);
    ck_assert_ptr_null(cfg.valkey_ca_file);
    ck_assert_int_eq(cfg.reclaim_after_ms, 60000);
    ck_assert_int_eq(cfg.shutdown_grace_ms, 30000);
    ck_assert_int_eq(cfg.result_ttl_ms, 86400000L);
    ck_assert_int_eq(cfg.http_timeout_ms, 120000);
    ck_assert_int_eq(cfg.connect_timeout_ms, 5000);
    ck_assert_int_eq(cfg.log_level, 2);
    ck_assert_ptr_null(cfg.qdrant_url);
    ck_assert_ptr_null(cfg.chat_api_key);
    ck_assert_ptr_nonnull(strchr(cfg.consumer, '-'));
    ck_assert_int_eq(cfg.heartbeat_ms, 5000);
    ck_assert_ptr_null(cfg.health_file); /* no health file */
    /* nothing configured: the offline backends */
    ck_assert_str_eq(cfg.embedder, "hash");
    ck_assert_str_eq(cfg.store, "local");
    ck_assert_str_eq(cfg.answerer, "extractive");
    ck_assert_str_eq(cfg.store_path, "./ragq-data");
    ck_assert_int_eq(ragq_config_check(&cfg, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_env_and_flags)
{
    ragq_config_t cfg;
    const char   *a1[] = {"--top-k",       "7",  "--collection=books",
                          "--prefix",      "p2", "--health-file",
                          "/run/w.health", NULL};

    clear_env();
    setenv("RAGQ_TOP_K", "9", 1);
    setenv("RAGQ_COLLECTION", "env-coll", 1);
    setenv("RAGQ_PREFIX", "", 1); /* empty means unset */
    setenv("RAGQ_CONCURRENCY", "12", 1);
    setenv("RAGQ_RECLAIM_AFTER", "90", 1);
    setenv("RAGQ_LOG_LEVEL", "debug", 1);
    setenv("RAGQ_HEALTH_FILE", "/tmp/w.health", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), 0);
    ck_assert_str_eq(cfg.health_file, "/tmp/w.health");
    ck_assert_uint_eq(cfg.top_k, 9);
    ck_assert_str_eq(cfg.collection, "env-coll");
    ck_assert_str_eq(cfg.prefix, "ragq");
    ck_assert_uint_eq(cfg.concurrency, 12);
    ck_assert_int_eq(cfg.reclaim_after_ms, 90000);
    ck_assert_int_eq(cfg.log_level, 3);

    /* flags win, both "--x v" and "--x=v" */
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, a1), 0);
    ck_assert_uint_eq(cfg.top_k, 7);
    ck_assert_str_eq(cfg.collection, "books");
    ck_assert_str_eq(cfg.prefix, "p2");
    ck_assert_uint_eq(cfg.concurrency, 12);
    ck_assert_str_eq(cfg.health_file, "/run/w.health");
}
END_TEST

START_TEST(test_durations)
{
    ragq_config_t cfg;
    const char   *ok[] = {"--reclaim-after",
                          "250000ms",
                          "--shutdown-grace",
                          "0",
                          "--result-ttl",
                          "7d",
                          "--http-timeout",
                          "2m",
                          "--connect-timeout=1500ms",
                          NULL};
    const char   *bad[] = {"--result-ttl", "1 day", NULL};
    const char   *low[] = {"--reclaim-after", "10ms", NULL};

    clear_env();
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, ok), 0);
    ck_assert_int_eq(cfg.reclaim_after_ms, 250000);
    ck_assert_int_eq(cfg.shutdown_grace_ms, 0);
    ck_assert_int_eq(cfg.result_ttl_ms, 7L * 86400000L);
    ck_assert_int_eq(cfg.http_timeout_ms, 120000);
    ck_assert_int_eq(cfg.connect_timeout_ms, 1500);

    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, bad), -1);
    ck_assert_str_eq(captured,
                     "--result-ttl must be a duration like 250ms, 30s, 5m or "
                     "24h (a bare number is seconds), got '1 day'\n");
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, low), -1);
    ck_assert_str_eq(captured,
                     "--reclaim-after must be from 1s to 24h, got '10ms'\n");
    setenv("RAGQ_SHUTDOWN_GRACE", "5x", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), -1);
    ck_assert_ptr_nonnull(strstr(captured, "RAGQ_SHUTDOWN_GRACE must be a "
                                           "duration"));
    unsetenv("RAGQ_SHUTDOWN_GRACE");

    /* RAGQ_STREAM_INTERVAL: 50ms by default, 10ms..1s. */
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), 0);
    ck_assert_int_eq(cfg.stream_interval_ms, 50);
    setenv("RAGQ_STREAM_INTERVAL", "200ms", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), 0);
    ck_assert_int_eq(cfg.stream_interval_ms, 200);
    setenv("RAGQ_STREAM_INTERVAL", "5ms", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), -1);
    ck_assert_ptr_nonnull(strstr(captured, "RAGQ_STREAM_INTERVAL must be from "
                                           "10ms to 1s"));
    unsetenv("RAGQ_STREAM_INTERVAL");
}
END_TEST

/* RAGQ_MAX_ANSWER_BYTES: bytes or k/M/G (binary), 1k..1G; unset is 0. */
START_TEST(test_sizes)
{
    ragq_config_t cfg;
    const char   *cases[][2] = {{"4096", "4096"},  {"512k", "524288"},
                                {"8M", "8388608"}, {"1G", "1073741824"},
                                {"1k", "1024"},    {"3m", "3145728"}};
    const char   *bad[] = {"1023", "2G", "-1",   "8 M",
                           "8MB",  "M",  "0x10", "99999999999999999999k"};
    size_t        i;

    clear_env();
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), 0);
    ck_assert_uint_eq(cfg.max_answer_bytes, 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[] = {"--max-answer-bytes", cases[i][0], NULL};

        ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, args), 0);
        ck_assert_uint_eq(cfg.max_answer_bytes, strtoul(cases[i][1], NULL, 10));
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[200];

        setenv("RAGQ_MAX_ANSWER_BYTES", bad[i], 1);
        ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), -1);
        snprintf(msg, sizeof(msg),
                 "RAGQ_MAX_ANSWER_BYTES must be a size from 1k to 1024M like "
                 "512k, 8M or bytes, got '%s'\n",
                 bad[i]);
        ck_assert_str_eq(captured, msg);
    }
    unsetenv("RAGQ_MAX_ANSWER_BYTES");
}
END_TEST

START_TEST(test_messages)
{
    ragq_config_t cfg;
    const char   *unknown[] = {"--top-kk", "3", NULL};
    const char   *missing[] = {"--top-k", NULL};
    const char   *other[] = {"--chunk-size", "10", NULL};
    const char   *pos[] = {"extra", NULL};
    const char   *choice[] = {"--store", "sqlite", NULL};

    clear_env();
    setenv("RAGQ_TOP_K", "x", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), -1);
    ck_assert_str_eq(captured, "RAGQ_TOP_K must be a whole number from 1 to "
                               "100, got 'x'\n");
    setenv("RAGQ_TOP_K", "101", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), -1);
    ck_assert_str_eq(captured, "RAGQ_TOP_K must be a whole number from 1 to "
                               "100, got '101'\n");
    setenv("RAGQ_TOP_K", "-1", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), -1);
    unsetenv("RAGQ_TOP_K");

    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, unknown), -1);
    ck_assert_str_eq(captured, "ragq-worker: unknown option '--top-kk'; see "
                               "ragq-worker --help\n");
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, missing), -1);
    ck_assert_str_eq(captured, "--top-k needs a value (--top-k N)\n");
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, other), -1);
    ck_assert_str_eq(captured, "--chunk-size is an option of ragq-ingest, "
                               "not of ragq-worker\n");
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, pos), -1);
    ck_assert_ptr_nonnull(strstr(captured, "takes no arguments, got 'extra'"));
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, choice), -1);
    ck_assert_str_eq(captured, "--store must be 'qdrant' or 'local' (or "
                               "'auto'), got 'sqlite'\n");
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_INGEST, NULL), -1);
    ck_assert_ptr_nonnull(strstr(captured, "needs at least one file"));
}
END_TEST

START_TEST(test_help_and_version)
{
    ragq_config_t cfg;
    const char   *help[] = {"--help", NULL};
    const char   *ver[] = {"--version", NULL};

    clear_env();
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, help), 1);
    ck_assert_ptr_nonnull(strstr(captured, "Usage: ragq-worker"));
    ck_assert_ptr_nonnull(strstr(captured, "--valkey-url URL"));
    ck_assert_ptr_nonnull(strstr(captured, "RAGQ_VALKEY_URL (default "
                                           "redis://127.0.0.1:6379)"));
    ck_assert_ptr_nonnull(strstr(captured, "--openai-api-key KEY"));
    ck_assert_ptr_nonnull(strstr(captured, "\nQueue:\n"));
    ck_assert_ptr_null(strstr(captured, "--chunk-size"));

    ck_assert_int_eq(load(&cfg, RAGQ_PROG_INGEST, help), 1);
    ck_assert_ptr_nonnull(strstr(captured, "Usage: ragq-ingest"));
    ck_assert_ptr_nonnull(strstr(captured, "--chunk-size N"));
    ck_assert_ptr_nonnull(strstr(captured, "RAGQ_CHUNK_SIZE"));
    ck_assert_ptr_null(strstr(captured, "--valkey-url"));

    ck_assert_int_eq(load(&cfg, RAGQ_PROG_INGEST, ver), 1);
    ck_assert_ptr_nonnull(strstr(captured, "ragq-ingest "));
}
END_TEST

START_TEST(test_backends)
{
    ragq_config_t cfg;
    const char *flags[] = {"--embedder", "hash", "--answerer=extractive", NULL};
    const char *paths[] = {"a.md", "--chunk-size", "500", "docs", NULL};

    clear_env();
    setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), 0);
    ck_assert_str_eq(cfg.embedder, "openai");
    ck_assert_str_eq(cfg.answerer, "openai");
    ck_assert_str_eq(cfg.store, "local");
    ck_assert_str_eq(cfg.embed_base_url, "http://127.0.0.1:11434/v1");

    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, flags), 0);
    ck_assert_str_eq(cfg.embedder, "hash");
    ck_assert_str_eq(cfg.answerer, "extractive");

    /* only an embeddings server: answers stay extractive */
    clear_env();
    setenv("RAGQ_EMBED_BASE_URL", "http://127.0.0.1:8080", 1);
    setenv("QDRANT_URL", "http://127.0.0.1:6333", 1);
    setenv("OPENAI_API_KEY", "sk-x", 1);
    unsetenv("OPENAI_API_KEY");
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), 0);
    ck_assert_str_eq(cfg.embedder, "openai");
    ck_assert_str_eq(cfg.answerer, "extractive");
    ck_assert_str_eq(cfg.store, "qdrant");
    ck_assert_str_eq(cfg.embed_base_url, "http://127.0.0.1:8080");

    /* the embed key falls back to the OpenAI one */
    setenv("OPENAI_API_KEY", "sk-1", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_INGEST, paths), 0);
    ck_assert_str_eq(cfg.embed_api_key, "sk-1");
    ck_assert_int_eq(cfg.npaths, 2);
    ck_assert_str_eq(cfg.paths[0], "a.md");
    ck_assert_str_eq(cfg.paths[1], "docs");
    ck_assert_uint_eq(cfg.chunk_size, 500);
    ck_assert_uint_eq(cfg.chunk_overlap, 200);
    ck_assert_uint_eq(cfg.batch_size, 64);
    /* ingest does not read worker-only variables */
    setenv("RAGQ_CONCURRENCY", "not a number", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_INGEST, paths), 0);
}
END_TEST

static void
check_fails(ragq_config_t *cfg, const char *want)
{
    char err[512];

    ck_assert_int_eq(ragq_config_check(cfg, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, want) != NULL, "'%s' not in '%s'", want, err);
}

START_TEST(test_check)
{
    ragq_config_t cfg;
    char          err[512];
    size_t        i;
    const char   *good[] = {
          "redis://127.0.0.1:6379",
          "redis://:secret@127.0.0.1:6380/2",
          "redis://user:secret@localhost:6379",
          "redis://[::1]:6379/0",
          "redis://127.0.0.1",
          "unix:///run/valkey/valkey.sock",
          "unix:///tmp/v.sock?db=3",
          "valkey://h:1/",
          "rediss://user:secret@valkey.internal:6380/1",
          "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2/mymaster/0",
    };
    const char *bad[] = {
        "http://127.0.0.1:6379", "redis://127.0.0.1:0",
        "redis://:6379",         "redis://127.0.0.1:6379/x",
        "unix://relative.sock",  "unix:///tmp/v.sock?database=1",
        "127.0.0.1:6379",        "redis://[::1:6379",
        "redis+sentinel://h:1",  "redis://a,b/0",
    };

    clear_env();
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), 0);
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cfg.valkey_url = good[i];
        ck_assert_msg(ragq_config_check(&cfg, err, sizeof(err)) == 0, "%s: %s",
                      good[i], err);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.valkey_url = bad[i];
        ck_assert_msg(ragq_config_check(&cfg, err, sizeof(err)) == -1, "%s",
                      bad[i]);
        ck_assert_ptr_nonnull(strstr(err, "RAGQ_VALKEY_URL must look like"));
    }
    /* the password never shows in messages */
    cfg.valkey_url = "redis://:hunter2@127.0.0.1:99999";
    check_fails(&cfg, "'redis://:***@127.0.0.1:99999': the port must be");
    ck_assert_ptr_null(strstr(err, "hunter2"));
    /* TLS and Sentinel settings only with a URL that uses them: set for
     * TLS but talking plain text is refused */
    cfg.valkey_url = "rediss://127.0.0.1:6379";
    ck_assert_int_eq(ragq_config_check(&cfg, err, sizeof(err)), 0);
    cfg.valkey_ca_file = "/etc/ssl/certs/ca.pem";
    ck_assert_int_eq(ragq_config_check(&cfg, err, sizeof(err)), 0);
    cfg.valkey_url = "redis://127.0.0.1:6379";
    check_fails(&cfg, "RAGQ_VALKEY_CA_FILE is set but RAGQ_VALKEY_URL does "
                      "not use TLS");
    cfg.valkey_ca_file = NULL;
    cfg.valkey_tls_server_name = "valkey.internal";
    check_fails(&cfg, "RAGQ_VALKEY_TLS_SERVER_NAME is set but");
    cfg.valkey_url = "rediss+sentinel://h:26379/m";
    ck_assert_int_eq(ragq_config_check(&cfg, err, sizeof(err)), 0);
    cfg.valkey_tls_server_name = NULL;
    cfg.valkey_sentinel_password = "s";
    ck_assert_int_eq(ragq_config_check(&cfg, err, sizeof(err)), 0);
    cfg.valkey_url = "rediss://127.0.0.1:6379";
    check_fails(&cfg, "RAGQ_VALKEY_SENTINEL_PASSWORD is set but "
                      "RAGQ_VALKEY_URL is not a redis+sentinel:// URL");
    cfg.valkey_sentinel_password = NULL;
    cfg.valkey_url = "redis://127.0.0.1:6379";

    /* api.openai.com needs a key; another server does not */
    setenv("OPENAI_BASE_URL", "https://api.openai.com/v1", 1);
    ck_assert_int_eq(load(&cfg, RAGQ_PROG_WORKER, NULL), 0);
    check_fails(&cfg, "RAGQ_EMBED_API_KEY (or OPENAI_API_KEY) is needed for "
                      "https://api.openai.com/v1");
    cfg.embedder = "hash";
    check_fails(&cfg, "OPENAI_API_KEY is needed for https://api.openai.com/v1");
    cfg.chat_api_key = "sk-1";
    ck_assert_int_eq(ragq_config_check(&cfg, err, sizeof(err)), 0);
    cfg.chat_base_url = "ftp://example.org";
    check_fails(&cfg, "OPENAI_BASE_URL must be an http:// or https:// URL");
    cfg.chat_base_url = "http://127.0.0.1:11434/v1";
    ck_assert_int_eq(ragq_config_check(&cfg, err, sizeof(err)), 0);

    cfg.store = "qdrant";
    cfg.qdrant_url = NULL;
    check_fails(&cfg, "RAGQ_STORE=qdrant needs QDRANT_URL");
    cfg.qdrant_url = "127.0.0.1:6333";
    check_fails(&cfg, "QDRANT_URL must be an http:// or https:// URL");
    cfg.qdrant_url = "http://127.0.0.1:6333";
    ck_assert_int_eq(ragq_config_check(&cfg, err, sizeof(err)), 0);

    cfg.collection = "a/b";
    check_fails(&cfg, "RAGQ_COLLECTION must be 1 to 255 characters");
    cfg.collection = "documents";
    cfg.chunk_size = 100;
    cfg.chunk_overlap = 100;
    check_fails(&cfg, "RAGQ_CHUNK_OVERLAP (100) must be smaller than "
                      "RAGQ_CHUNK_SIZE (100)");
}
END_TEST

Suite *
ragq_suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");

    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_env_and_flags);
    tcase_add_test(tc, test_durations);
    tcase_add_test(tc, test_sizes);
    tcase_add_test(tc, test_messages);
    tcase_add_test(tc, test_help_and_version);
    tcase_add_test(tc, test_backends);
    tcase_add_test(tc, test_check);
    suite_add_tcase(s, tc);
    return s;
}
