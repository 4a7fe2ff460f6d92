/*
 * retry.c: the backoff rules of retry.h.
 */

#include "retry.h"

#include <stdlib.h>

uint64_t
ragq_retry_delay_ms(long retry_after_ms, int retry)
{
    uint64_t cap;

    if (retry_after_ms >= 0) {
        return (uint64_t) retry_after_ms > RAGQ_RETRY_AFTER_CAP_MS
                   ? RAGQ_RETRY_AFTER_CAP_MS
                   : (uint64_t) retry_after_ms;
    }
    if (retry < 1) {
        retry = 1;
    }
    /* 200 << 6 is past the cap already: no shift can overflow. */
    cap = retry > 7 ? RAGQ_BACKOFF_CAP_MS
                    : (uint64_t) RAGQ_BACKOFF_BASE_MS << (retry - 1);
    if (cap > RAGQ_BACKOFF_CAP_MS) {
        cap = RAGQ_BACKOFF_CAP_MS;
    }
    return (uint64_t) random() % (cap + 1);
}

void
ragq_backoff_init(ragq_backoff_t *b, uint64_t min_ms, uint64_t max_ms)
{
    b->min_ms = min_ms;
    b->max_ms = max_ms;
    b->step_ms = min_ms;
}

uint64_t
ragq_backoff_next(ragq_backoff_t *b)
{
    uint64_t d = b->step_ms;

    b->step_ms = d * 2 > b->max_ms ? b->max_ms : d * 2;
    /* Half fixed, half jitter, so a fleet does not reconnect in lockstep. */
    return d / 2 + (uint64_t) random() % (d / 2 + 1);
}

void
ragq_backoff_reset(ragq_backoff_t *b)
{
    b->step_ms = b->min_ms;
}
