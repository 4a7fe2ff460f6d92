/*
 * log.h: the worker's log on stderr: one line per event, as text or as one
 * JSON object a line (RAGQ_LOG_FORMAT), below a level (RAGQ_LOG_LEVEL), and
 * never a secret: every string registered with ragq_log_hide is masked
 * wherever it would appear.  Implemented in log.c.
 */

#ifndef RAGQ_LOG_H
#define RAGQ_LOG_H

#include <stddef.h>

enum { RAGQ_LOG_ERROR, RAGQ_LOG_WARN, RAGQ_LOG_INFO, RAGQ_LOG_DEBUG };

extern int ragq_log_level;

/* text (the default) or JSON lines */
void ragq_log_set_json(int json);

void ragq_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A field of a structured line: a string when s is not NULL, else i. */
typedef struct {
    const char *key;
    const char *s;
    long long   i;
} ragq_log_field_t;

/*
 * One event with fields.  As text the line is text alone (it says it all
 * for a reader); as JSON it is {"ts","level","pid","msg": msg, fields...}.
 */
void ragq_log_event(int level, const char *text, const char *msg,
                    const ragq_log_field_t *fields, size_t nfields);

/*
 * From now on s is written "***" wherever it would appear in a line.
 * Strings shorter than RAGQ_LOG_HIDE_MIN are not worth it (and masking
 * them would garble ordinary words); NULL is ignored.
 */
#define RAGQ_LOG_HIDE_MIN 8
void ragq_log_hide(const char *s);

/*
 * Masks the hidden strings in s, in place, and the string also (when it is
 * at least RAGQ_LOG_HIDE_MIN bytes and as long as also_as) as also_as: how
 * a job's error message loses an echo of its question.  also may be NULL.
 */
void ragq_redact(char *s, const char *also, const char *also_as);

#endif
