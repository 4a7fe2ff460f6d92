/*
 * test_pointid.c: worker/pointid.c, the point-id contract of ragq-ingest.
 * The expected ids were computed independently, with Python's uuid module:
 *   uuid.uuid5(uuid.NAMESPACE_URL, source + "\0" + str(index))
 * and the SHA-1 digests with hashlib (plus FIPS 180's own examples), so a
 * change to the hash, the namespace, the name's layout or the formatting
 * fails here before it orphans the points of every collection.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pointid.h"
#include "suites.h"

static void
hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", d[i]);
    }
}

static void
check_sha1(const void *data, size_t len, const char *want)
{
    unsigned char d[20];
    char          got[41];

    ragq_sha1(data, len, d);
    hex(d, 20, got);
    ck_assert_str_eq(got, want);
}

START_TEST(sha1_vectors)
{
    static const struct {
        size_t      len;
        const char *want;
    } pad[] = {
        /* lengths around the 55/56/64-byte padding edges */
        {55, "ddf57317ef34bfee3b6df83d359098930eb278bc"},
        {56, "a0d492bb0fc889d0eca3bc137066ab6f4f74f369"},
        {63, "c55856749bef509bdfe6bfebfc7bf4e793e82132"},
        {64, "bede92be29c3874e1b54ddc77988d606fc857a8e"},
        {65, "b05a80522b053d6dc7e0a517d0e70212c7dad11f"},
        {119, "504e27376a6e0f0dba8295b85cb25dc4dfa17d23"},
        {120, "82134b02fb3f702491be9bed581eeab59334acb2"},
    };
    unsigned char buf[128];
    char         *a;

    check_sha1("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    check_sha1("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
    check_sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
               "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (unsigned char) (i * 7 + 3);
    }
    for (size_t i = 0; i < sizeof(pad) / sizeof(pad[0]); i++) {
        check_sha1(buf, pad[i].len, pad[i].want);
    }
    a = malloc(1000000);
    memset(a, 'a', 1000000);
    check_sha1(a, 1000000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(a);
}
END_TEST

START_TEST(point_ids_are_uuid5)
{
    static const struct {
        const char *source;
        unsigned    index;
        const char *want;
    } c[] = {
        {"docs/a.md", 0, "f33bb241-9e8a-5523-9130-c7a16a58997f"},
        {"docs/a.md", 1, "27ef927c-7752-55d3-8361-fb218bc81d66"},
        {"docs/a.md", 12, "af2ad670-bba6-5514-a2a8-b4f7bc62060d"},
        {"a.md", 0, "18b38c6d-c6ff-515f-a9b0-32f9fa7c799b"},
        {"caf\xc3\xa9/\xc3\xbc"
         "ber.txt",
         3, "1c0d6205-25a2-550a-8b83-c9ca511454e1"},
        {"", 0, "ab54b8a1-9c8e-562d-9bf8-a1fefdfd8b60"},
    };
    char id[37], src[101];

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        memset(id, 'z', sizeof(id));
        ragq_point_id(c[i].source, c[i].index, id);
        ck_assert_str_eq(id, c[i].want);
    }
    memset(src, 'x', 100);
    src[100] = '\0';
    ragq_point_id(src, 4294967295u, id);
    ck_assert_str_eq(id, "44b5c2c4-81b3-5e81-a82f-f097a9e484e8");
}
END_TEST

START_TEST(source_names)
{
    static const struct {
        const char *path, *want;
    } c[] = {
        {"docs/a.md", "docs/a.md"},
        {"./docs/a.md", "docs/a.md"},
        {"././docs//a.md", "docs/a.md"},
        {".//docs///x//a.md", "docs/x/a.md"},
        {"docs/", "docs"},
        {"/abs/dir//f.txt", "/abs/dir/f.txt"},
        {"/", "/"},
        {"../up.md", "../up.md"},
        {".hidden.md", ".hidden.md"},
    };
    char *s;

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        s = ragq_point_source(c[i].path);
        ck_assert_msg(s != NULL && strcmp(s, c[i].want) == 0, "%s -> %s",
                      c[i].path, s ? s : "(null)");
        free(s);
    }
}
END_TEST

Suite *
ragq_suite_pointid(void)
{
    Suite *s = suite_create("pointid");
    TCase *tc = tcase_create("pointid");

    tcase_add_test(tc, sha1_vectors);
    tcase_add_test(tc, point_ids_are_uuid5);
    tcase_add_test(tc, source_names);
    suite_add_tcase(s, tc);
    return s;
}
