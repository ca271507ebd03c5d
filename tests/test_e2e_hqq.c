/* test_e2e_hqq.c: HQQ end to end on stories260K: lower perplexity than RTN at int4 and int3 g32,
 * bit-identical containers for np = 1, 2, 4, real-valued zero-points stored with each layer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wq_e2e.h"
#include "wq_testutil.h"

#define A WQ_ASSETS_DIR
#define MODEL A "/stories260K-hf"

static char g_dir[256];

static double ppl_of(const char *h5) { return wq_e2e_tinystories_ppl(MODEL, h5); }

static void hqq_should_be_identical_for_any_rank_count_and_beat_rtn(void **state)
{
    (void)state;
    char *log, p[400];
    const int nps[] = {1, 2, 4};
    for (int i = 0; i < 3; i++) {
        int rc = wq_e2e_run(nps[i], &log, "quantize --model %s --algo hqq --set bits=4,group_size=32 --out %s/np%d.h5 --quiet",
                            MODEL, g_dir, nps[i]);
        if (rc) print_error("%s\n", log);
        assert_int_equal(rc, 0);
        if (i) assert_int_equal(wq_test_system("h5diff %s/np1.h5 %s/np%d.h5", g_dir, g_dir, nps[i]), 0);
    }
    assert_int_equal(wq_test_system("h5ls %s/np1.h5/layers/model.layers.1.mlp.down_proj | grep -q zero_point", g_dir), 0);
    snprintf(p, sizeof p, "%s/np1.h5", g_dir);
    double p4 = ppl_of(p);
    int rc = wq_e2e_run(2, &log, "quantize --model %s --algo hqq --set bits=3,group_size=32 --out %s/w3.h5 --quiet", MODEL, g_dir);
    assert_int_equal(rc, 0);
    snprintf(p, sizeof p, "%s/w3.h5", g_dir);
    double p3 = ppl_of(p);
    printf("HQQ: int4 g32 %.4f (RTN asym 5.3780), int3 g32 %.4f (RTN asym 9.0717)\n", p4, p3);
    assert_true(p4 < 5.3780);
    assert_true(p3 < 9.0717);
}

int main(void)
{
    if (!wq_test_tmpdir(g_dir, sizeof g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hqq_should_be_identical_for_any_rank_count_and_beat_rtn),
    };
    int failed = cmocka_run_group_tests_name("e2e_hqq", tests, NULL, NULL);
    if (!failed) wq_test_system("rm -rf %s", g_dir);
    return failed;
}
