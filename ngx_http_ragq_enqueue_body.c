/*
 * ragq: the JSON body of POST /chat, {"query": "...", "top_k": N,
 * "callback_url": "..."}: read in one pass over the body, each value
 * checked where it is found, every refusal with its status, code and
 * message (ngx_http_ragq_enqueue.c answers with them).
 */

#include "ngx_http_ragq_enqueue.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_json.h"


/*
 * The value of "query" (or "callback_url") in a /chat body: a string,
 * decoded into r->pool. Its extent is found first, so the copy is as long
 * as the string, never the rest of the body. Another type is an error with
 * code and message.
 */
static ngx_int_t
ngx_http_ragq_parse_string(ngx_http_request_t *r, ngx_http_ragq_json_t *j,
                           ngx_str_t *query, ngx_http_ragq_err_t *err,
                           const char *code, const char *message)
{
    u_char *start;

    if (j->p == j->end) {
        return NGX_ERROR;
    }

    if (*j->p != '"') {
        if (ngx_http_ragq_json_skip(j) != NGX_OK) {
            return NGX_ERROR;
        }

        err->code = code;
        err->message = message;
        return NGX_ERROR;
    }

    start = j->p;

    if (ngx_http_ragq_json_string(j, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the decoded text is never longer than the quoted one */
    query->data = ngx_pnalloc(r->pool, j->p - start);
    if (query->data == NULL) {
        err->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        err->code = "internal_error";
        err->message = "out of memory";
        return NGX_ERROR;
    }

    j->p = start;

    return ngx_http_ragq_json_string(j, query);
}


/*
 * The value of "top_k" in a /chat body: null is unset; anything but a small
 * non-negative integer is 0, which the checks reject with the allowed range.
 */
static ngx_int_t
ngx_http_ragq_parse_top_k(ngx_http_ragq_json_t *j, ngx_int_t *top_k)
{
    u_char    *start;
    ngx_flag_t integer;

    start = j->p;

    if (j->end - j->p >= 4 && ngx_strncmp(j->p, "null", 4) == 0) {
        j->p += 4;
        *top_k = NGX_CONF_UNSET;
        return NGX_OK;
    }

    if (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '-')) {
        if (ngx_http_ragq_json_number(j, &integer) != NGX_OK) {
            return NGX_ERROR;
        }

        if (!integer || *start == '-' || j->p - start > 6) {
            *top_k = 0;
        } else {
            *top_k = ngx_atoi(start, j->p - start);
        }

        return NGX_OK;
    }

    if (ngx_http_ragq_json_skip(j) != NGX_OK) {
        return NGX_ERROR;
    }

    *top_k = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ragq_parse_object(ngx_http_request_t *r, ngx_http_ragq_json_t *j,
                           ngx_str_t *query, ngx_int_t *top_k,
                           ngx_str_t *callback, ngx_http_ragq_err_t *err)
{
    u_char    *start;
    ngx_str_t  key;
    ngx_uint_t seen_top_k;
    u_char     keybuf[16];

    seen_top_k = 0;

    ngx_http_ragq_json_ws(j);

    if (j->p == j->end || *j->p != '{') {
        if (j->p != j->end) {
            err->message = "the JSON body must be an object: "
                           "{\"query\": \"your question\"}";
        }

        return NGX_ERROR;
    }

    j->p++;
    ngx_http_ragq_json_ws(j);

    if (j->p < j->end && *j->p == '}') {
        j->p++;
        goto done;
    }

    for (;;) {
        ngx_http_ragq_json_ws(j);

        start = j->p;

        if (ngx_http_ragq_json_string(j, NULL) != NGX_OK) {
            return NGX_ERROR;
        }

        /* keys we care about are short; longer ones are skipped unread */
        key.len = 0;

        if ((size_t) (j->p - start) <= sizeof(keybuf)) {
            key.data = keybuf;
            j->p = start;
            (void) ngx_http_ragq_json_string(j, &key);
        }

        ngx_http_ragq_json_ws(j);

        if (j->p == j->end || *j->p != ':') {
            return NGX_ERROR;
        }

        j->p++;
        ngx_http_ragq_json_ws(j);

        if (key.len == 5 && ngx_strncmp(key.data, "query", 5) == 0) {
            if (query->data) {
                err->message = "the JSON body has \"query\" more than once";
                return NGX_ERROR;
            }

            if (ngx_http_ragq_parse_string(r, j, query, err, "invalid_query",
                                           "\"query\" must be a non-empty "
                                           "string")
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (key.len == 12
                   && ngx_strncmp(key.data, "callback_url", 12) == 0)
        {
            if (callback->data) {
                err->message = "the JSON body has \"callback_url\" more "
                               "than once";
                return NGX_ERROR;
            }

            /* null: no callback */
            if (j->end - j->p >= 4 && ngx_strncmp(j->p, "null", 4) == 0) {
                j->p += 4;

            } else if (ngx_http_ragq_parse_string(r, j, callback, err,
                                                  "callback_not_allowed",
                                                  "\"callback_url\" must be "
                                                  "a string (a URL)")
                       != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (key.len == 5 && ngx_strncmp(key.data, "top_k", 5) == 0) {
            if (seen_top_k++) {
                err->message = "the JSON body has \"top_k\" more than once";
                return NGX_ERROR;
            }

            if (ngx_http_ragq_parse_top_k(j, top_k) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (ngx_http_ragq_json_skip(j) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_http_ragq_json_ws(j);

        if (j->p == j->end) {
            return NGX_ERROR;
        }

        if (*j->p == ',') {
            j->p++;
            continue;
        }

        if (*j->p == '}') {
            j->p++;
            break;
        }

        return NGX_ERROR;
    }

done:

    ngx_http_ragq_json_ws(j);

    if (j->p != j->end) {
        err->message = "unexpected data after the JSON object";
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the question of a /chat body: {"query": "...", "top_k": N} */
ngx_int_t
ngx_http_ragq_enqueue_parse_body(ngx_http_request_t *r, u_char *p, size_t len,
                                 ngx_str_t *query, ngx_int_t *top_k,
                                 ngx_str_t *callback, ngx_http_ragq_err_t *err)
{
    ngx_http_ragq_json_t j;

    err->status = NGX_HTTP_BAD_REQUEST;
    err->code = "invalid_json";
    err->message = "the request body is not valid JSON; send "
                   "{\"query\": \"your question\"}";

    ngx_http_ragq_json_init(&j, p, len);

    if (ngx_http_ragq_parse_object(r, &j, query, top_k, callback, err)
        == NGX_OK)
    {
        return NGX_OK;
    }

    /* JSON text is UTF-8 (RFC 8259, 8.1) */
    if (j.invalid_utf8) {
        err->status = NGX_HTTP_BAD_REQUEST;
        err->code = "invalid_utf8";
        err->message = "the JSON body is not valid UTF-8";
    }

    return NGX_ERROR;
}
