/*
 * joblog.c: the job transition lines of joblog.h.  The text lines keep the
 * wording operators (and tests) already grep for; the JSON lines carry the
 * same facts as fields.
 */

#include "joblog.h"

#include <stdio.h>

static const char *const statuses[RAGQ_ENDS] = {"finished", "failed", "queued",
                                                "canceled"};

void
ragq_joblog_started(const ragq_job_t *job, unsigned max_attempts)
{
    char             text[128];
    ragq_log_field_t f[] = {
        {"job_id", job->id, 0},
        {"status", "started", 0},
        {"attempt", NULL, job->attempts},
        {"max_attempts", NULL, (long long) max_attempts},
    };

    if (ragq_log_level < RAGQ_LOG_INFO) {
        return;
    }
    snprintf(text, sizeof(text), "job %s started (attempt %ld of %u)", job->id,
             job->attempts, max_attempts);
    ragq_log_event(RAGQ_LOG_INFO, text, "job started", f,
                   sizeof(f) / sizeof(f[0]));
}

void
ragq_joblog_ended(const ragq_job_t *job, ragq_job_end_t how,
                  unsigned max_attempts, long ms)
{
    char             text[1024];
    int              level = RAGQ_LOG_INFO;
    const char      *msg = "job finished";
    ragq_log_field_t f[] = {
        {"job_id", job->id, 0},
        {"status", statuses[how], 0},
        {"attempt", NULL, job->attempts},
        {"max_attempts", NULL, (long long) max_attempts},
        {how == RAGQ_END_RELEASED ? "retry_after_ms" : "duration_ms", NULL, ms},
        {"embed_ms", NULL, job->ms_embed},
        {"retrieve_ms", NULL, job->ms_retrieve},
        {"generate_ms", NULL, job->ms_generate},
        {"error_code", job->err.code, 0},
        {"error", job->err.message, 0},
    };
    size_t n = sizeof(f) / sizeof(f[0]);

    ragq_count_job_end(how);

    switch (how) {
    case RAGQ_END_FINISHED:
        n -= 2; /* no error */
        snprintf(text, sizeof(text),
                 "job %s finished in %ld ms (embed %ld, retrieve %ld, generate "
                 "%ld), attempt %ld of %u",
                 job->id, ms, job->ms_embed, job->ms_retrieve, job->ms_generate,
                 job->attempts, max_attempts);
        break;
    case RAGQ_END_FAILED:
        msg = "job failed";
        snprintf(text, sizeof(text),
                 "job %s failed in %ld ms (attempt %ld of %u; embed %ld, "
                 "retrieve %ld, generate %ld): %s: %s",
                 job->id, ms, job->attempts, max_attempts, job->ms_embed,
                 job->ms_retrieve, job->ms_generate, job->err.code,
                 job->err.message);
        break;
    case RAGQ_END_RELEASED:
        msg = "job released for another attempt";
        level = RAGQ_LOG_WARN;
        snprintf(text, sizeof(text),
                 "job %s: attempt %ld of %u gave up (%s: %s); another attempt "
                 "after %ld ms",
                 job->id, job->attempts, max_attempts, job->err.code,
                 job->err.message, ms);
        break;
    default:
        msg = "job canceled";
        n -= 2;
        snprintf(text, sizeof(text), "job %s canceled after %ld ms", job->id,
                 ms);
        break;
    }
    ragq_log_event(level, text, msg, f, n);
}
