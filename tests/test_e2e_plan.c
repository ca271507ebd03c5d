/* test_e2e_plan.c: `wquant plan` and the planner inside `wquant quantize` on the real CLI: the
 * report for Llama-3-70B on 8 nodes, useful ranks, refusal when one block does not fit, a config
 * without required keys, --max-memory refusing before anything is written, per-block predicted vs
 * measured lines; and a synthetic model (sharded BF16, GQA, q/k/v biases) quantized and evaluated
 * end to end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/st_reader.h"
#include "wq_e2e.h"
#include "wq_testutil.h"

#define MODEL WQ_ASSETS_DIR "/stories260K-hf"
#define CONFIGS WQ_SOURCE_DIR "/configs"

static char g_dir[256], g_machine[300], g_gptq[300];

static double json_num(const char *log, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(log, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

static void expect(int rc_want, const char *needle, int rc, const char *log)
{
    if (rc != rc_want || (needle && !strstr(log, needle)))
        print_error("rc %d (wanted %d), wanted '%s' in:\n%s\n", rc, rc_want, needle ? needle : "",
                    log);
    assert_int_equal(rc, rc_want);
    if (needle) assert_non_null(strstr(log, needle));
    assert_null(strstr(log, "Segmentation"));
}

static void plan_should_report_llama3_70b_on_8_nodes(void **state)
{
    (void)state;
    char *log;
    int rc = wq_e2e_run(0, &log,
                        "plan --model %s/models/Llama-3-70B.json --config %s --ranks 64 --nodes 8 "
                        "--cores-per-node 128 --mem-per-node 512G --machine %s",
                        CONFIGS, g_gptq, g_machine);
    expect(0, "#SBATCH --nodes=8 ", rc, log);
    assert_non_null(strstr(log, "#SBATCH --ntasks-per-node=8 "));
    assert_non_null(strstr(log, "#SBATCH --cpus-per-task=16 "));
    assert_non_null(strstr(log, "P=1 x D=64"));
    assert_non_null(strstr(log, "70.55 B parameters")); /* from the model card's shapes */
    rc = wq_e2e_run(0, &log,
                    "plan --model %s/models/Llama-3-70B.json --config %s --ranks 64 --nodes 8 "
                    "--cores-per-node 128 --mem-per-node 512G --machine %s --json",
                    CONFIGS, g_gptq, g_machine);
    expect(0, "\"seconds\":", rc, log);
    /* 80 blocks of GPTQ: the predicted time is at least 80 x the per-block time */
    assert_true(json_num(log, "seconds") >= 80 * json_num(log, "seconds_per_block"));
    /* the per-rank peak holds at least the down_proj Hessian (16 + 8 + 4 bytes per F^2 / 2..F^2) */
    assert_true(json_num(log, "peak_bytes_per_rank") >
                16.0 * 28672 * 28673 / 2 + 12.0 * 28672 * 28672);
    assert_true(json_num(log, "peak_bytes_per_rank") * 8 < 512.0 * 1073741824.0);
}

static void plan_should_say_how_many_ranks_are_useful(void **state)
{
    (void)state;
    char *log;
    /* RTN balances whole tensors: stories260K has 47 (5 blocks x 9 + embedding + final norm) */
    int rc = wq_e2e_run(0, &log, "plan --model %s --algo rtn --ranks 1000 --nodes 10 --machine %s",
                        MODEL, g_machine);
    expect(0, "only 47 of the 1000 ranks are useful", rc, log);
}

static void plan_should_refuse_when_one_block_does_not_fit(void **state)
{
    (void)state;
    char *log;
    int rc = wq_e2e_run(0, &log,
                        "plan --model %s/models/Llama-3-70B.json --config %s --ranks 1 "
                        "--mem-per-node 16G --machine %s",
                        CONFIGS, g_gptq, g_machine);
    expect(2, "no grid fits the memory budget", rc, log);
    assert_non_null(strstr(log, "largest part is the"));
    assert_null(strstr(log, "#SBATCH"));
    /* too many ranks on one node: names how many fit */
    rc = wq_e2e_run(0, &log,
                    "plan --model %s/models/Llama-3-70B.json --config %s --ranks 128 --nodes 1 "
                    "--mem-per-node 512G --machine %s",
                    CONFIGS, g_gptq, g_machine);
    expect(2, "rank(s) per node", rc, log);
}

static void plan_should_name_a_missing_config_field(void **state)
{
    (void)state;
    char path[400], *log;
    snprintf(path, sizeof path, "%s/nohidden.json", g_dir);
    const char *js =
        "{\"model_type\": \"llama\", \"intermediate_size\": 11008, \"num_hidden_layers\": 32, "
        "\"num_attention_heads\": 32, \"vocab_size\": 32000}";
    assert_int_equal(wq_test_write_file(path, js, strlen(js)), 0);
    int rc =
        wq_e2e_run(0, &log, "plan --model %s --algo rtn --ranks 4 --machine %s", path, g_machine);
    expect(2, "hidden_size", rc, log);
    assert_non_null(strstr(log, "nohidden.json"));
    /* a machine file with an unknown key */
    snprintf(path, sizeof path, "%s/badmachine.json", g_dir);
    js = "{\"gemm_flop\": 1e9}";
    assert_int_equal(wq_test_write_file(path, js, strlen(js)), 0);
    rc = wq_e2e_run(0, &log, "plan --model %s --algo rtn --machine %s", MODEL, path);
    expect(2, "unknown key 'gemm_flop'", rc, log);
}

static void quantize_should_refuse_a_budget_below_one_block_before_writing(void **state)
{
    (void)state;
    char out[400], *log;
    snprintf(out, sizeof out, "%s/budget.h5", g_dir);
    int rc = wq_e2e_run(2, &log,
                        "quantize --model %s --config %s/stories260K/gptq_w4g32_asym_act.json "
                        "--out %s --quiet --max-memory 2M --machine %s",
                        MODEL, CONFIGS, out, g_machine);
    expect(2, "memory budget cannot be met", rc, log);
    assert_false(wq_e2e_file_exists(out));
    char tmp[420];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    assert_false(wq_e2e_file_exists(tmp));
    rc = wq_e2e_run(1, &log, "quantize --model %s --algo rtn --out %s --max-memory lots", MODEL,
                    out);
    expect(2, "--max-memory 'lots' is not a size", rc, log);
}

static void quantize_should_log_predicted_and_measured_block_times(void **state)
{
    (void)state;
    char out[400], *log;
    snprintf(out, sizeof out, "%s/gptq.h5", g_dir);
    int rc = wq_e2e_run(2, &log,
                        "quantize --model %s --config %s/stories260K/gptq_w4g32_asym_act.json "
                        "--out %s --quiet --max-memory 4G --machine %s --calib-text "
                        "%s/text/tinystories-val-500.txt",
                        MODEL, CONFIGS, out, g_machine, WQ_ASSETS_DIR);
    expect(0, "plan: P=1 x D=2", rc, log);
    for (int b = 0; b < 5; b++) {
        char needle[64];
        snprintf(needle, sizeof needle, "block %d: ", b);
        assert_non_null(strstr(log, needle));
    }
    assert_non_null(strstr(log, "(predicted "));
    assert_non_null(strstr(log, "peak RSS"));
}

/* Sharded BF16 checkpoint with GQA (8 query / 2 KV heads) and qwen2 q/k/v biases. */
static void synthetic_model_should_quantize_and_evaluate(void **state)
{
    (void)state;
    char like[400], dir[400], *log;
    snprintf(like, sizeof like, "%s/like.json", g_dir);
    snprintf(dir, sizeof dir, "%s/syn", g_dir);
    const char *js =
        "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", \"hidden_size\": "
        "256, "
        "\"intermediate_size\": 704, \"num_hidden_layers\": 3, \"num_attention_heads\": 8, "
        "\"num_key_value_heads\": 2, \"vocab_size\": 512, \"max_position_embeddings\": 1024, "
        "\"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0, \"hidden_act\": \"silu\", "
        "\"tie_word_embeddings\": false, \"torch_dtype\": \"float32\"}";
    assert_int_equal(wq_test_write_file(like, js, strlen(js)), 0);
    int rc = wq_e2e_run(0, &log, "synth --like %s --layers 2 --dtype bf16 --shard-mb 1 --out %s",
                        like, dir);
    expect(0, "shard(s)", rc, log);
    char p[500];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    assert_true(wq_e2e_file_exists(p));
    snprintf(p, sizeof p, "%s/model-00002-of-", dir);
    assert_int_equal(wq_test_system("ls %s* > /dev/null", p), 0);
    wq_test_system("cp %s/tokenizer.model %s/", MODEL, dir);
    char cfg[400];
    snprintf(cfg, sizeof cfg, "%s/syn_gptq.json", g_dir);
    char cj[1200];
    snprintf(cj, sizeof cj,
             "{\"gptq\": {\"global\": {\"dtype\": \"int\", \"bits\": 4, \"group_size\": 64}}, "
             "\"calibration\": "
             "{\"text\": \"%s/text/tinystories-val-500.txt\", \"format\": \"stories\", \"range\": "
             "[0, 100], "
             "\"n_samples\": 8, \"seqlen\": 64, \"seed\": 0}}",
             WQ_ASSETS_DIR);
    assert_int_equal(wq_test_write_file(cfg, cj, strlen(cj)), 0);
    const char *runs[2][2] = {{"rtn", "--algo rtn --group-size 64"}, {"gptq", ""}};
    for (int i = 0; i < 2; i++) {
        char out[400];
        snprintf(out, sizeof out, "%s/syn_%s.h5", g_dir, runs[i][0]);
        rc = wq_e2e_run(2, &log, "quantize --model %s %s%s %s --out %s --quiet --machine %s", dir,
                        i ? "--config " : "", i ? cfg : "", runs[i][1], out, g_machine);
        expect(0, "wrote", rc, log);
        rc = wq_e2e_run(2, &log,
                        "eval --model %s --quantized %s --text %s/text/wikitext2-test.raw "
                        "--windows 4 --seqlen 128 --json",
                        dir, out, WQ_ASSETS_DIR);
        expect(0, "\"ppl\":", rc, log);
        double ppl = json_num(log, "ppl");
        printf("synthetic qwen2-like (GQA 8/2, bias, sharded bf16) %s: ppl %.3f\n", runs[i][0],
               ppl);
        assert_true(isfinite(ppl) && ppl > 1.0);
    }
}

/* Outlier input channels of a synthetic model: 1% of the hidden channels, the same in every tensor
 * reading the hidden state (embedding, q/k/v, gate/up, lm_head); o_proj has its own. Read back with
 * the safetensors reader and found by column absmax (N(0, 0.02) entries vs 8x outliers). */
static int outlier_cols(const wq_st_model *m, const char *name, unsigned char *mask, int64_t *cols_out)
{
    const wq_st_tensor *t = wq_st_find(m, name);
    assert_non_null(t);
    int64_t rows = t->shape[0], cols = t->shape[1];
    float *w = malloc((size_t)(rows * cols) * sizeof(float));
    assert_non_null(w);
    assert_int_equal(wq_st_read_f32(m, t, w), WQ_OK);
    int n = 0;
    for (int64_t c = 0; c < cols; c++) {
        float mx = 0;
        for (int64_t r = 0; r < rows; r++) mx = fabsf(w[r * cols + c]) > mx ? fabsf(w[r * cols + c]) : mx;
        mask[c] = mx > 0.25f; /* normal columns: max of |N(0, 0.02)| over 512+ rows < 0.1 */
        n += mask[c];
    }
    free(w);
    *cols_out = cols;
    return n;
}

static void synthetic_model_should_share_hidden_outlier_channels(void **state)
{
    (void)state;
    char like[400], dir[400], *log;
    snprintf(like, sizeof like, "%s/like_wide.json", g_dir);
    snprintf(dir, sizeof dir, "%s/syn_wide", g_dir);
    const char *js = "{\"model_type\": \"llama\", \"hidden_size\": 1024, \"intermediate_size\": 1024, "
                     "\"num_hidden_layers\": 1, \"num_attention_heads\": 8, \"num_key_value_heads\": 8, "
                     "\"vocab_size\": 600, \"torch_dtype\": \"float32\"}";
    assert_int_equal(wq_test_write_file(like, js, strlen(js)), 0);
    int rc = wq_e2e_run(0, &log, "synth --like %s --dtype f32 --out %s", like, dir);
    expect(0, "wrote", rc, log);
    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open(dir, &m), WQ_OK);
    static unsigned char ref[1024], mask[1024];
    int64_t cols;
    int n = outlier_cols(m, "model.layers.0.self_attn.q_proj.weight", ref, &cols);
    printf("synthetic outlier channels: %d of %lld\n", n, (long long)cols);
    assert_true(n >= 3 && n <= 25); /* ~1% of 1024 */
    const char *shared[] = {"model.embed_tokens.weight", "model.layers.0.self_attn.k_proj.weight",
                            "model.layers.0.self_attn.v_proj.weight", "model.layers.0.mlp.gate_proj.weight",
                            "model.layers.0.mlp.up_proj.weight", "lm_head.weight"};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(outlier_cols(m, shared[i], mask, &cols), n);
        assert_memory_equal(mask, ref, 1024);
    }
    /* o_proj reads the attention output: its own channels */
    outlier_cols(m, "model.layers.0.self_attn.o_proj.weight", mask, &cols);
    assert_memory_not_equal(mask, ref, 1024);
    wq_st_close(m);
}

int main(void)
{
    if (!wq_test_tmpdir(g_dir, sizeof g_dir)) return 1;
    /* fixed machine constants (not this machine's): the plan tests must not depend on a calibration
     */
    snprintf(g_machine, sizeof g_machine, "%s/machine.json", g_dir);
    const char *mj =
        "{\"gemm_flops\": 6e10, \"dgemm_flops\": 3e10, \"fwd_flops\": 4.5e10, \"chol_flops\": "
        "2.5e10, "
        "\"solve_flops\": 2e10, \"exact_rate\": 1.5e8, \"quant_rate\": 3e8, \"hqq_rate\": 2e7, "
        "\"mem_bw\": 8e9, \"touch_bw\": 4e9, \"fs_read_bw\": 2e9, \"fs_write_bw\": 1e9, "
        "\"fs_node_bw\": 4e9, \"net_bw\": 5e9, \"net_lat\": 5e-6, \"base_rss\": 41943040, "
        "\"startup\": 0.3, \"cores_per_node\": 2, \"mem_per_node\": 17179869184}";
    snprintf(g_gptq, sizeof g_gptq, "%s/gptq_full.json", g_dir);
    const char *gj =
        "{\"gptq\": {\"global\": {\"dtype\": \"int\", \"bits\": 4, \"group_size\": 128}}, "
        "\"calibration\": {\"text\": \"c4.jsonl\", \"n_samples\": 128, \"seqlen\": 2048}}";
    if (wq_test_write_file(g_machine, mj, strlen(mj)) || wq_test_write_file(g_gptq, gj, strlen(gj)))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plan_should_report_llama3_70b_on_8_nodes),
        cmocka_unit_test(plan_should_say_how_many_ranks_are_useful),
        cmocka_unit_test(plan_should_refuse_when_one_block_does_not_fit),
        cmocka_unit_test(plan_should_name_a_missing_config_field),
        cmocka_unit_test(quantize_should_refuse_a_budget_below_one_block_before_writing),
        cmocka_unit_test(quantize_should_log_predicted_and_measured_block_times),
        cmocka_unit_test(synthetic_model_should_quantize_and_evaluate),
        cmocka_unit_test(synthetic_model_should_share_hidden_outlier_channels),
    };
    int failed = cmocka_run_group_tests_name("e2e_plan", tests, NULL, NULL);
    if (!failed) wq_test_system("rm -rf %s", g_dir);
    return failed;
}
