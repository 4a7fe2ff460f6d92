/*
 * fuzz/oracle.h: strict JSON and UTF-8 checks for the fuzz targets
 * (oracle.c), independent of the code under test.
 */
#ifndef RAGQ_FUZZ_ORACLE_H
#define RAGQ_FUZZ_ORACLE_H

#include <stddef.h>
#include <string.h>

/* 1 when p is UTF-8: no overlongs, surrogates or code points past U+10FFFF */
int oracle_utf8(const unsigned char *p, size_t len);

/* 1 when p is exactly one JSON value, UTF-8, no lone surrogate escapes,
 * containers nested at most max_depth deep */
int oracle_json(const unsigned char *p, size_t len, int max_depth);

/* the same, but in strings raw control bytes, bytes that are not UTF-8
 * and lone surrogate escapes pass (what the worker's reader takes) */
int oracle_json_grammar(const unsigned char *p, size_t len, int max_depth);

/* 1 when p is one JSON object (any depth up to 1000) */
int oracle_json_object(const unsigned char *p, size_t len);

#endif
