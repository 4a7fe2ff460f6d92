/*
 * bench/sse_parse.c: the per-token cost of a streamed answer in the worker's
 * own code, against baselines in the same run.  One 200-token answer in
 * the stand-in's chat.completion.chunk events, fed in reads of five events
 * (a 50 ms tick at 10 ms a token) to ragq_chat_stream_feed (SSE lines,
 * openai_chunk.c's reader of events, UTF-8 filter: the answer comes out).
 * Baselines: the same with every event parsed into jsonr's tree
 * (jsonr_only, how every event was read before openai_chunk.c), and the
 * events cut and parsed with json-c (json_tokener_parse), reading
 * choices[0].delta.content.  Prints microseconds per answer, best of 15
 * batches; bench/sse-parse also counts instructions under callgrind.
 */

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "openai_stream.h"

#define TOKENS          200
#define EVENTS_PER_READ 5

static size_t got;

static void
on_piece(const char *text, size_t n, void *data)
{
    (void) text;
    (void) data;
    got += n;
}

static size_t
make_body(char *body)
{
    static const char head[] =
        "data: {\"id\":\"chatcmpl-standin-0123456789\",\"object\":\"chat."
        "completion.chunk\",\"created\":1733400000,\"model\":\"gpt-4o-mini\","
        "\"system_fingerprint\":\"fp_standin\",\"choices\":[{\"index\":0,"
        "\"delta\":{";
    static const char tail[] =
        "},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n";
    size_t len = 0;
    int    i;

    len += sprintf(body + len, "%s\"role\":\"assistant\",\"content\":\"\"%s",
                   head, tail);
    for (i = 0; i < TOKENS; i++) {
        len +=
            sprintf(body + len, "%s\"content\":\"word%d \"%s", head, i, tail);
    }
    len += sprintf(body + len, "data: [DONE]\n\n");
    return len;
}

static void
feed(const char *body, size_t len, int jsonr_only)
{
    ragq_chat_stream_t s;
    char              *answer, *usage;
    size_t             off = 0, step = len / (TOKENS / EVENTS_PER_READ);

    ragq_chat_stream_init(&s, on_piece, NULL);
    s.jsonr_only = jsonr_only;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;

        ragq_chat_stream_feed(&s, body + off, n);
        off += n;
    }
    ragq_chat_stream_end(&s, &answer, &usage);
    free(answer);
    free(usage);
    ragq_chat_stream_free(&s);
}

static void
ours(const char *body, size_t len)
{
    feed(body, len, 0);
}

static void
jsonr_tree(const char *body, size_t len)
{
    feed(body, len, 1);
}

static void
json_c(const char *body, size_t len)
{
    const char *p = body, *end = body + len, *nl;
    char        ev[1024];

    while (p < end && (nl = memchr(p, '\n', (size_t) (end - p))) != NULL) {
        size_t n = (size_t) (nl - p);

        if (n > 6 && memcmp(p, "data: ", 6) == 0 && n - 6 < sizeof(ev) &&
            memcmp(p + 6, "[DONE]", 6) != 0) {
            json_object *root, *choices, *delta, *content;

            memcpy(ev, p + 6, n - 6);
            ev[n - 6] = '\0';
            root = json_tokener_parse(ev);
            if (json_object_object_get_ex(root, "choices", &choices) &&
                json_object_object_get_ex(json_object_array_get_idx(choices, 0),
                                          "delta", &delta) &&
                json_object_object_get_ex(delta, "content", &content)) {
                got += (size_t) json_object_get_string_len(content);
            }
            json_object_put(root);
        }
        p = nl + 1;
    }
}

static double
best_us(void (*fn)(const char *, size_t), const char *body, size_t len,
        int batches, int reps)
{
    double best = 1e18;
    int    b, r;

    for (b = 0; b < batches; b++) {
        struct timespec t0, t1;
        double          us;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (r = 0; r < reps; r++) {
            fn(body, len);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        us = ((double) (t1.tv_sec - t0.tv_sec) * 1e9 +
              (double) (t1.tv_nsec - t0.tv_nsec)) /
             1e3 / reps;
        best = us < best ? us : best;
    }
    return best;
}

int
main(int argc, char **argv)
{
    static char body[TOKENS * 300 + 1024];
    size_t      len = make_body(body), want;
    const char *only = argc > 1 ? argv[1] : NULL;
    int         batches = argc > 2 ? atoi(argv[2]) : 15;
    double      a = 0, b = 0, t = 0;
    size_t      got_c, got_t;

    got = 0;
    ours(body, len);
    want = got;
    got = 0;
    json_c(body, len);
    got_c = got;
    got = 0;
    jsonr_tree(body, len);
    got_t = got;
    if (got_c != want || got_t != want) {
        fprintf(stderr, "they disagree: %zu, %zu, %zu bytes of answer\n", want,
                got_t, got_c);
        return 1;
    }
    if (only == NULL || strcmp(only, "ours") == 0) {
        a = best_us(ours, body, len, batches, 300);
    }
    if (only == NULL || strcmp(only, "jsonr") == 0) {
        t = best_us(jsonr_tree, body, len, batches, 300);
    }
    if (only == NULL || strcmp(only, "json-c") == 0) {
        b = best_us(json_c, body, len, batches, 300);
    }
    printf("%zu bytes, %d events, %zu bytes of answer\n", len, TOKENS + 2,
           want);
    if (a > 0) {
        printf("ragq_chat_stream_feed: %.1f us per answer\n", a);
    }
    if (t > 0) {
        printf("every event as a jsonr tree: %.1f us per answer\n", t);
    }
    if (b > 0) {
        printf("json-c per event:      %.1f us per answer\n", b);
    }
    if (a > 0 && t > 0) {
        printf("jsonr tree / ours: %.2f\n", t / a);
    }
    if (a > 0 && b > 0) {
        printf("json-c / ours: %.2f\n", b / a);
    }
    return 0;
}
