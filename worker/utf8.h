/*
 * utf8.h: the worker's one UTF-8 implementation, strict as RFC 3629 says
 * (no overlong forms, no surrogates, nothing above U+10FFFF), so whatever
 * it lets through is acceptable to strict parsers.  Counting, decoding,
 * encoding, cutting on a character boundary, and making any bytes valid
 * text (an invalid sequence becomes U+FFFD, one per byte).  The JSON reader
 * and writer, the chunker, the hashed embedder, upstream error messages and
 * ragq-ingest's documents all use it.  Implemented in utf8.c.
 */

#ifndef RAGQ_UTF8_H
#define RAGQ_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define RAGQ_UTF8_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/*
 * Length (1..4) of the valid sequence p[0..avail) starts with, 0 when it
 * starts an invalid one.  avail >= 1.  Inline: the JSON writer calls it for
 * every non-ASCII character it copies.
 */
static inline size_t
ragq_utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        return (avail >= 2 && (p[1] & 0xc0) == 0x80) ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) {
            return 0;
        }
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f)) {
            return 0;
        }
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80) {
            return 0;
        }
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f)) {
            return 0;
        }
        return 4;
    }
    return 0;
}

/* A continuation byte (10xxxxxx): never the start of a character. */
static inline int
ragq_utf8_is_cont(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

/*
 * The character at s[*i] (*i < len), advancing *i past it; an invalid
 * sequence is U+FFFD and one byte.
 */
uint32_t ragq_utf8_next(const char *s, size_t len, size_t *i);

/* cp (<= U+10FFFF) as UTF-8 into out (room for 4 bytes); its length. */
size_t ragq_utf8_put(uint32_t cp, char *out);

/* Characters in s[0..len): the bytes that are not continuation bytes. */
size_t ragq_utf8_chars(const char *s, size_t len);

/*
 * Length of the longest prefix of s[0..len), at most max bytes, that does
 * not split a UTF-8 character (an invalid byte counts as one character).
 */
size_t ragq_utf8_cut(const char *s, size_t len, size_t max);

/*
 * A NUL-terminated copy of s[0..len) that is valid UTF-8: each byte of an
 * invalid sequence becomes U+FFFD; a NUL byte becomes nul_to, or U+FFFD
 * when nul_to is 0.  *outlen (when not NULL) gets the copy's length.
 * malloc'd, NULL on allocation failure.
 */
char *ragq_utf8_clean(const char *s, size_t len, char nul_to, size_t *outlen);

/* ragq_utf8_clean with NUL as U+FFFD. */
char *ragq_utf8_dup(const char *s, size_t len);

#endif
