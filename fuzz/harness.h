/*
 * fuzz/harness.h: what the module's fuzz targets share (harness.c,
 * ngx_stubs.c): an input cut into sections, a request as nginx hands it to
 * a content handler, a location configuration, Valkey replies built from
 * bytes, the Valkey connection played by hand (each command's cell answered
 * by the target), and what the module answered.
 */
#ifndef RAGQ_FUZZ_HARNESS_H
#define RAGQ_FUZZ_HARNESS_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "../ngx_http_ragq_module.h"
#include "../ngx_http_ragq_valkey.h"
#include "oracle.h"

/* sections of an input are separated by this byte (ASCII RS): a control
 * character, so never part of valid JSON text or of a header */
#define FUZZ_SEP 0x1e

#define FUZZ_MAX_CELLS 8

/* what the module did with one input */
typedef struct {
    ngx_uint_t            answers; /* response headers sent */
    ngx_uint_t            status;  /* of the last one */
    ngx_str_t             type;    /* its Content-Type */
    u_char               *body;    /* its body (malloc'd) */
    size_t                len;
    ngx_int_t             finalized; /* rc of the last finalize, -1000: none */
    ngx_http_ragq_cell_t *cells[FUZZ_MAX_CELLS]; /* commands with a reply */
    ngx_uint_t            ncells;
    ngx_uint_t            commands;  /* all commands sent */
    ngx_str_t             query;     /* a stored question */
    u_char                cmd[1024]; /* the last command sent (cut there) */
    size_t                cmd_len;
} fuzz_out_t;

extern fuzz_out_t fuzz_out;

/* how the Valkey connection behaves for this input */
typedef struct {
    ngx_int_t available; /* NGX_OK, NGX_BUSY or NGX_DECLINED */
    ngx_int_t send_rc;   /* what command/send return */
} fuzz_valkey_t;

extern fuzz_valkey_t fuzz_valkey;

/* the input's sections (at most n), returns how many */
size_t fuzz_sections(const uint8_t *data, size_t size, ngx_str_t *sec,
                     size_t n);

/* a fresh state for one input: pools, answers, the fake Valkey */
void fuzz_begin(void);
/* frees the input's pool */
void fuzz_pool_free(void);

/* a location: kind NGX_HTTP_RAGQ_ENQUEUE or _STATUS, prefix "ragq" */
ngx_http_ragq_loc_conf_t *fuzz_loc_conf(ngx_uint_t kind);
/* a complex value that is the constant s (ragq_tenant, ragq_collection) */
ngx_http_complex_value_t *fuzz_complex_value(ngx_str_t *s);

/* the request nginx hands to a content handler */
typedef struct {
    ngx_uint_t method;       /* NGX_HTTP_POST, ... */
    ngx_str_t  args;         /* data NULL: no query string */
    ngx_str_t  content_type; /* data NULL: none */
    ngx_str_t  idem;         /* data NULL: no Idempotency-Key */
    ngx_str_t  body;         /* data NULL: no body */
    ngx_uint_t chunked;      /* Transfer-Encoding: chunked */
    ngx_uint_t nbufs;        /* body split into so many buffers (1..8) */
    ngx_uint_t in_file;      /* the body in a temporary file */
    ngx_uint_t empty_bufs;   /* empty memory buffers between the others */
    uint8_t    cuts[8];      /* where the buffers are cut */
} fuzz_request_spec_t;

ngx_http_request_t *fuzz_request(fuzz_request_spec_t      *spec,
                                 ngx_http_ragq_loc_conf_t *lcf);
/* the request's cleanups, as nginx runs them when it frees it */
void fuzz_request_free(ngx_http_request_t *r);

/*
 * A reply from bytes: the first byte is its type: 'A' (or anything else)
 * an array of the items separated by \x1f, 'E' error, 'S' status, 'I'
 * integer, 'N' nil, 'X' none (the connection failed: NULL). An item that
 * starts with \x1d is not a string: \x1d + 'i' integer, 'n' nil, 's'
 * status, 'e' error, 'a' an array of the rest's characters.
 */
redisReply *fuzz_reply(ngx_str_t *in, ngx_uint_t *absent);
/* one item of such an array on its own (a string unless it starts \x1d) */
redisReply *fuzz_reply_item(const u_char *p, size_t len);
/* an array of n elements, each NULL until the caller sets it */
redisReply *fuzz_reply_array(size_t n);
void        fuzz_reply_free(redisReply *r);

/*
 * Plays the Valkey side: every cell the module sent is answered (reply) or
 * first loses its request (order 1: the client went away) or its deadline
 * (order 2), then freed as the connection frees it.
 */
ngx_uint_t fuzz_check_answer(ngx_uint_t json);
ngx_uint_t fuzz_deliver(ngx_http_ragq_cell_t *cell, redisReply *reply);
void       fuzz_answer_cells(ngx_http_request_t *r, redisReply *reply,
                             ngx_uint_t order);

/* aborts with a message: what the oracle found */
void fuzz_fail(const char *what, const u_char *p, size_t len);

#endif
