/*
 * local.c: the offline embedder and the extractive answerer of local.h.
 * The embedder hashes lower-cased word unigrams and character 3/4-grams of
 * each word (UTF-8 aware) into a fixed number of signed buckets with
 * sublinear term frequency, then L2-normalises, so texts that share words
 * or word stems land close together without any model.  The answerer picks
 * the source sentences that cover most of the question's terms.  The vector
 * store lives in localstore.c.
 */

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "local.h"
#include "utf8.h"

#define RAGQ_HASH_DIM     384
#define RAGQ_WORD_MAX     64 /* code points kept of one word */
#define RAGQ_GRAM_WEIGHT  0.35f
#define RAGQ_MAX_SENTENCE 3

size_t
ragq_hash_embed_dim(void)
{
    return RAGQ_HASH_DIM;
}

/* ---- UTF-8 words ---------------------------------------------------- */

/*
 * Lower case for the scripts people mostly write documents in (Latin-1,
 * Latin Extended-A, Greek, Cyrillic).  Deliberately not towlower(): the
 * embedding must not depend on the process locale.
 */
static uint32_t
lower_cp(uint32_t c)
{
    if (c >= 'A' && c <= 'Z') {
        return c + 32;
    }
    if (c < 0x80) {
        return c;
    }
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) {
        return c + 32;
    }
    if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 &&
        c != 0x149 && c != 0x17F) {
        /* pairs: even upper, odd lower, except 0x139-0x148, 0x179-0x17E */
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) {
            return (c & 1) ? c + 1 : c;
        }
        return (c & 1) ? c : c + 1;
    }
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) {
        return c + 32;
    }
    if (c >= 0x410 && c <= 0x42F) {
        return c + 32;
    }
    if (c >= 0x400 && c <= 0x40F) {
        return c + 80;
    }
    return c;
}

static int
is_word_cp(uint32_t c)
{
    if (c < 0x80) {
        return isalnum((int) c) != 0;
    }
    /* punctuation and symbol blocks; everything else counts as letters */
    if ((c >= 0x80 && c <= 0xBF) || c == 0xD7 || c == 0xF7 ||
        (c >= 0x2000 && c <= 0x2BFF) || (c >= 0x3000 && c <= 0x303F) ||
        (c >= 0xFE30 && c <= 0xFE4F) || (c >= 0xFF00 && c <= 0xFF0F) ||
        c == 0xFFFD || (c >= 0x1F000 && c <= 0x1FAFF)) {
        return 0;
    }
    return 1;
}

/*
 * Next lower-cased word of text from *pos: its code points in cps (at most
 * RAGQ_WORD_MAX) and its UTF-8 form in buf.  Returns the number of code
 * points, 0 at the end of the text.
 */
static size_t
next_word(const char *text, size_t len, size_t *pos, uint32_t *cps, char *buf,
          size_t *buflen)
{
    size_t   n = 0, i = *pos, b = 0;
    uint32_t c;

    while (i < len) {
        size_t save = i;
        c = ragq_utf8_next(text, len, &i);
        if (is_word_cp(c)) {
            i = save;
            break;
        }
    }
    while (i < len) {
        size_t save = i;
        c = ragq_utf8_next(text, len, &i);
        if (!is_word_cp(c)) {
            i = save;
            break;
        }
        if (n < RAGQ_WORD_MAX) {
            c = lower_cp(c);
            cps[n++] = c;
            b += ragq_utf8_put(c, buf + b);
        }
    }
    *pos = i;
    buf[b] = '\0';
    *buflen = b;
    return n;
}

/* Words too common to say anything about a text's topic. */
static const char *const stop_words[] = {
    "a",     "about", "all",   "also", "an",   "and",   "any",   "are",
    "as",    "at",    "be",    "been", "but",  "by",    "can",   "could",
    "did",   "do",    "does",  "for",  "from", "had",   "has",   "have",
    "how",   "i",     "if",    "in",   "into", "is",    "it",    "its",
    "may",   "me",    "more",  "my",   "no",   "not",   "of",    "on",
    "one",   "or",    "our",   "out",  "so",   "some",  "such",  "than",
    "that",  "the",   "their", "them", "then", "there", "these", "they",
    "this",  "to",    "us",    "was",  "we",   "were",  "what",  "when",
    "where", "which", "while", "who",  "why",  "will",  "with",  "would",
    "you",   "your",
};

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int
is_stop_word(const char *w)
{
    return bsearch(&w, stop_words, sizeof(stop_words) / sizeof(stop_words[0]),
                   sizeof(stop_words[0]), cmp_str) != NULL;
}

/* ---- hashed embedder ------------------------------------------------ */

/* FNV-1a, then a 64-bit finaliser so that both bucket and sign bits mix. */
static uint64_t
hash_bytes(uint64_t seed, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t             h = 0xcbf29ce484222325ULL ^ seed;
    size_t               i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

typedef struct {
    uint64_t h;
    float    w;
} feature_t;

typedef struct {
    feature_t *f;
    size_t     n, cap;
    int        oom;
} features_t;

static void
feature_add(features_t *fs, uint64_t h, float w)
{
    if (fs->n == fs->cap) {
        size_t     ncap = fs->cap ? fs->cap * 2 : 256;
        feature_t *nf = realloc(fs->f, ncap * sizeof(feature_t));
        if (nf == NULL) {
            fs->oom = 1;
            return;
        }
        fs->f = nf;
        fs->cap = ncap;
    }
    fs->f[fs->n].h = h;
    fs->f[fs->n].w = w;
    fs->n++;
}

static int
cmp_feature(const void *a, const void *b)
{
    uint64_t x = ((const feature_t *) a)->h, y = ((const feature_t *) b)->h;
    return x < y ? -1 : x > y;
}

void
ragq_hash_embed(const char *text, size_t len, float *out)
{
    features_t fs = {NULL, 0, 0, 0};
    uint32_t   cps[RAGQ_WORD_MAX + 2];
    char       buf[RAGQ_WORD_MAX * 4 + 1];
    size_t     pos = 0, n, blen, i, j, g;
    double     norm = 0;

    memset(out, 0, RAGQ_HASH_DIM * sizeof(float));

    while ((n = next_word(text, len, &pos, cps + 1, buf, &blen)) > 0) {
        if (is_stop_word(buf)) {
            continue;
        }
        feature_add(&fs, hash_bytes(1, buf, blen), 1.0f);
        /* "<word>" n-grams let "ingest" and "ingestion" share features */
        cps[0] = '<';
        cps[n + 1] = '>';
        for (g = 3; g <= 4; g++) {
            for (i = 0; i + g <= n + 2; i++) {
                uint32_t gram[4];
                for (j = 0; j < g; j++) {
                    gram[j] = cps[i + j];
                }
                feature_add(&fs, hash_bytes(g, gram, g * sizeof(uint32_t)),
                            RAGQ_GRAM_WEIGHT);
            }
        }
    }
    if (fs.oom || fs.n == 0) {
        free(fs.f);
        return; /* zero vector: matches nothing */
    }

    qsort(fs.f, fs.n, sizeof(feature_t), cmp_feature);
    for (i = 0; i < fs.n; i = j) {
        double tf = 0;
        for (j = i; j < fs.n && fs.f[j].h == fs.f[i].h; j++) {
            tf += 1;
        }
        double   v = fs.f[i].w * (1.0 + log(tf));
        uint64_t h = fs.f[i].h;
        out[h % RAGQ_HASH_DIM] += (h >> 63) ? (float) -v : (float) v;
    }
    free(fs.f);

    for (i = 0; i < RAGQ_HASH_DIM; i++) {
        norm += (double) out[i] * out[i];
    }
    if (norm > 0) {
        norm = sqrt(norm);
        for (i = 0; i < RAGQ_HASH_DIM; i++) {
            out[i] = (float) (out[i] / norm);
        }
    }
}

/* ---- extractive answerer -------------------------------------------- */

typedef struct {
    char **w;
    size_t n, cap;
} words_t;

static int
words_push(words_t *ws, const char *w, size_t len)
{
    if (ws->n == ws->cap) {
        size_t ncap = ws->cap ? ws->cap * 2 : 32;
        char **nw = realloc(ws->w, ncap * sizeof(char *));
        if (nw == NULL) {
            return -1;
        }
        ws->w = nw;
        ws->cap = ncap;
    }
    ws->w[ws->n] = strndup(w, len);
    if (ws->w[ws->n] == NULL) {
        return -1;
    }
    ws->n++;
    return 0;
}

static void
words_free(words_t *ws)
{
    size_t i;

    for (i = 0; i < ws->n; i++) {
        free(ws->w[i]);
    }
    free(ws->w);
    ws->w = NULL;
    ws->n = ws->cap = 0;
}

/* Content words of a text, lower-cased; all words when all is set. */
static int
content_words(const char *text, size_t len, words_t *ws, int all)
{
    uint32_t cps[RAGQ_WORD_MAX];
    char     buf[RAGQ_WORD_MAX * 4 + 1];
    size_t   pos = 0, blen;

    while (next_word(text, len, &pos, cps, buf, &blen) > 0) {
        if (!all && is_stop_word(buf)) {
            continue;
        }
        if (words_push(ws, buf, blen) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Same word, or the same stem ("retrieve" / "retrieval"). */
static int
term_match(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), p = 0, shorter;

    if (strcmp(a, b) == 0) {
        return 1;
    }
    while (a[p] && a[p] == b[p]) {
        p++;
    }
    shorter = la < lb ? la : lb;
    return p >= 5 && p + 2 >= shorter;
}

typedef struct {
    char   *text; /* malloc'd sentence, citation not yet added */
    size_t  src;  /* index of its source */
    size_t  seq;  /* position in the order of all sentences */
    double  score;
    words_t words;
} sentence_t;

typedef struct {
    sentence_t *s;
    size_t      n, cap;
} sentences_t;

static int
sentence_add(sentences_t *ss, const char *text, size_t len, size_t src)
{
    sentence_t *s;
    size_t      i, nwords;

    while (len > 0 && isspace((unsigned char) *text)) {
        text++;
        len--;
    }
    while (len > 0 && isspace((unsigned char) text[len - 1])) {
        len--;
    }
    if (len == 0) {
        return 0;
    }
    /* overlapping chunks repeat sentences; keep the better-ranked one */
    for (i = 0; i < ss->n; i++) {
        if (strlen(ss->s[i].text) == len &&
            memcmp(ss->s[i].text, text, len) == 0) {
            return 0;
        }
    }
    if (ss->n == ss->cap) {
        size_t      ncap = ss->cap ? ss->cap * 2 : 64;
        sentence_t *ns = realloc(ss->s, ncap * sizeof(sentence_t));
        if (ns == NULL) {
            return -1;
        }
        ss->s = ns;
        ss->cap = ncap;
    }
    s = &ss->s[ss->n];
    memset(s, 0, sizeof(*s));
    s->text = strndup(text, len);
    if (s->text == NULL) {
        return -1;
    }
    if (content_words(text, len, &s->words, 1) != 0) {
        free(s->text);
        words_free(&s->words);
        return -1;
    }
    nwords = s->words.n;
    if (nwords < 3) {
        /* headings and fragments make poor answers */
        free(s->text);
        words_free(&s->words);
        return 0;
    }
    s->src = src;
    s->seq = ss->n;
    ss->n++;
    return 0;
}

/* Splits a run of prose at ". ", "! ", "? " before a capital or digit. */
static int
split_sentences(sentences_t *ss, const char *t, size_t len, size_t src)
{
    size_t from = 0, i;

    for (i = 0; i + 1 < len; i++) {
        if ((t[i] == '.' || t[i] == '!' || t[i] == '?') && t[i + 1] == ' ') {
            size_t k = i + 1;
            while (k < len && t[k] == ' ') {
                k++;
            }
            if (k < len && !islower((unsigned char) t[k])) {
                if (sentence_add(ss, t + from, i + 1 - from, src) != 0) {
                    return -1;
                }
                from = k;
                i = k - 1;
            }
        }
    }
    return sentence_add(ss, t + from, len - from, src);
}

/* Does this line start a new unit (heading, list item, quote, fence)? */
static size_t
block_marker(const char *l, size_t len, int *heading)
{
    size_t i = 0;

    *heading = 0;
    while (i < len && (l[i] == ' ' || l[i] == '\t')) {
        i++;
    }
    if (i < len && l[i] == '#') {
        *heading = 1;
        while (i < len && l[i] == '#') {
            i++;
        }
        return i;
    }
    if (i + 1 < len &&
        (l[i] == '-' || l[i] == '*' || l[i] == '+' || l[i] == '>') &&
        l[i + 1] == ' ') {
        return i + 2;
    }
    if (i < len && isdigit((unsigned char) l[i])) {
        size_t k = i;
        while (k < len && isdigit((unsigned char) l[k])) {
            k++;
        }
        if (k + 1 < len && (l[k] == '.' || l[k] == ')') && l[k + 1] == ' ') {
            return k + 2;
        }
    }
    return (size_t) -1;
}

/*
 * Splits one source into sentences.  Wrapped lines of a paragraph are
 * joined first, so a sentence that spans lines stays whole; headings, list
 * items and code fences start new units.
 */
static int
split_source(sentences_t *ss, const char *text, size_t src)
{
    size_t len = strlen(text), pos = 0, ulen = 0, before = ss->n, end;
    char  *unit;
    int    rc = 0;

    /*
     * Overlapping chunks may start or end inside a sentence: a chunk that
     * starts with a lower-case word starts with the tail of a sentence, and
     * one that ends without a full stop ends with the head of one.  Such
     * pieces would be misleading quotes, so they are left out.
     */
    while (pos < len && isspace((unsigned char) text[pos])) {
        pos++;
    }
    if (pos < len && islower((unsigned char) text[pos])) {
        while (pos < len &&
               !((text[pos] == '.' || text[pos] == '!' || text[pos] == '?') &&
                 (pos + 1 == len || isspace((unsigned char) text[pos + 1])))) {
            pos++;
        }
        pos++;
        if (pos >= len) {
            return 0;
        }
    }
    end = len;
    while (end > pos && isspace((unsigned char) text[end - 1])) {
        end--;
    }

    unit = malloc(len + 1);
    if (unit == NULL) {
        return -1;
    }
    while (pos <= len && rc == 0) {
        const char *l = text + pos;
        const char *nl = memchr(l, '\n', len - pos);
        size_t      llen = nl ? (size_t) (nl - l) : len - pos;
        size_t      blank = 1, i, m;
        int         heading;

        for (i = 0; i < llen; i++) {
            if (!isspace((unsigned char) l[i])) {
                blank = 0;
                break;
            }
        }
        m = block_marker(l, llen, &heading);
        if (blank || m != (size_t) -1 || (llen >= 3 && !memcmp(l, "```", 3))) {
            rc = split_sentences(ss, unit, ulen, src);
            ulen = 0;
            if (blank || (llen >= 3 && !memcmp(l, "```", 3))) {
                goto next;
            }
            l += m;
            llen -= m;
            if (heading) {
                goto next; /* titles are not statements */
            }
        }
        if (ulen > 0) {
            unit[ulen++] = ' ';
        }
        memcpy(unit + ulen, l, llen);
        ulen += llen;
    next:
        pos += llen + 1;
    }
    if (rc == 0) {
        rc = split_sentences(ss, unit, ulen, src);
    }
    free(unit);
    if (rc == 0 && ss->n > before && end > 0 &&
        strchr(".!?:)\"'`", text[end - 1]) == NULL) {
        ss->n--;
        free(ss->s[ss->n].text);
        words_free(&ss->s[ss->n].words);
    }
    return rc;
}

static int
cmp_score(const void *a, const void *b)
{
    const sentence_t *x = *(sentence_t *const *) a,
                     *y = *(sentence_t *const *) b;

    if (x->score != y->score) {
        return x->score < y->score ? 1 : -1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int
cmp_order(const void *a, const void *b)
{
    const sentence_t *x = *(sentence_t *const *) a,
                     *y = *(sentence_t *const *) b;

    if (x->src != y->src) {
        return x->src < y->src ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static const char no_sources[] =
    "No documents in the collection match this question, so there is "
    "nothing to answer from; ingest documents that cover it with "
    "ragq-ingest.";
static const char no_match[] =
    "The retrieved documents do not seem to answer this question; try "
    "rephrasing it with the words the documents use.";

char *
ragq_extractive_answer(const char *question, const ragq_source_t *sources,
                       size_t n)
{
    sentences_t  ss = {NULL, 0, 0};
    words_t      q = {NULL, 0, 0};
    sentence_t  *pick[RAGQ_MAX_SENTENCE];
    sentence_t **order = NULL;
    double      *idf = NULL;
    size_t       i, j, k, npick = 0, cap;
    char        *out = NULL;

    if (n == 0) {
        return strdup(no_sources);
    }
    if (content_words(question, strlen(question), &q, 0) != 0) {
        goto done;
    }
    for (i = 0; i < n; i++) {
        if (sources[i].text && split_source(&ss, sources[i].text, i) != 0) {
            goto done;
        }
    }
    if (q.n == 0 || ss.n == 0) {
        out = strdup(no_match);
        goto done;
    }

    /* rarer question terms say more about which sentence answers it */
    idf = calloc(q.n, sizeof(double));
    if (idf == NULL) {
        goto done;
    }
    for (j = 0; j < q.n; j++) {
        size_t df = 0;
        for (i = 0; i < ss.n; i++) {
            for (k = 0; k < ss.s[i].words.n; k++) {
                if (term_match(q.w[j], ss.s[i].words.w[k])) {
                    df++;
                    break;
                }
            }
        }
        idf[j] = log(1.0 + (double) ss.n / (1.0 + (double) df));
    }
    for (i = 0; i < ss.n; i++) {
        sentence_t *s = &ss.s[i];
        double      sum = 0, total = 0;
        for (j = 0; j < q.n; j++) {
            int dup = 0;
            for (k = 0; k < j; k++) {
                dup |= strcmp(q.w[k], q.w[j]) == 0;
            }
            if (dup) {
                continue;
            }
            total += idf[j];
            for (k = 0; k < s->words.n; k++) {
                if (term_match(q.w[j], s->words.w[k])) {
                    sum += idf[j];
                    break;
                }
            }
        }
        s->score = total > 0 ? sum / total : 0;
        if (s->words.n > 30) {
            s->score /= 1.0 + 0.01 * (double) (s->words.n - 30);
        }
        /* sources come best first; break near-ties in their favour */
        s->score *= 1.0 + 0.05 * (double) (n - s->src) / (double) n;
    }

    order = malloc(ss.n * sizeof(sentence_t *));
    if (order == NULL) {
        goto done;
    }
    for (i = 0; i < ss.n; i++) {
        order[i] = &ss.s[i];
    }
    qsort(order, ss.n, sizeof(sentence_t *), cmp_score);
    for (i = 0; i < ss.n && npick < RAGQ_MAX_SENTENCE; i++) {
        if (order[i]->score <= 0 || order[i]->score < 0.5 * order[0]->score) {
            break;
        }
        pick[npick++] = order[i];
    }
    if (npick == 0) {
        out = strdup(no_match);
        goto done;
    }
    qsort(pick, npick, sizeof(sentence_t *), cmp_order);

    cap = 1;
    for (i = 0; i < npick; i++) {
        cap += strlen(pick[i]->text) + 32;
    }
    out = malloc(cap);
    if (out == NULL) {
        goto done;
    }
    k = 0;
    for (i = 0; i < npick; i++) {
        const char *t = pick[i]->text;
        size_t      tl = strlen(t);
        char        end = 0;

        /* the citation goes before the sentence's own full stop */
        if (tl > 0 && (t[tl - 1] == '.' || t[tl - 1] == '!' ||
                       t[tl - 1] == '?' || t[tl - 1] == ':')) {
            end = t[tl - 1] == ':' ? '.' : t[tl - 1];
            tl--;
        }
        k += (size_t) snprintf(out + k, cap - k, "%s%.*s [%zu]%c", i ? " " : "",
                               (int) tl, t, pick[i]->src + 1, end ? end : '.');
    }

done:
    for (i = 0; i < ss.n; i++) {
        free(ss.s[i].text);
        words_free(&ss.s[i].words);
    }
    free(ss.s);
    words_free(&q);
    free(idf);
    free(order);
    return out;
}
