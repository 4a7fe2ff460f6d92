/*
 * scripts.h: the queue's Lua scripts and how they are called.  The texts
 * are the worker/scripts/NAME.lua files, turned into C strings at build time by
 * worker/scripts/embed.sh (so they can be read, linted and run on their
 * own); each file's header says its KEYS, ARGV and reply.  They run by
 * EVALSHA once SCRIPT LOAD has answered on the connection, else by EVAL; a
 * NOSCRIPT answer (script cache flushed, fail-over) reloads them all.
 * Implemented in scripts.c.
 */

#ifndef RAGQ_SCRIPTS_H
#define RAGQ_SCRIPTS_H

#include "valkey_conn.h"

/* Generated from worker/scripts/NAME.lua. */
extern const char ragq_script_claim[];
extern const char ragq_script_final[];
extern const char ragq_script_release[];
extern const char ragq_script_keepalive[];
extern const char ragq_script_consumers[];
extern const char ragq_script_append[];

typedef enum {
    RAGQ_SCRIPT_CLAIM,
    RAGQ_SCRIPT_FINAL,
    RAGQ_SCRIPT_RELEASE,
    RAGQ_SCRIPT_KEEPALIVE,
    RAGQ_SCRIPT_CONSUMERS,
    RAGQ_SCRIPT_APPEND, /* streamed pieces (issue 12) */
    RAGQ_NSCRIPTS
} ragq_script_t;

/* The SHA1s one connection's server knows; "" = send by EVAL. */
typedef struct {
    ragq_vconn_t *vc;
    char          sha[RAGQ_NSCRIPTS][41];
} ragq_scripts_t;

void ragq_scripts_init(ragq_scripts_t *s, ragq_vconn_t *vc);

/* SCRIPT LOAD of every script: after each (re)connect of s->vc. */
void ragq_scripts_load(ragq_scripts_t *s);

/* The connection was lost: the next server may not have them. */
void ragq_scripts_forget(ragq_scripts_t *s);

/* argv[0] and argv[1] of a call: EVALSHA sha, or EVAL text. */
void ragq_scripts_head(const ragq_scripts_t *s, ragq_script_t which,
                       const char **argv);

/* 1 when reply is a NOSCRIPT error. */
int ragq_scripts_noscript(const struct redisReply *reply);

/* The server answered NOSCRIPT: every script is loaded again, once. */
void ragq_scripts_flushed(ragq_scripts_t *s);

/*
 * 1 when reply is NOSCRIPT: the scripts are being reloaded and the caller
 * sends its call again (it goes by EVAL until the load answers).
 */
int ragq_scripts_missing(ragq_scripts_t *s, const struct redisReply *reply);

#endif
