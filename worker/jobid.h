/*
 * jobid.h: job ids and the queue entries that carry jobs (DEVELOPERS.md,
 * "data model").  A job enqueued as one XADD has the id
 * "%012x%04x%s" of its entry id's ms and sequence and the 16 random hex
 * characters the entry holds as "r"; the module
 * (ngx_http_ragq_job_id_from_entry) makes the same ids from the same entry.
 */

#ifndef RAGQ_JOBID_H
#define RAGQ_JOBID_H

#include <stddef.h>

#define RAGQ_JOB_ID_LEN     32
#define RAGQ_JOB_RANDOM_LEN 16

/* 32 lowercase hex characters. */
int ragq_job_id_valid(const char *s, size_t n);

/*
 * The id of the job an entry "<ms>-<seq>" with random part r (16 lowercase
 * hex characters) carries, in id[33].  -1: not an entry id, a bad r, or an
 * entry no job id can name (ms above 2^48 - 1, seq above 0xffff).
 */
int ragq_job_id_from_entry(char *id, const char *entry, const char *r,
                           size_t rlen);

#endif
