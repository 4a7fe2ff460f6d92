/*
 * config.c: the settings of ragq-worker and ragq-ingest (config.h).  One
 * table lists every option once: its environment name, the program(s) it
 * belongs to, its type, default and help line.  The flag of an option is
 * its environment name without "RAGQ_", lower-cased, '_' -> '-'
 * (RAGQ_TOP_K -> --top-k, OPENAI_BASE_URL -> --openai-base-url).  Flags
 * win over the environment; empty values count as unset, so an env file
 * can list a name without a value.
 */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "valkey_url.h"
#include "webhook.h"

#ifndef RAGQ_VERSION
#define RAGQ_VERSION "0.1.0"
#endif

#define W 1 /* ragq-worker */
#define I 2 /* ragq-ingest */

typedef enum { T_STR, T_UINT, T_DUR, T_LEVEL, T_CHOICE, T_SIZE } opt_type_t;

typedef struct {
    const char *env;
    int         progs;
    opt_type_t  type;
    size_t      off;
    const char *def; /* parsed like a user value; NULL: none */
    long        min, max;
    const char *arg; /* metavariable in --help */
    const char *help;
    const char *choices; /* T_CHOICE: "a|b" */
    const char *group;
} opt_t;

#define OFF(f) offsetof(ragq_config_t, f)

static const opt_t opts[] = {
    {"RAGQ_VALKEY_URL", W, T_STR, OFF(valkey_url), "redis://127.0.0.1:6379", 0,
     0, "URL",
     "redis://[[user]:password@]host[:port][/db], rediss://... (TLS), "
     "unix:///path[?db=N], or "
     "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/NAME[/db]"
     " (rediss+sentinel:// for TLS)",
     NULL, "Valkey"},
    {"RAGQ_VALKEY_TIMEOUT", W, T_DUR, OFF(valkey_timeout_ms), "10s", 100,
     3600000L, "DURATION",
     "commands waiting and no reply from Valkey for this long: the "
     "connection is dropped and made again",
     NULL, "Valkey"},
    {"RAGQ_VALKEY_CA_FILE", W, T_STR, OFF(valkey_ca_file), NULL, 0, 0, "FILE",
     "rediss://: the CA certificates (PEM) that sign Valkey's certificate "
     "(default: the system's trusted CAs)",
     NULL, "Valkey"},
    {"RAGQ_VALKEY_CERT_FILE", W, T_STR, OFF(valkey_cert_file), NULL, 0, 0,
     "FILE",
     "rediss://: client certificate (PEM, with its chain) for mutual TLS", NULL,
     "Valkey"},
    {"RAGQ_VALKEY_KEY_FILE", W, T_STR, OFF(valkey_key_file), NULL, 0, 0, "FILE",
     "rediss://: the client certificate's key (PEM; default: in the "
     "certificate's file)",
     NULL, "Valkey"},
    {"RAGQ_VALKEY_TLS_SERVER_NAME", W, T_STR, OFF(valkey_tls_server_name), NULL,
     0, 0, "NAME",
     "rediss://: the name Valkey's certificate must carry, also sent as SNI "
     "(default: the host connected to)",
     NULL, "Valkey"},
    {"RAGQ_VALKEY_TLS_VERIFY", W, T_UINT, OFF(valkey_tls_verify), "1", 0, 1,
     "0|1", "rediss://: 0 accepts any certificate (never in production)", NULL,
     "Valkey"},
    {"RAGQ_VALKEY_SENTINEL_USER", W, T_STR, OFF(valkey_sentinel_user), NULL, 0,
     0, "NAME", "redis+sentinel://: ACL user for the sentinels", NULL,
     "Valkey"},
    {"RAGQ_VALKEY_SENTINEL_PASSWORD", W, T_STR, OFF(valkey_sentinel_password),
     NULL, 0, 0, "PASSWORD",
     "redis+sentinel://: password of the sentinels (the URL's is the "
     "primary's)",
     NULL, "Valkey"},
    {"RAGQ_PREFIX", W, T_STR, OFF(prefix), "ragq", 0, 0, "NAME",
     "key prefix in Valkey, the same as nginx's ragq_prefix", NULL, "Queue"},
    {"RAGQ_CONCURRENCY", W, T_UINT, OFF(concurrency), "64", 1, 10000, "N",
     "jobs in flight in this process", NULL, "Queue"},
    {"RAGQ_MAX_ATTEMPTS", W, T_UINT, OFF(max_attempts), "3", 1, 100, "N",
     "attempts before a job ends failed and goes to the dead stream", NULL,
     "Queue"},
    {"RAGQ_RECLAIM_AFTER", W, T_DUR, OFF(reclaim_after_ms), "60s", 1000,
     86400000L, "DURATION",
     "a job claimed by a worker that shows no progress for this long is "
     "taken over",
     NULL, "Queue"},
    {"RAGQ_SHUTDOWN_GRACE", W, T_DUR, OFF(shutdown_grace_ms), "30s", 0,
     3600000L, "DURATION", "on SIGTERM, how long jobs in flight may finish",
     NULL, "Queue"},
    {"RAGQ_RESULT_TTL", W, T_DUR, OFF(result_ttl_ms), "24h", 1000,
     31L * 86400000L, "DURATION",
     "how long finished, failed and canceled jobs stay readable", NULL,
     "Queue"},
    {"RAGQ_CONSUMER", W, T_STR, OFF(consumer), NULL, 0, 0, "NAME",
     "consumer name in the stream group (default <hostname>-<pid>)", NULL,
     "Queue"},
    {"RAGQ_HEARTBEAT", W, T_DUR, OFF(heartbeat_ms), "5s", 100, 600000L,
     "DURATION",
     "how often the heartbeat P:worker:NAME is refreshed; it expires after "
     "three times this",
     NULL, "Queue"},
    {"RAGQ_HEALTH_FILE", W, T_STR, OFF(health_file), NULL, 0, 0, "FILE",
     "its mtime is set to now after every heartbeat Valkey accepted (made "
     "if missing) and it is removed at a clean exit, for healthchecks "
     "(default: none)",
     NULL, "Queue"},

    {"RAGQ_WEBHOOK_SECRET", W, T_STR, OFF(webhook_secret), NULL, 0, 0, "SECRET",
     "signs job-end callbacks (Standard Webhooks): whsec_ + the key in "
     "base64; without it no callback is sent (each is recorded failed)",
     NULL, "Callbacks"},
    {"RAGQ_CALLBACK_ATTEMPTS", W, T_UINT, OFF(callback_attempts), "5", 1, 100,
     "N",
     "tries of a callback (network errors, timeouts, 429 and 5xx are "
     "retried with backoff)",
     NULL, "Callbacks"},
    {"RAGQ_CALLBACK_TIMEOUT", W, T_DUR, OFF(callback_timeout_ms), "10s", 100,
     600000L, "DURATION", "one callback POST, connection included", NULL,
     "Callbacks"},
    {"RAGQ_CALLBACK_CONCURRENCY", W, T_UINT, OFF(callback_concurrency), "16", 1,
     10000, "N",
     "callback POSTs in flight at once; more wait their turn (beside the "
     "jobs: a slow receiver never holds a job slot)",
     NULL, "Callbacks"},

    {"RAGQ_EMBEDDER", W | I, T_CHOICE, OFF(embedder), NULL, 0, 0, "NAME",
     "openai or hash (default: openai when an OpenAI or embed URL or key is "
     "set, else hash)",
     "openai|hash", "Backends"},
    {"RAGQ_STORE", W | I, T_CHOICE, OFF(store), NULL, 0, 0, "NAME",
     "qdrant or local (default: qdrant when QDRANT_URL is set, else local)",
     "qdrant|local", "Backends"},
    {"RAGQ_ANSWERER", W, T_CHOICE, OFF(answerer), NULL, 0, 0, "NAME",
     "openai or extractive (default: openai when OPENAI_BASE_URL or "
     "OPENAI_API_KEY is set, else extractive)",
     "openai|extractive", "Backends"},
    {"RAGQ_STORE_PATH", W | I, T_STR, OFF(store_path), "./ragq-data", 0, 0,
     "DIR", "directory of the local store (one file per collection)", NULL,
     "Backends"},

    {"OPENAI_BASE_URL", W | I, T_STR, OFF(chat_base_url),
     "https://api.openai.com/v1", 0, 0, "URL",
     "OpenAI-compatible server for chat (and embeddings, unless "
     "RAGQ_EMBED_BASE_URL is set)",
     NULL, "Models"},
    {"OPENAI_API_KEY", W | I, T_STR, OFF(chat_api_key), NULL, 0, 0, "KEY",
     "sent as Authorization: Bearer KEY", NULL, "Models"},
    {"RAGQ_CHAT_MODEL", W, T_STR, OFF(chat_model), "gpt-4o-mini", 0, 0, "NAME",
     "chat model", NULL, "Models"},
    {"RAGQ_MAX_TOKENS", W, T_UINT, OFF(max_tokens), "0", 0, 1000000, "N",
     "max_tokens of an answer (0: not sent)", NULL, "Models"},
    {"RAGQ_STREAM", W, T_CHOICE, OFF(stream), NULL, 0, 0, "MODE",
     "on (the default): answers are asked for streamed and written piece by "
     "piece to P:out:ID for /job-stream; off: asked whole, written once",
     "on|off", "Models"},
    {"RAGQ_STREAM_INTERVAL", W, T_DUR, OFF(stream_interval_ms), "50ms", 10,
     1000, "DURATION",
     "streamed answers are read from the model and written to P:out:ID at "
     "most once per this interval: longer costs the worker less CPU per "
     "answer, shorter is smoother to watch",
     NULL, "Models"},
    {"RAGQ_EMBED_BASE_URL", W | I, T_STR, OFF(embed_base_url), NULL, 0, 0,
     "URL", "embeddings server, when it is not OPENAI_BASE_URL", NULL,
     "Models"},
    {"RAGQ_EMBED_API_KEY", W | I, T_STR, OFF(embed_api_key), NULL, 0, 0, "KEY",
     "key of the embeddings server (default OPENAI_API_KEY)", NULL, "Models"},
    {"RAGQ_EMBED_MODEL", W | I, T_STR, OFF(embed_model),
     "text-embedding-3-small", 0, 0, "NAME", "embedding model", NULL, "Models"},
    {"RAGQ_HTTP_TIMEOUT", W | I, T_DUR, OFF(http_timeout_ms), "120s", 100,
     3600000L, "DURATION", "limit of one HTTP call to a model or Qdrant", NULL,
     "Models"},
    {"RAGQ_CONNECT_TIMEOUT", W | I, T_DUR, OFF(connect_timeout_ms), "5s", 100,
     600000L, "DURATION", "limit of one TCP/TLS connect", NULL, "Models"},
    {"RAGQ_HTTP_CLIENT", W, T_CHOICE, OFF(http_client), NULL, 0, 0, "NAME",
     "own (the default): http:// calls without a proxy go through the "
     "worker's own HTTP/1.1 client, the rest through libcurl; curl: every "
     "call through libcurl",
     "own|curl", "Models"},
    {"RAGQ_MAX_ANSWER_BYTES", W, T_SIZE, OFF(max_answer_bytes), NULL, 1024,
     1L << 30, "SIZE",
     "largest answer taken from a model or Qdrant, e.g. 8M; a larger one "
     "fails the job (upstream_answer_too_large), never retried (default: "
     "4M for embeddings and chat, 16M for Qdrant)",
     NULL, "Models"},

    {"QDRANT_URL", W | I, T_STR, OFF(qdrant_url), NULL, 0, 0, "URL",
     "Qdrant REST base URL, e.g. http://127.0.0.1:6333", NULL, "Qdrant"},
    {"QDRANT_API_KEY", W | I, T_STR, OFF(qdrant_api_key), NULL, 0, 0, "KEY",
     "sent as the api-key header", NULL, "Qdrant"},
    {"RAGQ_COLLECTION", W | I, T_STR, OFF(collection), "documents", 0, 0,
     "NAME", "collection searched when a job names none / ingested into", NULL,
     "Qdrant"},
    {"RAGQ_TOP_K", W, T_UINT, OFF(top_k), "5", 1, 100, "N",
     "chunks retrieved when a job says nothing", NULL, "Qdrant"},

    {"RAGQ_CHUNK_SIZE", I, T_UINT, OFF(chunk_size), "1000", 50, 100000, "N",
     "characters per chunk (UTF-8 characters)", NULL, "Ingest"},
    {"RAGQ_CHUNK_OVERLAP", I, T_UINT, OFF(chunk_overlap), "200", 0, 99999, "N",
     "characters repeated from the end of the previous chunk", NULL, "Ingest"},
    {"RAGQ_BATCH_SIZE", I, T_UINT, OFF(batch_size), "64", 1, 2048, "N",
     "texts per embeddings call and points per upsert", NULL, "Ingest"},

    {"RAGQ_LOG_LEVEL", W | I, T_LEVEL, OFF(log_level), "info", 0, 3, "LEVEL",
     "error, warn, info or debug (or 0-3)", NULL, "Other"},
    {"RAGQ_LOG_FORMAT", W, T_CHOICE, OFF(log_format), NULL, 0, 0, "FORMAT",
     "text (the default) or json (one JSON object per line)", "text|json",
     "Other"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const char *const groups[] = {"Queue",  "Valkey", "Backends",
                                     "Models", "Qdrant", "Callbacks",
                                     "Ingest", "Other"};

/* The positional arguments of the last load (cfg->paths). */
static char **last_paths;

/* Where each value came from, for messages: an env name or a --flag. */
static char set_by[NOPTS][64];

static void
flag_name(const opt_t *o, char *buf, size_t len)
{
    const char *e = o->env;
    size_t      i = 0;

    if (strncmp(e, "RAGQ_", 5) == 0) {
        e += 5;
    }
    buf[i++] = '-';
    buf[i++] = '-';
    for (; *e && i + 1 < len; e++) {
        buf[i++] = *e == '_' ? '-' : (char) tolower((unsigned char) *e);
    }
    buf[i] = '\0';
}

static const char *
prog_name(ragq_prog_t prog)
{
    return prog == RAGQ_PROG_WORKER ? "ragq-worker" : "ragq-ingest";
}

static void
fmt_ms(long ms, char *buf, size_t len)
{
    if (ms != 0 && ms % 3600000L == 0) {
        snprintf(buf, len, "%ldh", ms / 3600000L);
    } else if (ms != 0 && ms % 60000L == 0) {
        snprintf(buf, len, "%ldm", ms / 60000L);
    } else if (ms % 1000 == 0) {
        snprintf(buf, len, "%lds", ms / 1000);
    } else {
        snprintf(buf, len, "%ldms", ms);
    }
}

/* Parses "250ms", "30s", "5m", "24h", "7d" or bare seconds. */
static int
parse_duration(const char *v, long *ms)
{
    char         *end;
    unsigned long n;
    long          mul;

    if (!isdigit((unsigned char) v[0])) {
        return -1;
    }
    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno != 0) {
        return -1;
    }
    if (strcmp(end, "ms") == 0) {
        mul = 1;
    } else if (*end == '\0' || strcmp(end, "s") == 0) {
        mul = 1000;
    } else if (strcmp(end, "m") == 0) {
        mul = 60000L;
    } else if (strcmp(end, "h") == 0) {
        mul = 3600000L;
    } else if (strcmp(end, "d") == 0) {
        mul = 86400000L;
    } else {
        return -1;
    }
    if (n > (unsigned long) LONG_MAX / (unsigned long) mul) {
        return -1;
    }
    *ms = (long) n * mul;
    return 0;
}

static int
choice_ok(const char *choices, const char *v)
{
    size_t      n = strlen(v);
    const char *p = choices;

    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t      len = bar ? (size_t) (bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) {
            return 1;
        }
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* Stores value v of option o into cfg; name is how the user set it. */
static int
set_value(ragq_config_t *cfg, const opt_t *o, const char *name, const char *v)
{
    char *field = (char *) cfg + o->off;

    switch (o->type) {
    case T_STR:
        *(const char **) field = v;
        return 0;

    case T_CHOICE:
        if (strcmp(v, "auto") == 0) {
            *(const char **) field = NULL;
            return 0;
        }
        if (!choice_ok(o->choices, v)) {
            char alt[64];
            snprintf(alt, sizeof(alt), "%s", o->choices);
            *strchr(alt, '|') = '\0';
            fprintf(stderr, "%s must be '%s' or '%s' (or 'auto'), got '%s'\n",
                    name, alt, strchr(o->choices, '|') + 1, v);
            return -1;
        }
        *(const char **) field = v;
        return 0;

    case T_UINT: {
        char         *end;
        unsigned long n;
        errno = 0;
        n = isdigit((unsigned char) v[0]) ? strtoul(v, &end, 10) : 0;
        if (!isdigit((unsigned char) v[0]) || *end != '\0' || errno != 0 ||
            n < (unsigned long) o->min || n > (unsigned long) o->max) {
            fprintf(stderr,
                    "%s must be a whole number from %ld to %ld, got "
                    "'%s'\n",
                    name, o->min, o->max, v);
            return -1;
        }
        *(unsigned *) field = (unsigned) n;
        return 0;
    }

    case T_DUR: {
        long ms;
        char lo[32], hi[32];
        fmt_ms(o->min, lo, sizeof(lo));
        fmt_ms(o->max, hi, sizeof(hi));
        if (parse_duration(v, &ms) != 0) {
            fprintf(stderr,
                    "%s must be a duration like 250ms, 30s, 5m or 24h (a bare "
                    "number is seconds), got '%s'\n",
                    name, v);
            return -1;
        }
        if (ms < o->min || ms > o->max) {
            fprintf(stderr, "%s must be from %s to %s, got '%s'\n", name, lo,
                    hi, v);
            return -1;
        }
        *(long *) field = ms;
        return 0;
    }

    case T_SIZE: {
        char         *end;
        unsigned long n, mul = 1;
        errno = 0;
        n = isdigit((unsigned char) v[0]) ? strtoul(v, &end, 10) : 0;
        if (isdigit((unsigned char) v[0]) && errno == 0) {
            switch (*end) {
            case 'k':
            case 'K':
                mul = 1024;
                end++;
                break;
            case 'm':
            case 'M':
                mul = 1024 * 1024;
                end++;
                break;
            case 'g':
            case 'G':
                mul = 1024 * 1024 * 1024;
                end++;
                break;
            }
        }
        if (!isdigit((unsigned char) v[0]) || errno != 0 || *end != '\0' ||
            n > (unsigned long) o->max / mul ||
            n * mul < (unsigned long) o->min) {
            fprintf(stderr,
                    "%s must be a size from %ldk to %ldM like 512k, 8M or "
                    "bytes, got '%s'\n",
                    name, o->min / 1024, o->max / (1024 * 1024), v);
            return -1;
        }
        *(unsigned long *) field = n * mul;
        return 0;
    }

    case T_LEVEL: {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        int                      i;
        for (i = 0; i < 4; i++) {
            if (strcasecmp(v, names[i]) == 0 ||
                (v[0] == '0' + i && v[1] == '\0')) {
                *(int *) field = i;
                return 0;
            }
        }
        fprintf(stderr,
                "%s must be error, warn, info or debug (or 0-3), got '%s'\n",
                name, v);
        return -1;
    }
    }
    return -1;
}

static void
print_help(ragq_prog_t prog)
{
    int    mask = prog == RAGQ_PROG_WORKER ? W : I;
    size_t g, i;

    if (prog == RAGQ_PROG_WORKER) {
        printf("Usage: ragq-worker [OPTION]...\n"
               "Runs the question-answering jobs that nginx's ragq module "
               "queues in Valkey.\n");
    } else {
        printf("Usage: ragq-ingest [OPTION]... PATH...\n"
               "Loads .txt, .md, .markdown and .pdf files (directories "
               "recursively) into a\ncollection: splits them into chunks, "
               "embeds them and stores them in Qdrant or\nthe local store.\n");
    }
    printf("\nEvery option is also read from the environment variable shown "
           "next to it;\na flag wins over the environment.  Durations: 250ms, "
           "30s, 5m, 24h, 7d.\n");
    for (g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        int header = 0;
        for (i = 0; i < NOPTS; i++) {
            const opt_t *o = &opts[i];
            char         flag[64], left[128];
            if (!(o->progs & mask) || strcmp(o->group, groups[g]) != 0) {
                continue;
            }
            if (!header) {
                printf("\n%s:\n", groups[g]);
                header = 1;
            }
            flag_name(o, flag, sizeof(flag));
            snprintf(left, sizeof(left), "%s %s", flag, o->arg);
            printf("  %-32s %s%s%s%s\n      %s\n", left, o->env,
                   o->def ? " (default " : "", o->def ? o->def : "",
                   o->def ? ")" : "", o->help);
        }
    }
    printf("\n  %-32s this help\n  %-32s the version\n", "-h, --help",
           "--version");
}

static const opt_t *
find_flag(const char *arg, size_t len)
{
    size_t i;
    char   flag[64];

    for (i = 0; i < NOPTS; i++) {
        flag_name(&opts[i], flag, sizeof(flag));
        if (strlen(flag) == len && strncmp(flag, arg, len) == 0) {
            return &opts[i];
        }
    }
    return NULL;
}

static int
was_set(const char *env)
{
    size_t i;

    for (i = 0; i < NOPTS; i++) {
        if (strcmp(opts[i].env, env) == 0) {
            return set_by[i][0] != '\0';
        }
    }
    return 0;
}

int
ragq_config_load(ragq_config_t *cfg, ragq_prog_t prog, int argc, char **argv)
{
    static char consumer[300];
    int         mask = prog == RAGQ_PROG_WORKER ? W : I;
    const char *pname = prog_name(prog);
    size_t      i;
    int         a, npaths = 0, dashdash = 0;
    char      **paths;

    memset(cfg, 0, sizeof(*cfg));
    memset(set_by, 0, sizeof(set_by));

    /* defaults, then the environment, then flags */
    for (i = 0; i < NOPTS; i++) {
        if (opts[i].def && set_value(cfg, &opts[i], opts[i].env, opts[i].def)) {
            return -1; /* a bad default is a bug; the message says which */
        }
    }
    for (i = 0; i < NOPTS; i++) {
        const char *v = getenv(opts[i].env);
        if (!(opts[i].progs & mask) || v == NULL || v[0] == '\0') {
            continue;
        }
        if (set_value(cfg, &opts[i], opts[i].env, v) != 0) {
            return -1;
        }
        snprintf(set_by[i], sizeof(set_by[i]), "%s", opts[i].env);
    }

    /* kept in a static so that loading again (tests) frees the last one */
    free(last_paths);
    last_paths = paths = calloc((size_t) argc + 1, sizeof(char *));
    if (paths == NULL) {
        fprintf(stderr, "%s: out of memory\n", pname);
        return -1;
    }
    for (a = 1; a < argc; a++) {
        const char  *arg = argv[a], *eq, *v;
        const opt_t *o;
        char         flag[64];
        size_t       nlen;

        if (dashdash || arg[0] != '-' || arg[1] == '\0') {
            if (prog == RAGQ_PROG_WORKER) {
                fprintf(stderr,
                        "ragq-worker takes no arguments, got '%s'; see "
                        "ragq-worker --help\n",
                        arg);
                goto fail;
            }
            paths[npaths++] = argv[a];
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            dashdash = 1;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(prog);
            free(paths);
            last_paths = NULL;
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("%s %s\n", pname, RAGQ_VERSION);
            free(paths);
            last_paths = NULL;
            return 1;
        }
        eq = strchr(arg, '=');
        nlen = eq ? (size_t) (eq - arg) : strlen(arg);
        o = find_flag(arg, nlen);
        if (o == NULL) {
            fprintf(stderr, "%s: unknown option '%.*s'; see %s --help\n", pname,
                    (int) nlen, arg, pname);
            goto fail;
        }
        flag_name(o, flag, sizeof(flag));
        if (!(o->progs & mask)) {
            fprintf(stderr, "%s is an option of %s, not of %s\n", flag,
                    prog_name(prog == RAGQ_PROG_WORKER ? RAGQ_PROG_INGEST
                                                       : RAGQ_PROG_WORKER),
                    pname);
            goto fail;
        }
        if (eq) {
            v = eq + 1;
        } else if (a + 1 < argc) {
            v = argv[++a];
        } else {
            fprintf(stderr, "%s needs a value (%s %s)\n", flag, flag, o->arg);
            goto fail;
        }
        i = (size_t) (o - opts);
        if (v[0] == '\0') {
            /* explicitly empty: back to the default, not "set" */
            if (o->def) {
                set_value(cfg, o, flag, o->def);
            } else {
                *(const char **) ((char *) cfg + o->off) = NULL;
            }
            set_by[i][0] = '\0';
            continue;
        }
        if (set_value(cfg, o, flag, v) != 0) {
            goto fail;
        }
        snprintf(set_by[i], sizeof(set_by[i]), "%s", flag);
    }

    if (prog == RAGQ_PROG_INGEST && npaths == 0) {
        fprintf(stderr,
                "ragq-ingest needs at least one file or directory to ingest; "
                "see ragq-ingest --help\n");
        goto fail;
    }
    cfg->paths = paths;
    cfg->npaths = npaths;

    /* the embeddings server is the chat server unless said otherwise */
    if (cfg->embed_base_url == NULL) {
        cfg->embed_base_url = cfg->chat_base_url;
    }
    if (cfg->embed_api_key == NULL) {
        cfg->embed_api_key = cfg->chat_api_key;
    }
    if (cfg->embedder == NULL) {
        cfg->embedder = was_set("OPENAI_BASE_URL") ||
                                was_set("OPENAI_API_KEY") ||
                                was_set("RAGQ_EMBED_BASE_URL") ||
                                was_set("RAGQ_EMBED_API_KEY")
                            ? "openai"
                            : "hash";
    }
    if (cfg->answerer == NULL) {
        cfg->answerer = was_set("OPENAI_BASE_URL") || was_set("OPENAI_API_KEY")
                            ? "openai"
                            : "extractive";
    }
    if (cfg->store == NULL) {
        cfg->store = was_set("QDRANT_URL") ? "qdrant" : "local";
    }
    if (cfg->consumer == NULL) {
        char host[256];
        if (gethostname(host, sizeof(host)) != 0) {
            strcpy(host, "worker");
        }
        host[sizeof(host) - 1] = '\0';
        snprintf(consumer, sizeof(consumer), "%s-%ld", host, (long) getpid());
        cfg->consumer = consumer;
    }
    return 0;

fail:
    free(paths);
    last_paths = NULL;
    return -1;
}

/* ---- checks -------------------------------------------------------- */

/* Host of an http(s) URL into host[]; -1 when it is not one. */
static int
http_url_host(const char *url, char *host, size_t hostlen)
{
    const char *p, *end;
    size_t      n;

    if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
    } else {
        return -1;
    }
    if (*p == '[') {
        end = strchr(p, ']');
        if (end == NULL) {
            return -1;
        }
        end++;
    } else {
        end = p + strcspn(p, ":/?#");
    }
    n = (size_t) (end - p);
    if (n == 0 || n >= hostlen || strchr(p, '@') != NULL) {
        return -1;
    }
    memcpy(host, p, n);
    host[n] = '\0';
    if (*end == ':') {
        char *e;
        long  port = strtol(end + 1, &e, 10);
        if (e == end + 1 || port < 1 || port > 65535 ||
            (*e != '\0' && *e != '/' && *e != '?')) {
            return -1;
        }
    } else if (*end != '\0' && *end != '/' && *end != '?' && *end != '#') {
        return -1;
    }
    return 0;
}

static int
check_model_url(const char *env, const char *url, const char *key,
                const char *keyenv, const char *alt, char *err, size_t errlen)
{
    char host[256];

    if (url == NULL || http_url_host(url, host, sizeof(host)) != 0) {
        snprintf(err, errlen,
                 "%s must be an http:// or https:// URL such as "
                 "http://127.0.0.1:11434/v1, got '%s'",
                 env, url ? url : "");
        return -1;
    }
    if (strcasecmp(host, "api.openai.com") == 0 && (key == NULL || !*key)) {
        snprintf(err, errlen,
                 "%s is needed for %s; set it, point %s at another "
                 "OpenAI-compatible server, or use %s",
                 keyenv, url, env, alt);
        return -1;
    }
    return 0;
}

int
ragq_config_check(const ragq_config_t *cfg, char *err, size_t errlen)
{
    ragq_valkey_addr_t addr;
    char               why[200], masked[512], host[256];

    if (cfg->valkey_url != NULL &&
        ragq_valkey_addr_parse(cfg->valkey_url, &addr, why, sizeof(why)) != 0) {
        ragq_valkey_url_mask(cfg->valkey_url, masked, sizeof(masked));
        snprintf(err, errlen,
                 "RAGQ_VALKEY_URL must look like "
                 "redis://[[user]:password@]host[:port][/db], "
                 "rediss://..., unix:///path[?db=N] or "
                 "redis+sentinel://host:port[,host:port...]/NAME[/db], "
                 "got '%s': %s",
                 masked, why);
        return -1;
    }
    if (cfg->valkey_url != NULL) {
        const char *tls_opt = cfg->valkey_ca_file     ? "RAGQ_VALKEY_CA_FILE"
                              : cfg->valkey_cert_file ? "RAGQ_VALKEY_CERT_FILE"
                              : cfg->valkey_key_file  ? "RAGQ_VALKEY_KEY_FILE"
                              : cfg->valkey_tls_server_name
                                  ? "RAGQ_VALKEY_TLS_SERVER_NAME"
                                  : NULL;
        const char *sen_opt =
            cfg->valkey_sentinel_user       ? "RAGQ_VALKEY_SENTINEL_USER"
            : cfg->valkey_sentinel_password ? "RAGQ_VALKEY_SENTINEL_PASSWORD"
                                            : NULL;
        int tls = addr.tls, sentinel = addr.transport == RAGQ_VALKEY_SENTINEL;

        ragq_valkey_addr_free(&addr);
        /* Set for TLS but talking plain text is worse than not starting. */
        if (tls_opt && !tls) {
            snprintf(err, errlen,
                     "%s is set but RAGQ_VALKEY_URL does not use TLS (use "
                     "rediss:// or rediss+sentinel://)",
                     tls_opt);
            return -1;
        }
        if (sen_opt && !sentinel) {
            snprintf(err, errlen,
                     "%s is set but RAGQ_VALKEY_URL is not a "
                     "redis+sentinel:// URL",
                     sen_opt);
            return -1;
        }
    }
    if (cfg->webhook_secret != NULL) {
        ragq_webhook_key_t key;

        if (ragq_webhook_key_parse(cfg->webhook_secret, &key, err, errlen) !=
            0) {
            return -1;
        }
    }
    if (cfg->embedder && strcmp(cfg->embedder, "openai") == 0 &&
        check_model_url(cfg->embed_base_url == cfg->chat_base_url
                            ? "OPENAI_BASE_URL"
                            : "RAGQ_EMBED_BASE_URL",
                        cfg->embed_base_url, cfg->embed_api_key,
                        "RAGQ_EMBED_API_KEY (or OPENAI_API_KEY)",
                        "RAGQ_EMBEDDER=hash", err, errlen) != 0) {
        return -1;
    }
    if (cfg->answerer && strcmp(cfg->answerer, "openai") == 0 &&
        check_model_url("OPENAI_BASE_URL", cfg->chat_base_url,
                        cfg->chat_api_key, "OPENAI_API_KEY",
                        "RAGQ_ANSWERER=extractive", err, errlen) != 0) {
        return -1;
    }
    if (cfg->store && strcmp(cfg->store, "qdrant") == 0) {
        if (cfg->qdrant_url == NULL || cfg->qdrant_url[0] == '\0') {
            snprintf(err, errlen,
                     "RAGQ_STORE=qdrant needs QDRANT_URL (e.g. "
                     "http://127.0.0.1:6333)");
            return -1;
        }
        if (http_url_host(cfg->qdrant_url, host, sizeof(host)) != 0) {
            snprintf(err, errlen,
                     "QDRANT_URL must be an http:// or https:// URL such as "
                     "http://127.0.0.1:6333, got '%s'",
                     cfg->qdrant_url);
            return -1;
        }
    }
    if (cfg->store && strcmp(cfg->store, "local") == 0 &&
        (cfg->store_path == NULL || cfg->store_path[0] == '\0')) {
        snprintf(err, errlen, "the local store needs RAGQ_STORE_PATH");
        return -1;
    }
    if (cfg->collection == NULL || cfg->collection[0] == '\0' ||
        strlen(cfg->collection) > 255 ||
        strpbrk(cfg->collection, "<>:\"/\\|?*") != NULL) {
        snprintf(err, errlen,
                 "RAGQ_COLLECTION must be 1 to 255 characters without "
                 "< > : \" / \\ | ? *, got '%s'",
                 cfg->collection ? cfg->collection : "");
        return -1;
    }
    if (cfg->chunk_size != 0 && cfg->chunk_overlap >= cfg->chunk_size) {
        snprintf(err, errlen,
                 "RAGQ_CHUNK_OVERLAP (%u) must be smaller than "
                 "RAGQ_CHUNK_SIZE (%u)",
                 cfg->chunk_overlap, cfg->chunk_size);
        return -1;
    }
    return 0;
}
