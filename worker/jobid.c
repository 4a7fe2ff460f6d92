/*
 * jobid.c: job ids made from queue entry ids (jobid.h): the one place the
 * worker turns an entry that carries a job into the id the module gave it.
 */

#include "jobid.h"

#include <stdint.h>
#include <stdio.h>

#define RAGQ_ENTRY_MS_MAX  0xffffffffffffULL
#define RAGQ_ENTRY_SEQ_MAX 0xffffULL

static int
lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

int
ragq_job_id_valid(const char *s, size_t n)
{
    return n == RAGQ_JOB_ID_LEN && lower_hex(s, n);
}

/* Digits up to a limit; the end of them, or NULL. */
static const char *
number(const char *p, uint64_t max, uint64_t *n)
{
    const char *start = p;

    for (*n = 0; *p >= '0' && *p <= '9'; p++) {
        *n = *n * 10 + (uint64_t) (*p - '0');
        if (*n > max) {
            return NULL;
        }
    }
    return p == start ? NULL : p;
}

int
ragq_job_id_from_entry(char *id, const char *entry, const char *r, size_t rlen)
{
    uint64_t    ms, seq;
    const char *p;

    if (rlen != RAGQ_JOB_RANDOM_LEN || !lower_hex(r, rlen)) {
        return -1;
    }
    p = number(entry, RAGQ_ENTRY_MS_MAX, &ms);
    if (p == NULL || *p != '-') {
        return -1;
    }
    p = number(p + 1, RAGQ_ENTRY_SEQ_MAX, &seq);
    if (p == NULL || *p != '\0') {
        return -1;
    }
    snprintf(id, RAGQ_JOB_ID_LEN + 1, "%012llx%04llx%.16s",
             (unsigned long long) ms, (unsigned long long) seq, r);
    return 0;
}
