/*
 * test_local.c: the offline backends (worker/local.c, localstore.c): the
 * hashed embedder ranks related texts first, the local store round-trips,
 * reloads, replaces whole documents (emptied ones too), refuses other
 * dimensions and ranks like a brute-force scan, and
 * the extractive answerer quotes and cites its sources.
 */

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "local.h"
#include "suites.h"

static double
cosine(const char *a, const char *b)
{
    size_t dim = ragq_hash_embed_dim(), i;
    float *x = malloc(dim * sizeof(float)), *y = malloc(dim * sizeof(float));
    double dot = 0;

    ragq_hash_embed(a, strlen(a), x);
    ragq_hash_embed(b, strlen(b), y);
    for (i = 0; i < dim; i++) {
        dot += (double) x[i] * y[i];
    }
    free(x);
    free(y);
    return dot;
}

START_TEST(test_embed_similarity)
{
    const char *q = "How does the worker claim jobs from the Valkey stream?";
    double      related, unrelated, self;

    related = cosine(q, "Workers claim queued jobs from a Valkey stream with "
                        "XREADGROUP and acknowledge them when done.");
    unrelated = cosine(q, "Bananas are rich in potassium and grow best in "
                          "warm, humid tropical climates.");
    self = cosine(q, q);
    ck_assert_double_eq_tol(self, 1.0, 1e-5);
    ck_assert_double_gt(related, 0.3);
    ck_assert_double_lt(fabs(unrelated), 0.15);
    ck_assert_double_gt(related, unrelated + 0.25);

    /* word forms share character n-grams */
    ck_assert_double_gt(cosine("ingesting documents", "document ingestion"),
                        cosine("ingesting documents", "tropical bananas") +
                            0.2);
    /* case and UTF-8 letters */
    ck_assert_double_eq_tol(cosine("CAFÉ Über", "café über"), 1.0, 1e-5);
    /* nothing to embed: a zero vector, which matches nothing */
    ck_assert_double_eq_tol(cosine("the of and", "the of and"), 0.0, 1e-9);
    ck_assert_uint_eq(ragq_hash_embed_dim(), 384);
}
END_TEST

static char tmpdir[64];

static void
setup_dir(void)
{
    strcpy(tmpdir, "/tmp/ragq-test-local-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown_dir(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Points with hash-embedded texts; vectors in one malloc'd block. */
static float *
make_points(ragq_point_t *pts, const char *const *texts, size_t n,
            const char *idfmt)
{
    size_t dim = ragq_hash_embed_dim(), i;
    float *v = malloc(n * dim * sizeof(float));

    for (i = 0; i < n; i++) {
        char *id = malloc(64);
        snprintf(id, 64, idfmt, (unsigned) i);
        ragq_hash_embed(texts[i], strlen(texts[i]), v + i * dim);
        pts[i].id = id;
        pts[i].vector = v + i * dim;
        pts[i].source = "doc.md";
        pts[i].text = texts[i];
        pts[i].chunk = (unsigned) i;
    }
    return v;
}

static void
free_points(ragq_point_t *pts, size_t n, float *v)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free((char *) pts[i].id);
    }
    free(v);
}

static const char *const texts[] = {
    "Valkey streams hold the queue of jobs for the workers.",
    "Qdrant stores vectors and answers cosine similarity queries.",
    "nginx serves the HTTP API and never blocks its event loop.",
};

static int
query(ragq_local_store_t *st, const char *coll, const char *q, unsigned limit,
      ragq_source_t **src, size_t *n, ragq_upstream_error_t *err)
{
    float rc_v[384];

    ragq_hash_embed(q, strlen(q), rc_v);
    return ragq_local_store_query(st, coll, rc_v, 384, limit, src, n, err);
}

START_TEST(test_store_round_trip_and_reload)
{
    ragq_point_t          pts[3], more[1];
    float                *v, *v2;
    char                  err[512];
    ragq_local_store_t   *st;
    ragq_source_t        *src;
    size_t                n;
    ragq_upstream_error_t ue;
    const char *const     extra[] = {
            "Bananas are yellow tropical fruit full of potassium."};

    v = make_points(pts, texts, 3, "00000000-0000-5000-8000-00000000000%u");
    ck_assert_int_eq(
        ragq_local_store_upsert(tmpdir, "docs", pts, 3, 384, err, sizeof(err)),
        0);
    st = ragq_local_store_open(tmpdir, err, sizeof(err));
    ck_assert_ptr_nonnull(st);

    ck_assert_int_eq(query(st, "docs", "which database keeps the vectors?", 5,
                           &src, &n, &ue),
                     0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(src[0].text, texts[1]);
    ck_assert_str_eq(src[0].id, "00000000-0000-5000-8000-000000000001");
    ck_assert_str_eq(src[0].source, "doc.md");
    ck_assert_double_gt(src[0].score, src[1].score);
    ck_assert_double_ge(src[1].score, src[2].score);
    ragq_sources_free(src, n);

    /* same ids again: replaced, not duplicated */
    ck_assert_int_eq(
        ragq_local_store_upsert(tmpdir, "docs", pts, 3, 384, err, sizeof(err)),
        0);
    ck_assert_int_eq(query(st, "docs", "vectors", 10, &src, &n, &ue), 0);
    ck_assert_uint_eq(n, 3);
    ragq_sources_free(src, n);

    /* a new point written by another "process" is seen by the open store */
    v2 = make_points(more, extra, 1, "banana-%u");
    ck_assert_int_eq(
        ragq_local_store_upsert(tmpdir, "docs", more, 1, 384, err, sizeof(err)),
        0);
    ck_assert_int_eq(query(st, "docs", "yellow bananas", 2, &src, &n, &ue), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(src[0].id, "banana-0");
    ck_assert_double_gt(src[0].score, 0.5);
    ragq_sources_free(src, n);
    ck_assert_int_eq(query(st, "docs", "yellow bananas", 10, &src, &n, &ue), 0);
    ck_assert_uint_eq(n, 4);
    ragq_sources_free(src, n);

    ragq_local_store_close(st);
    free_points(pts, 3, v);
    free_points(more, 1, v2);
}
END_TEST

/*
 * replace_documents removes every point of the sources named, those with
 * no new points included (a document that became empty), and keeps the
 * points of other sources.
 */
START_TEST(test_store_replace_documents)
{
    ragq_point_t          pts[3], again[1];
    float                *v, *v2;
    char                  err[512];
    ragq_local_store_t   *st;
    ragq_source_t        *src;
    size_t                n;
    ragq_upstream_error_t ue;
    char                 *both[] = {"b.md", "a.md"}, *conly[] = {"c.md"};

    v = make_points(pts, texts, 3, "r-%u");
    pts[0].source = "a.md";
    pts[1].source = "b.md";
    pts[2].source = "c.md";
    ck_assert_int_eq(
        ragq_local_store_upsert(tmpdir, "rep", pts, 3, 384, err, sizeof(err)),
        0);

    /* a.md read again with one new point under another id, b.md read
     * again with no text: both lose their old points, c.md stays */
    v2 = make_points(again, texts, 1, "a-new-%u");
    again[0].source = "a.md";
    ck_assert_int_eq(ragq_local_store_replace_documents(tmpdir, "rep", both, 2,
                                                        again, 1, 384, err,
                                                        sizeof(err)),
                     0);
    st = ragq_local_store_open(tmpdir, err, sizeof(err));
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(query(st, "rep", "vectors", 10, &src, &n, &ue), 0);
    ck_assert_uint_eq(n, 2);
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_ne(src[i].source, "b.md");
        ck_assert_str_ne(src[i].id, "r-0");
    }
    ragq_sources_free(src, n);

    /* only c.md named, no points at all: it is removed, a.md stays */
    ck_assert_int_eq(ragq_local_store_replace_documents(tmpdir, "rep", conly, 1,
                                                        NULL, 0, 384, err,
                                                        sizeof(err)),
                     0);
    ck_assert_int_eq(query(st, "rep", "vectors", 10, &src, &n, &ue), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(src[0].id, "a-new-0");
    ck_assert_str_eq(src[0].source, "a.md");
    ragq_sources_free(src, n);

    ragq_local_store_close(st);
    free_points(pts, 3, v);
    free_points(again, 1, v2);
}
END_TEST

/*
 * remove_documents (a run whose documents all became empty): removes
 * every point of the sources named and counts them, keeps the others and
 * the collection's vector size, and creates no missing collection.
 */
START_TEST(test_store_remove_documents)
{
    ragq_point_t          pts[3];
    float                *v;
    char                  err[512], path[4096];
    ragq_local_store_t   *st;
    ragq_source_t        *src;
    size_t                n, removed = 99;
    ragq_upstream_error_t ue;
    char                 *ab[] = {"b.md", "a.md"}, *none[] = {"z.md"};

    v = make_points(pts, texts, 3, "rm-%u");
    pts[0].source = "a.md";
    pts[1].source = "b.md";
    pts[2].source = "c.md";
    ck_assert_int_eq(
        ragq_local_store_upsert(tmpdir, "rm", pts, 3, 384, err, sizeof(err)),
        0);
    ck_assert_int_eq(ragq_local_store_remove_documents(
                         tmpdir, "rm", ab, 2, &removed, err, sizeof(err)),
                     0);
    ck_assert_uint_eq(removed, 2);
    st = ragq_local_store_open(tmpdir, err, sizeof(err));
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(query(st, "rm", "vectors", 10, &src, &n, &ue), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(src[0].source, "c.md");
    ragq_sources_free(src, n);

    /* none of theirs left: 0, and the collection is still usable */
    ck_assert_int_eq(ragq_local_store_remove_documents(
                         tmpdir, "rm", ab, 2, &removed, err, sizeof(err)),
                     0);
    ck_assert_uint_eq(removed, 0);
    ck_assert_int_eq(query(st, "rm", "vectors", 10, &src, &n, &ue), 0);
    ck_assert_uint_eq(n, 1);
    ragq_sources_free(src, n);

    /* a missing collection: nothing removed, nothing created */
    removed = 99;
    ck_assert_int_eq(ragq_local_store_remove_documents(tmpdir, "rm-none", none,
                                                       1, &removed, err,
                                                       sizeof(err)),
                     0);
    ck_assert_uint_eq(removed, 0);
    snprintf(path, sizeof(path), "%s/rm-none.ragq", tmpdir);
    ck_assert_int_ne(access(path, F_OK), 0);

    ragq_local_store_close(st);
    free_points(pts, 3, v);
}
END_TEST

START_TEST(test_store_errors)
{
    ragq_point_t          pts[3];
    float                *v, small[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    char                  err[512], want[512];
    ragq_local_store_t   *st;
    ragq_source_t        *src;
    size_t                n;
    ragq_upstream_error_t ue;
    ragq_point_t          p8 = {"x", small, "s", "t", 0};

    v = make_points(pts, texts, 3, "id-%u");
    ck_assert_int_eq(
        ragq_local_store_upsert(tmpdir, "docs", pts, 3, 384, err, sizeof(err)),
        0);
    st = ragq_local_store_open(tmpdir, err, sizeof(err));

    /* missing collection */
    ck_assert_int_eq(query(st, "nope", "x", 5, &src, &n, &ue), -1);
    ck_assert_str_eq(ue.code, "collection_not_found");
    snprintf(want, sizeof(want), "collection 'nope' does not exist in %s",
             tmpdir);
    ck_assert_str_eq(ue.message, want);
    ck_assert_int_eq(ue.retryable, 0);

    /* a query of the wrong size */
    ck_assert_int_eq(
        ragq_local_store_query(st, "docs", small, 8, 5, &src, &n, &ue), -1);
    ck_assert_str_eq(ue.code, "vector_size_mismatch");
    ck_assert_ptr_nonnull(strstr(ue.message, "size 384"));
    ck_assert_ptr_nonnull(strstr(ue.message, "size 8"));

    /* an upsert of the wrong size leaves the collection alone */
    ck_assert_int_eq(
        ragq_local_store_upsert(tmpdir, "docs", &p8, 1, 8, err, sizeof(err)),
        -1);
    ck_assert_ptr_nonnull(strstr(err, "size 384, not 8"));
    ck_assert_int_eq(query(st, "docs", "x", 10, &src, &n, &ue), 0);
    ck_assert_uint_eq(n, 3);
    ragq_sources_free(src, n);

    /* names that would escape the directory */
    ck_assert_int_eq(query(st, "../etc", "x", 5, &src, &n, &ue), -1);
    ck_assert_str_eq(ue.code, "invalid_collection_name");
    ck_assert_int_eq(
        ragq_local_store_upsert(tmpdir, "a/b", pts, 1, 384, err, sizeof(err)),
        -1);

    /* a damaged file is reported, not crashed on */
    {
        char  path[128];
        FILE *f;
        snprintf(path, sizeof(path), "%s/bad.ragq", tmpdir);
        f = fopen(path, "w");
        fputs("RAGQVEC\0garbage that is long enough", f);
        fclose(f);
        ck_assert_int_eq(query(st, "bad", "x", 5, &src, &n, &ue), -1);
        ck_assert_str_eq(ue.code, "store_corrupt");
    }

    /* a directory that does not exist yet: the collection is missing */
    ragq_local_store_close(st);
    st = ragq_local_store_open("/nonexistent/ragq", err, sizeof(err));
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(query(st, "docs", "x", 5, &src, &n, &ue), -1);
    ck_assert_str_eq(ue.code, "collection_not_found");
    ragq_local_store_close(st);
    free_points(pts, 3, v);
}
END_TEST

START_TEST(test_store_top_k)
{
    enum { N = 200, DIM = 16 };
    static float          vecs[N][DIM];
    ragq_point_t          pts[N];
    char                  ids[N][16], err[256];
    float                 q[DIM];
    double                scores[N];
    size_t                i, k, n;
    ragq_source_t        *src;
    ragq_upstream_error_t ue;
    ragq_local_store_t   *st;

    srand(42);
    for (k = 0; k < DIM; k++) {
        q[k] = (float) (rand() % 2001 - 1000) / 1000.0f;
    }
    for (i = 0; i < N; i++) {
        double dot = 0, nv = 0, nq = 0;
        for (k = 0; k < DIM; k++) {
            vecs[i][k] = (float) (rand() % 2001 - 1000) / 1000.0f;
            dot += (double) vecs[i][k] * q[k];
            nv += (double) vecs[i][k] * vecs[i][k];
            nq += (double) q[k] * q[k];
        }
        scores[i] = dot / sqrt(nv) / sqrt(nq);
        snprintf(ids[i], sizeof(ids[i]), "p%zu", i);
        pts[i].id = ids[i];
        pts[i].vector = vecs[i];
        pts[i].source = "";
        pts[i].text = "";
        pts[i].chunk = 0;
    }
    ck_assert_int_eq(
        ragq_local_store_upsert(tmpdir, "rand", pts, N, DIM, err, sizeof(err)),
        0);
    st = ragq_local_store_open(tmpdir, err, sizeof(err));
    ck_assert_int_eq(
        ragq_local_store_query(st, "rand", q, DIM, 7, &src, &n, &ue), 0);
    ck_assert_uint_eq(n, 7);
    for (i = 0; i < n; i++) {
        size_t idx = (size_t) atoi(src[i].id + 1), better = 0;
        ck_assert_double_eq_tol(src[i].score, scores[idx], 1e-4);
        for (k = 0; k < N; k++) {
            better += scores[k] > scores[idx] + 1e-6;
        }
        ck_assert_uint_eq(better, i); /* exactly i points beat the i-th hit */
    }
    ragq_sources_free(src, n);
    ragq_local_store_close(st);
}
END_TEST

START_TEST(test_extractive)
{
    ragq_source_t src[2] = {
        {"a", 0.9, "queue.md",
         "# The queue\n\nJobs wait in a Valkey stream. Each worker claims "
         "jobs\nwith XREADGROUP and acknowledges them after the result is "
         "written. Bananas are not involved."},
        {"b", 0.5, "store.md",
         "Vectors live in Qdrant. A job that keeps failing is moved to the "
         "dead stream after three attempts."},
    };
    char *a;

    a = ragq_extractive_answer("How do workers claim jobs?", src, 2);
    ck_assert_ptr_nonnull(a);
    /* the wrapped sentence is quoted whole, with its citation */
    ck_assert_ptr_nonnull(strstr(a, "Each worker claims jobs with XREADGROUP "
                                    "and acknowledges them after the result "
                                    "is written [1]."));
    ck_assert_ptr_null(strstr(a, "Bananas"));
    free(a);

    a = ragq_extractive_answer("what happens to failing jobs after attempts?",
                               src, 2);
    ck_assert_ptr_nonnull(strstr(a, "dead stream after three attempts [2]."));
    free(a);

    a = ragq_extractive_answer("quantum chromodynamics", src, 2);
    ck_assert_ptr_nonnull(strstr(a, "do not seem to answer"));
    ck_assert_ptr_null(strstr(a, "["));
    free(a);

    /* pieces of sentences cut by chunking are not quoted */
    {
        ragq_source_t cut[1] = {
            {"c", 0.9, "cut.md",
             "workers claim jobs in the tail of a sentence. Workers claim jobs "
             "from the stream. Workers claim jobs and then the chunk"}};
        a = ragq_extractive_answer("how do workers claim jobs", cut, 1);
        ck_assert_str_eq(a, "Workers claim jobs from the stream [1].");
        free(a);
    }

    a = ragq_extractive_answer("anything", NULL, 0);
    ck_assert_ptr_nonnull(strstr(a, "No documents"));
    free(a);
}
END_TEST

Suite *
ragq_suite_local(void)
{
    Suite *s = suite_create("local");
    TCase *tc = tcase_create("embed");
    TCase *ts = tcase_create("store");

    tcase_add_test(tc, test_embed_similarity);
    tcase_add_test(tc, test_extractive);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(ts, setup_dir, teardown_dir);
    tcase_add_test(ts, test_store_round_trip_and_reload);
    tcase_add_test(ts, test_store_replace_documents);
    tcase_add_test(ts, test_store_remove_documents);
    tcase_add_test(ts, test_store_errors);
    tcase_add_test(ts, test_store_top_k);
    suite_add_tcase(s, ts);
    return s;
}
