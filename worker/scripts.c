/*
 * scripts.c: the script cache of scripts.h.  EVALSHA, not EVAL: EVAL would
 * send each text and have Valkey hash it again three times a job.
 */

#include "scripts.h"

#include <hiredis/hiredis.h>
#include <string.h>

static const char *const texts[RAGQ_NSCRIPTS] = {
    ragq_script_claim,     ragq_script_final,     ragq_script_release,
    ragq_script_keepalive, ragq_script_consumers, ragq_script_append};

void
ragq_scripts_init(ragq_scripts_t *s, ragq_vconn_t *vc)
{
    memset(s, 0, sizeof(*s));
    s->vc = vc;
}

/* priv is the sha slot of the script loaded. */
static void
loaded(void *owner, redisReply *reply, void *priv)
{
    char *sha = priv;

    (void) owner;
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(sha, reply->str, 40);
        sha[40] = '\0';
    }
}

static void
load_one(ragq_scripts_t *s, ragq_script_t which)
{
    const char *argv[] = {"SCRIPT", "LOAD", texts[which]};

    s->sha[which][0] = '\0';
    ragq_vconn_send(s->vc, loaded, s->sha[which], 3, argv, NULL);
}

void
ragq_scripts_load(ragq_scripts_t *s)
{
    for (int i = 0; i < RAGQ_NSCRIPTS; i++) {
        load_one(s, (ragq_script_t) i);
    }
}

void
ragq_scripts_forget(ragq_scripts_t *s)
{
    memset(s->sha, 0, sizeof(s->sha));
}

void
ragq_scripts_head(const ragq_scripts_t *s, ragq_script_t which,
                  const char **argv)
{
    if (s->sha[which][0]) {
        argv[0] = "EVALSHA";
        argv[1] = s->sha[which];
    } else {
        argv[0] = "EVAL";
        argv[1] = texts[which];
    }
}

/*
 * A flush (SCRIPT FLUSH, or a restart or fail-over this connection did not
 * see) drops every script, not just the one whose call was refused; the
 * appends, which want no reply, would otherwise stay refused until the
 * connection is lost.  All are loaded again, once: while a load is under
 * way every sha is empty, and the NOSCRIPTs of calls sent before it (they
 * answer before it does) change nothing.
 */
void
ragq_scripts_flushed(ragq_scripts_t *s)
{
    for (int i = 0; i < RAGQ_NSCRIPTS; i++) {
        if (s->sha[i][0]) {
            ragq_scripts_load(s);
            return;
        }
    }
}

int
ragq_scripts_noscript(const redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_ERROR &&
           strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

int
ragq_scripts_missing(ragq_scripts_t *s, const redisReply *reply)
{
    if (!ragq_scripts_noscript(reply)) {
        return 0;
    }
    ragq_scripts_flushed(s);
    return 1;
}
