/*
 * helpers.c: what several suites need to check the JSON the worker writes:
 * a strict parse (as any client would do) and a key that must be there.
 */

#include <json.h>
#include <string.h>

#include "suites.h"

struct json_object *
ragq_test_strict_parse(const char *text)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object  *o;

    json_tokener_set_flags(tok,
                           JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, text, (int) strlen(text));
    if (json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}


struct json_object *
ragq_test_key(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;

    ck_assert_msg(json_object_object_get_ex(o, key, &v), "no key %s", key);
    return v;
}
