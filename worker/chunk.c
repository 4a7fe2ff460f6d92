/*
 * chunk.c: the document splitter of ragq-ingest (see chunk.h).  Works on
 * byte offsets but measures in UTF-8 characters, so a cut never lands
 * inside a multi-byte character, and a chunk ends at a word end whenever
 * the text has one: a paragraph break is preferred over a sentence or line
 * end, which is preferred over a plain space.
 */

#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "utf8.h"

#define RAGQ_CUT_PARAGRAPH 0
#define RAGQ_CUT_SENTENCE  1
#define RAGQ_CUT_WORD      2

static int
is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
           c == '\v';
}

/* Byte position after up to n characters from pos. */
static size_t
skip_chars(const char *t, size_t len, size_t pos, size_t n)
{
    while (pos < len && n > 0) {
        pos++;
        while (pos < len && ragq_utf8_is_cont((unsigned char) t[pos])) {
            pos++;
        }
        n--;
    }
    return pos;
}

/* Byte position n characters before pos, but not before floor. */
static size_t
back_chars(const char *t, size_t floor, size_t pos, size_t n)
{
    while (pos > floor && n > 0) {
        pos--;
        while (pos > floor && ragq_utf8_is_cont((unsigned char) t[pos])) {
            pos--;
        }
        n--;
    }
    return pos;
}

static size_t
skip_space(const char *t, size_t len, size_t pos)
{
    while (pos < len && is_space((unsigned char) t[pos])) {
        pos++;
    }
    return pos;
}

/* Does the word ending just before p end a sentence ("end." or "end.)")? */
static int
ends_sentence(const char *t, size_t floor, size_t p)
{
    while (p > floor && (t[p - 1] == '"' || t[p - 1] == '\'' ||
                         t[p - 1] == ')' || t[p - 1] == ']')) {
        p--;
    }
    return p > floor && (t[p - 1] == '.' || t[p - 1] == '!' || t[p - 1] == '?');
}

/*
 * Kind of cut at word end p (t[p] is white space): the white space run
 * decides between paragraph and line, the word before it between sentence
 * and word.
 */
static int
cut_level(const char *t, size_t len, size_t floor, size_t p)
{
    size_t q;
    int    newlines = 0;

    for (q = p; q < len && is_space((unsigned char) t[q]); q++) {
        if (t[q] == '\n') {
            newlines++;
        }
    }
    if (newlines >= 2) {
        return RAGQ_CUT_PARAGRAPH;
    }
    if (newlines == 1 || ends_sentence(t, floor, p)) {
        return RAGQ_CUT_SENTENCE;
    }
    return RAGQ_CUT_WORD;
}

/*
 * Where the next chunk starts so that it repeats about overlap characters
 * before cut: the earliest sentence start in that window, else the earliest
 * word start, else right after cut.  Always after start, so chunks advance.
 */
static size_t
overlap_start(const char *t, size_t len, size_t start, size_t cut,
              unsigned overlap)
{
    size_t target, q, word = 0;

    if (overlap == 0) {
        return skip_space(t, len, cut);
    }
    target = back_chars(t, start, cut, overlap);
    if (target <= start) {
        target = skip_chars(t, len, start, 1);
    }
    for (q = target; q < cut; q++) {
        if (is_space((unsigned char) t[q]) ||
            !is_space((unsigned char) t[q - 1])) {
            continue;
        }
        /* q starts a word */
        size_t e = q;
        while (e > start && is_space((unsigned char) t[e - 1])) {
            e--;
        }
        if (e < q && cut_level(t, len, start, e) <= RAGQ_CUT_SENTENCE) {
            return q;
        }
        if (word == 0) {
            word = q;
        }
    }
    return word ? word : skip_space(t, len, cut);
}

static int
push_chunk(ragq_chunk_t **chunks, size_t *n, size_t *cap, const char *t,
           size_t from, size_t to)
{
    ragq_chunk_t *c;

    while (from < to && is_space((unsigned char) t[from])) {
        from++;
    }
    while (to > from && is_space((unsigned char) t[to - 1])) {
        to--;
    }
    if (to == from) {
        return 0;
    }
    if (*n == *cap) {
        size_t        ncap = *cap ? *cap * 2 : 16;
        ragq_chunk_t *nc = realloc(*chunks, ncap * sizeof(ragq_chunk_t));
        if (nc == NULL) {
            return -1;
        }
        *chunks = nc;
        *cap = ncap;
    }
    c = &(*chunks)[*n];
    c->text = malloc(to - from + 1);
    if (c->text == NULL) {
        return -1;
    }
    memcpy(c->text, t + from, to - from);
    c->text[to - from] = '\0';
    c->len = to - from;
    c->chars = ragq_utf8_chars(c->text, c->len);
    c->start = from;
    c->index = (unsigned) *n;
    (*n)++;
    return 0;
}

int
ragq_chunk_text(const char *t, size_t len, unsigned chunk_size,
                unsigned overlap, ragq_chunk_t **chunks, size_t *n)
{
    size_t start, limit, minpos, p, cut, prev_cut = 0, cap = 0;
    size_t best[3];

    *chunks = NULL;
    *n = 0;
    if (chunk_size == 0 || overlap >= chunk_size) {
        return -1;
    }

    start = skip_space(t, len, 0);
    while (start < len) {
        limit = skip_chars(t, len, start, chunk_size);
        if (limit >= len) {
            if (push_chunk(chunks, n, &cap, t, start, len) != 0) {
                goto fail;
            }
            break;
        }

        /* Cuts before the middle make too many small chunks; cuts at or
         * before the previous one would not advance. */
        minpos = skip_chars(t, len, start, chunk_size / 2);
        if (minpos <= prev_cut) {
            minpos = skip_chars(t, len, prev_cut, 1);
        }

        best[0] = best[1] = best[2] = 0;
        for (p = start + 1; p <= limit; p++) {
            if (!is_space((unsigned char) t[p]) ||
                is_space((unsigned char) t[p - 1])) {
                continue;
            }
            if (p < minpos) {
                best[RAGQ_CUT_WORD] = p; /* only a fallback */
                continue;
            }
            best[cut_level(t, len, start, p)] = p;
        }
        if (best[RAGQ_CUT_PARAGRAPH] > prev_cut) {
            cut = best[RAGQ_CUT_PARAGRAPH];
        } else if (best[RAGQ_CUT_SENTENCE] > prev_cut) {
            cut = best[RAGQ_CUT_SENTENCE];
        } else if (best[RAGQ_CUT_WORD] > prev_cut) {
            cut = best[RAGQ_CUT_WORD];
        } else {
            cut = limit; /* one long word: cut between characters */
        }

        if (push_chunk(chunks, n, &cap, t, start, cut) != 0) {
            goto fail;
        }
        prev_cut = cut;
        start = overlap_start(t, len, start, cut, overlap);
        start = skip_space(t, len, start);
    }
    return 0;

fail:
    ragq_chunks_free(*chunks, *n);
    *chunks = NULL;
    *n = 0;
    return -1;
}

void
ragq_chunks_free(ragq_chunk_t *chunks, size_t n)
{
    size_t i;

    if (chunks == NULL) {
        return;
    }
    for (i = 0; i < n; i++) {
        free(chunks[i].text);
    }
    free(chunks);
}
