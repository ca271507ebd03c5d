/* test_e2e_resume.c: checkpoint/resume of `wquant quantize` on the real stories260K model.
 *  - a 2-rank GPTQ run whose rank 1 is SIGKILLed when block 3 starts (blocks 0..2 of 5 finished)
 *    stops every rank non-zero within 30 s of the kill, leaves no container; `--resume` continues
 * from the checkpoint (the log says 3 blocks were reused) and the container is byte-identical (cmp)
 * to an uninterrupted run;
 *    the same kill resumed with 3 ranks gives the same bytes;
 *  - the same for RTN, killed at a tensor, resumed with 2 ranks and (rank-count independence) 1;
 *  - an existing checkpoint is never silently reused: without --resume the run is refused;
 *  - a changed config or model is detected and refused with a message naming what changed;
 *  - --resume with an algorithm without checkpoints (AWQ) is refused. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wq_e2e.h"
#include "wq_testutil.h"

#define MODEL WQ_ASSETS_DIR "/stories260K-hf"
#define GPTQ_ARGS                                                                                  \
    "--algo gptq --calib-text " WQ_ASSETS_DIR "/text/tinystories-val-500.txt --set bits=4"

static char g_dir[256];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs quantize with SIGKILL injected at `point` `index` on rank 1 of 2; asserts the run fails,
 * leaves no container and keeps a checkpoint, and that every rank is gone within 30 s of the kill:
 * the run may not take longer than the uninterrupted one (ref_secs, which does all of the work the
 * killed run did before the fault and more) plus 30 s. */
static void killed_run(const char *args, const char *out, const char *point, int index,
                       double ref_secs)
{
    char *log, idx[16];
    snprintf(idx, sizeof idx, "%d", index);
    setenv("WQ_FAULT_POINT", point, 1);
    setenv("WQ_FAULT_RANK", "1", 1);
    setenv("WQ_FAULT_INDEX", idx, 1);
    setenv("WQ_FAULT_SIGNAL", "9", 1); /* SIGKILL */
    double t0 = now();
    int rc = wq_e2e_run(2, &log, "quantize --model %s %s --out %s --quiet", MODEL, args, out);
    double secs = now() - t0;
    unsetenv("WQ_FAULT_POINT");
    unsetenv("WQ_FAULT_RANK");
    unsetenv("WQ_FAULT_INDEX");
    unsetenv("WQ_FAULT_SIGNAL");
    if (rc == 0 || !strstr(log, "fault injection")) print_error("rc=%d\n%s\n", rc, log);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, "fault injection"));
    assert_non_null(strstr(log, "signal 9")); /* mpiexec saw the SIGKILL */
    if (secs >= ref_secs + 30.0)
        print_error("killed run took %.1f s, uninterrupted %.1f s\n", secs, ref_secs);
    assert_true(secs < ref_secs + 30.0);
    assert_false(wq_e2e_file_exists(out));
    char ck[512];
    snprintf(ck, sizeof ck, "%s.ckpt/manifest", out);
    assert_true(wq_e2e_file_exists(ck));
}

/* Resumes with np ranks; asserts success, that `reused` appears in the log (work was taken from the
 * checkpoint), byte identity with `ref`, and that the checkpoint is gone. */
static void resume_and_compare(int np, const char *args, const char *out, const char *ref,
                               const char *reused)
{
    char *log;
    int rc = wq_e2e_run(np, &log, "quantize --model %s %s --out %s --resume", MODEL, args, out);
    if (rc != 0 || !strstr(log, reused)) print_error("rc=%d, expected '%s'\n%s\n", rc, reused, log);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(log, reused));
    assert_int_equal(wq_test_system("cmp %s %s", ref, out), 0);
    char ck[512];
    snprintf(ck, sizeof ck, "%s.ckpt", out);
    assert_false(wq_e2e_file_exists(ck));
}

static void killed_gptq_run_should_resume_to_an_identical_container(void **state)
{
    (void)state;
    char ref[400], out[400], *log;
    snprintf(ref, sizeof ref, "%s/gptq_ref.h5", g_dir);
    snprintf(out, sizeof out, "%s/gptq.h5", g_dir);
    double t0 = now();
    int rc = wq_e2e_run(2, &log, "quantize --model %s " GPTQ_ARGS " --out %s --quiet", MODEL, ref);
    double ref_secs = now() - t0;
    if (rc) print_error("%s\n", log);
    assert_int_equal(rc, 0);
    killed_run(GPTQ_ARGS, out, "block", 3, ref_secs);
    /* never silently reused: a plain rerun is refused and names the way out */
    rc = wq_e2e_run(2, &log, "quantize --model %s " GPTQ_ARGS " --out %s --quiet", MODEL, out);
    if (rc == 0 || !strstr(log, "--resume")) print_error("%s\n", log);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, "--resume"));
    assert_false(wq_e2e_file_exists(out));
    resume_and_compare(2, GPTQ_ARGS, out, ref, "3 finished blocks");
    /* rank-count independence: killed with 2 ranks, resumed with 3 (another writer per linear) */
    snprintf(out, sizeof out, "%s/gptq_np3.h5", g_dir);
    killed_run(GPTQ_ARGS, out, "block", 3, ref_secs);
    resume_and_compare(3, GPTQ_ARGS, out, ref, "3 finished blocks");
}

static void killed_rtn_run_should_resume_to_an_identical_container(void **state)
{
    (void)state;
    char ref[400], out[400], *log;
    snprintf(ref, sizeof ref, "%s/rtn_ref.h5", g_dir);
    double t0 = now();
    int rc = wq_e2e_run(2, &log, "quantize --model %s --out %s --quiet", MODEL, ref);
    double ref_secs = now() - t0;
    if (rc) print_error("%s\n", log);
    assert_int_equal(rc, 0);
    /* entry 21 is rank 1's; rank 1 has finished several tensors before it */
    for (int np = 2; np >= 1; np--) {
        snprintf(out, sizeof out, "%s/rtn_np%d.h5", g_dir, np);
        killed_run("", out, "tensor", 21, ref_secs);
        resume_and_compare(np, "", out, ref, "finished tensors");
    }
}

/* Overwrites element k of tensor `name` (F32) in dir/model.safetensors, offsets found by hand. */
static void poke_weight(const char *dir, const char *name, long k, float v)
{
    char p[500], key[300];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    snprintf(key, sizeof key, "\"%s\"", name);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    uint64_t hl;
    assert_int_equal(fread(&hl, 8, 1, f), 1);
    char *h = calloc(hl + 1, 1);
    assert_int_equal(fread(h, 1, hl, f), hl);
    char *o = strstr(h, key);
    assert_non_null(o);
    o = strstr(o, "data_offsets");
    assert_non_null(o);
    long begin = strtol(strchr(o, '[') + 1, NULL, 10);
    fseek(f, (long)(8 + hl) + begin + k * 4, SEEK_SET);
    fwrite(&v, 4, 1, f);
    fclose(f);
    free(h);
}

static void changed_config_or_model_should_be_refused(void **state)
{
    (void)state;
    char out[400], dir[400], *log;
    snprintf(out, sizeof out, "%s/changed.h5", g_dir);
    killed_run("", out, "tensor", 21, 60.0); /* generous: RTN of stories260K takes < 1 s */
    int rc = wq_e2e_run(2, &log, "quantize --model %s --bits 3 --out %s --resume", MODEL, out);
    if (rc == 0 || !strstr(log, "its config is")) print_error("%s\n", log);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, "its config is"));
    assert_false(wq_e2e_file_exists(out));
    /* same shapes, one weight changed */
    snprintf(dir, sizeof dir, "%s/model2", g_dir);
    wq_test_system("mkdir -p %s && cp %s/* %s/", dir, MODEL, dir);
    poke_weight(dir, "model.layers.3.mlp.up_proj.weight", 7, 0.125f);
    rc = wq_e2e_run(2, &log, "quantize --model %s --out %s --resume", dir, out);
    if (rc == 0 || !strstr(log, "its model is")) print_error("%s\n", log);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, "its model is"));
    assert_false(wq_e2e_file_exists(out));
    /* the original settings still resume */
    rc = wq_e2e_run(2, &log, "quantize --model %s --out %s --resume --quiet", MODEL, out);
    if (rc) print_error("%s\n", log);
    assert_int_equal(rc, 0);
}

static void resume_without_checkpoints_should_be_refused(void **state)
{
    (void)state;
    char out[400], *log;
    snprintf(out, sizeof out, "%s/awq.h5", g_dir);
    int rc = wq_e2e_run(2, &log, "quantize --model %s --algo awq --out %s --resume", MODEL, out);
    if (rc == 0 || !strstr(log, "--resume is not supported for awq")) print_error("%s\n", log);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, "--resume is not supported for awq"));
    rc = wq_e2e_run(1, &log, "quantize --model %s --out %s --resume --no-checkpoint", MODEL, out);
    assert_int_equal(rc, 2);
    assert_false(wq_e2e_file_exists(out));
}

int main(void)
{
    if (!wq_test_tmpdir(g_dir, sizeof g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(killed_gptq_run_should_resume_to_an_identical_container),
        cmocka_unit_test(killed_rtn_run_should_resume_to_an_identical_container),
        cmocka_unit_test(changed_config_or_model_should_be_refused),
        cmocka_unit_test(resume_without_checkpoints_should_be_refused),
    };
    int failed = cmocka_run_group_tests_name("e2e_resume", tests, NULL, NULL);
    if (!failed) wq_test_system("rm -rf %s", g_dir);
    return failed;
}
