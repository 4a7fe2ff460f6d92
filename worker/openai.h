/*
 * openai.h: request bodies and response parsing for OpenAI-compatible
 * /embeddings and /chat/completions (OpenAI, Ollama, vLLM, llama.cpp server,
 * TEI).  Pure functions: no I/O.  Implemented in openai.c.
 */

#ifndef RAGQ_OPENAI_H
#define RAGQ_OPENAI_H

#include "upstream.h"

/* How the key is sent: "Authorization: Bearer KEY" (ragq_auth_header). */
#define RAGQ_OPENAI_AUTH_HEADER "Authorization", "Bearer "

/*
 * Body of POST {base}/embeddings:
 * {"model": model, "input": [..n strings..], "encoding_format": "float"}.
 * malloc'd, NULL on allocation failure.
 */
char *ragq_openai_embeddings_body(const char *model, const char *const *inputs,
                                  size_t n);

/*
 * Parses a 2xx embeddings answer holding n vectors.  On success *vectors is
 * a malloc'd n x *dim array, row i being input i (rows are placed by the
 * items' "index", whatever their order), and 0 is returned.  On a malformed
 * answer, a count or dimension mismatch, -1 with err filled (not retryable).
 */
int ragq_openai_embeddings_parse(const char *body, size_t len, size_t n,
                                 float **vectors, size_t *dim,
                                 ragq_upstream_error_t *err);

/*
 * Body of POST {base}/chat/completions, non-streaming.  Messages: a system
 * message telling the model to answer only from the numbered sources and to
 * cite them as [n], then one user message made of the lines
 *     [1] (source) text
 *     [2] (source) text
 * a blank line, and "Question: <question>".  max_tokens 0 = not sent.
 */
char *ragq_openai_chat_body(const char *model, const char *question,
                            const ragq_source_t *sources, size_t n,
                            unsigned max_tokens);

/* The same with "stream":true,"stream_options":{"include_usage":true}
 * (the answer is read by openai_stream.h). */
char *ragq_openai_chat_stream_body(const char *model, const char *question,
                                   const ragq_source_t *sources, size_t n,
                                   unsigned max_tokens);

/*
 * Parses a 2xx chat answer: *answer = choices[0].message.content (malloc'd),
 * *usage_json = the "usage" object as JSON text or NULL when absent
 * (malloc'd).  -1 with err filled on a malformed answer or empty content.
 */
int ragq_openai_chat_parse(const char *body, size_t len, char **answer,
                           char **usage_json, ragq_upstream_error_t *err);

#endif
