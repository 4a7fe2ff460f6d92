/*
 * log.c: the worker's log (log.h).  Each line is written with one fprintf
 * so that lines of several processes sharing a stderr never interleave.
 * Secrets are masked here, at the one place every line goes through, and
 * not at each call: a message that embeds an upstream's answer may carry a
 * key the upstream echoed back.
 */

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jsonw.h"

#define RAGQ_LOG_SECRETS 16
#define RAGQ_LOG_LINE    4096

int ragq_log_level = RAGQ_LOG_INFO;

static int   log_json;
static char *secrets[RAGQ_LOG_SECRETS];
static int   nsecrets;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
ragq_log_set_json(int json)
{
    log_json = json;
}

void
ragq_log_hide(const char *s)
{
    int i;

    if (s == NULL || strlen(s) < RAGQ_LOG_HIDE_MIN ||
        nsecrets == RAGQ_LOG_SECRETS) {
        return;
    }
    for (i = 0; i < nsecrets; i++) {
        if (strcmp(secrets[i], s) == 0) {
            return;
        }
    }
    secrets[nsecrets] = strdup(s);
    if (secrets[nsecrets] != NULL) {
        nsecrets++;
    }
}

/* Replaces every what in s by with (not longer than what), in place. */
static void
mask(char *s, const char *what, const char *with)
{
    size_t n = strlen(what), m = strlen(with);
    char  *p = s;

    while ((p = strstr(p, what)) != NULL) {
        memmove(p + m, p + n, strlen(p + n) + 1);
        memcpy(p, with, m);
        p += m;
    }
}

void
ragq_redact(char *s, const char *also, const char *also_as)
{
    int i;

    for (i = 0; i < nsecrets; i++) {
        mask(s, secrets[i], "***");
    }
    if (also != NULL && strlen(also) >= RAGQ_LOG_HIDE_MIN &&
        strlen(also) >= strlen(also_as)) {
        mask(s, also, also_as);
    }
}

static void
text_line(int level, char *msg)
{
    char            ts[32];
    struct timespec now;
    struct tm       tm;

    clock_gettime(CLOCK_REALTIME, &now);
    localtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ld ragq-worker[%d] %s: %s\n", ts,
            now.tv_nsec / 1000000, (int) getpid(), level_names[level], msg);
}

/* {"key": "value" (masked)} members, after the ones already in b. */
static void
json_string_member(ragq_jbuf_t *b, const char *key, const char *value)
{
    char buf[RAGQ_LOG_LINE];

    snprintf(buf, sizeof(buf), "%s", value);
    ragq_redact(buf, NULL, NULL);
    ragq_jbuf_add(b, ",", 1);
    ragq_jbuf_string(b, key, strlen(key));
    ragq_jbuf_add(b, ":", 1);
    ragq_jbuf_string(b, buf, strlen(buf));
}

static void
json_line(int level, const char *msg, const ragq_log_field_t *fields,
          size_t nfields)
{
    char            ts[40];
    struct timespec now;
    struct tm       tm;
    ragq_jbuf_t     b;
    size_t          i;
    char           *line;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03ldZ",
             now.tv_nsec / 1000000);

    ragq_jbuf_init(&b, 256);
    ragq_jbuf_adds(&b, "{\"ts\":");
    ragq_jbuf_string(&b, ts, strlen(ts));
    ragq_jbuf_adds(&b, ",\"level\":");
    ragq_jbuf_string(&b, level_names[level], strlen(level_names[level]));
    ragq_jbuf_adds(&b, ",\"pid\":");
    ragq_jbuf_uint(&b, (unsigned long long) getpid());
    json_string_member(&b, "msg", msg);
    for (i = 0; i < nfields; i++) {
        if (fields[i].s != NULL) {
            json_string_member(&b, fields[i].key, fields[i].s);
            continue;
        }
        ragq_jbuf_add(&b, ",", 1);
        ragq_jbuf_string(&b, fields[i].key, strlen(fields[i].key));
        ragq_jbuf_add(&b, ":", 1);
        if (fields[i].i < 0) {
            ragq_jbuf_add(&b, "-", 1);
            ragq_jbuf_uint(&b, (unsigned long long) -fields[i].i);
        } else {
            ragq_jbuf_uint(&b, (unsigned long long) fields[i].i);
        }
    }
    ragq_jbuf_add(&b, "}", 1);
    line = ragq_jbuf_finish(&b);
    if (line == NULL) {
        char copy[RAGQ_LOG_LINE];

        /* out of memory: the text line still says what happened */
        snprintf(copy, sizeof(copy), "%s", msg);
        ragq_redact(copy, NULL, NULL);
        text_line(level, copy);
        return;
    }
    fprintf(stderr, "%s\n", line);
    free(line);
}

void
ragq_log_event(int level, const char *text, const char *msg,
               const ragq_log_field_t *fields, size_t nfields)
{
    char buf[RAGQ_LOG_LINE];

    if (level > ragq_log_level || level < RAGQ_LOG_ERROR) {
        return;
    }
    if (log_json) {
        json_line(level, msg, fields, nfields);
        return;
    }
    snprintf(buf, sizeof(buf), "%s", text);
    ragq_redact(buf, NULL, NULL);
    text_line(level, buf);
}

void
ragq_log(int level, const char *fmt, ...)
{
    char    buf[RAGQ_LOG_LINE];
    va_list ap;
    int     n;

    if (level > ragq_log_level) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    ragq_log_event(level, buf, buf, NULL, 0);
}
