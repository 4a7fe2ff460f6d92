/*
 * jsonr.h: the worker's JSON reader, strict (RFC 8259), for every answer
 * either program parses: embeddings, Qdrant query and collection info,
 * chat completions and their usage, and upstream error bodies.  It puts
 * the whole tree in one arena reused from parse to parse (json-c, used
 * before, built a hash table per object and an allocation per value:
 * about half of the worker's CPU per job).  Strings are unescaped (\u
 * escapes as UTF-8, other bytes passed through as they are); numbers keep
 * a pointer to their text, so integers print exactly as they came (the
 * parsed text must outlive the tree).  Single-threaded, like the worker.
 * Written JSON is jsonw.h's.
 */

#ifndef RAGQ_JSONR_H
#define RAGQ_JSONR_H

#include <stddef.h>

typedef enum {
    RAGQ_JNULL,
    RAGQ_JBOOL,
    RAGQ_JNUM,
    RAGQ_JSTR,
    RAGQ_JARR,
    RAGQ_JOBJ
} ragq_jtype_t;

typedef struct ragq_jv_s ragq_jv_t;

struct ragq_jv_s {
    ragq_jtype_t type;
    int          is_int;  /* RAGQ_JNUM written without fraction or exponent */
    int          boolean; /* RAGQ_JBOOL */
    double       num;     /* RAGQ_JNUM */
    const char  *str;     /* RAGQ_JSTR: unescaped, NUL-terminated; RAGQ_JNUM:
                             the number's text (not terminated) */
    size_t      len;      /* bytes of str; children of an array / object */
    const char *key;      /* member name when the parent is an object */
    size_t      keylen;
    ragq_jv_t  *child; /* first element / member */
    ragq_jv_t  *next;  /* next sibling */
};

/* Owns the memory of one parsed text; reusable (ragq_jdoc_parse resets). */
typedef struct {
    void *blocks; /* arena blocks, the first one kept between parses */
    /* 1: an escaped lone UTF-16 surrogate is kept in its 3-byte form (ED A0
     * 80..ED BF BF, not valid UTF-8) rather than made U+FFFD, so that a
     * reader of pieces can join a pair split between two strings */
    int lone_surrogates;
} ragq_jdoc_t;

#define RAGQ_JDOC_INIT \
    {                  \
        NULL, 0        \
    }

/*
 * Parses a whole JSON text (RFC 8259, surrounding whitespace allowed, at
 * most 256 levels deep).  NULL when it is not JSON or memory ran out.  The
 * tree lives until the next parse with doc or ragq_jdoc_free.
 */
ragq_jv_t *ragq_jdoc_parse(ragq_jdoc_t *doc, const char *text, size_t len);
void       ragq_jdoc_free(ragq_jdoc_t *doc);

/*
 * The text between a string's quotes (n bytes), unescaped as the parser
 * does into out (room for n + 1 bytes; NUL-terminated), its length in
 * *outlen.  -1 for an escape RFC 8259 does not have.
 */
int ragq_json_unescape(const char *in, size_t n, char *out, size_t *outlen);

/* The same, a lone surrogate kept in its 3-byte form (see ragq_jdoc_t). */
int ragq_json_unescape_lone(const char *in, size_t n, char *out,
                            size_t *outlen);

/*
 * 1 when every escape in the n bytes between a string's quotes is one
 * ragq_json_unescape accepts (it then cannot fail on them), else 0.
 */
int ragq_json_escapes_ok(const char *in, size_t n);

/* The member named key (the last one when repeated), NULL if none or if o
 * is not an object. */
ragq_jv_t *ragq_jv_get(const ragq_jv_t *o, const char *key);

/* Member key of o when it has type t, else NULL. */
ragq_jv_t *ragq_jv_get_type(const ragq_jv_t *o, const char *key,
                            ragq_jtype_t t);

/*
 * Calls fn(key, value, arg) for each distinct key of object o, in the
 * order keys first appear: key is that first member (its key), value the
 * last member with the same key (as ragq_jv_get reads it).  Stops at fn's
 * first nonzero return and returns it; -1 when out of memory.  O(n log n)
 * in the members: an upstream's object of a million keys must not hold
 * the loop for minutes.
 */
int ragq_jv_each_member(const ragq_jv_t *o,
                        int (*fn)(const ragq_jv_t *key, const ragq_jv_t *value,
                                  void *arg),
                        void *arg);

/* Compact JSON text of v (strings re-escaped as valid UTF-8, numbers as
 * they came, repeated keys once with their last value).  malloc'd. */
char *ragq_jv_to_json(const ragq_jv_t *v);

#endif
