/* test_dist_cost.c: the cost model against FLOP, byte and parameter counts derived by hand for a
 * tiny shape (serial, no MPI). Shape: d 4, F 8, 2 heads of 2 (1 KV head), vocab 10, 2 blocks,
 * calibration 3 sequences of 5 tokens. Linears (rows x cols): q 4x4, k 2x4, v 2x4, o 4x4,
 * gate 8x4, up 8x4, down 4x8. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_cost.h"
#include "wq_testutil.h"

static wq_cost_shape tiny(void)
{
    return (wq_cost_shape){.d = 4,
                           .F = 8,
                           .n_heads = 2,
                           .n_kv_heads = 1,
                           .head_dim = 2,
                           .vocab = 10,
                           .n_layers = 2,
                           .tied = false,
                           .src_bytes = 2};
}

static wq_cost_job gptq_job(void)
{
    return (wq_cost_job){.algo = WQ_COST_GPTQ,
                         .bits = 4,
                         .group_size = -1,
                         .true_sequential = true,
                         .n_samples = 3,
                         .seqlen = 5};
}

static void params_should_match_hand_count(void **state)
{
    (void)state;
    wq_cost_shape s = tiny();
    /* 16 + 8 + 8 + 16 + 32 + 32 + 32 */
    assert_int_equal(wq_cost_block_linear_params(&s), 144);
    assert_int_equal(wq_cost_block_params(&s), 152);              /* + 2 norms of 4 */
    assert_int_equal(wq_cost_model_params(&s), 2 * 152 + 80 + 4); /* embed + lm_head + final norm */
    s.qkv_bias = true;
    assert_int_equal(wq_cost_block_params(&s), 152 + 4 + 2 + 2);
}

static void forward_flops_should_count_linears_and_causal_attention(void **state)
{
    (void)state;
    wq_cost_shape s = tiny();
    /* per sequence: 2 * 5 tokens * 144 + 2 * qd 4 * T 5 * (T + 1) 6 = 1440 + 240 */
    assert_float_equal(wq_cost_forward_flops(&s, 3, 5), 3 * 1680.0, 1e-9);
    assert_float_equal(wq_cost_forward_flops(&s, 1, 1), 2 * 144.0 + 2 * 4 * 1 * 2, 1e-9);
}

static void gptq_block_should_count_hessian_factorisation_and_solve(void **state)
{
    (void)state;
    wq_cost_shape s = tiny();
    wq_cost_job j = gptq_job();
    wq_machine m;
    wq_cost_machine_defaults(&m);
    wq_cost_block b;
    assert_int_equal(wq_cost_block_eval(&s, &j, &m, 1, 1, 1, &b), WQ_OK);
    /* 4 capture forwards (true_sequential groups) + 1 update forward */
    assert_float_equal(b.flops_fwd, 5 * 5040.0, 1e-9);
    /* X^T X over 15 tokens: 2 * 15 * in^2 for in = 4, 4, 4, 8 */
    assert_float_equal(b.flops_hess, 3 * 2 * 15 * 16.0 + 2 * 15 * 64.0, 1e-9);
    /* upper triangles in(in+1)/2 = 10, 10, 10, 36 per sequence */
    assert_float_equal(b.exact_values, 3 * 66.0, 1e-9);
    /* 2 c^3 / 3 per linear: six with c = 4, one with c = 8 */
    assert_float_equal(b.flops_prep, 6 * 128.0 / 3 + 1024.0 / 3, 1e-9);
    /* 2 r c^2: q 128, k 64, v 64, o 128, gate 256, up 256, down 512 */
    assert_float_equal(b.flops_solve, 1408.0, 1e-9);
    /* allreduce payload: 16 bytes per triangle cell, nothing to assemble on one rank */
    assert_float_equal(b.bytes_reduced, 16 * 66.0, 1e-9);
    /* the block is read once in bf16 */
    assert_float_equal(b.bytes_read, 152 * 2.0, 1e-9);
    assert_true(b.t_total > 0);
    /* without true_sequential: one capture forward */
    j.true_sequential = false;
    assert_int_equal(wq_cost_block_eval(&s, &j, &m, 1, 1, 1, &b), WQ_OK);
    assert_float_equal(b.flops_fwd, 2 * 5040.0, 1e-9);
}

static void autoround_should_cost_three_forwards_per_iteration(void **state)
{
    (void)state;
    wq_cost_shape s = tiny();
    wq_cost_job j = {.algo = WQ_COST_AUTOROUND,
                     .bits = 4,
                     .group_size = -1,
                     .ar_iters = 10,
                     .ar_batch = 2,
                     .n_samples = 3,
                     .seqlen = 5};
    wq_machine m;
    wq_cost_machine_defaults(&m);
    wq_cost_block b;
    assert_int_equal(wq_cost_block_eval(&s, &j, &m, 1, 1, 1, &b), WQ_OK);
    /* 10 iterations x 3 x forward of 2 sequences of 5 tokens (2 x 1680) */
    assert_float_equal(b.flops_ar, 10 * 3 * 3360.0, 1e-9);
}

static void container_bytes_should_match_packed_layout(void **state)
{
    (void)state;
    wq_cost_job j = gptq_job();
    /* 8 x 4, 4 bits, per channel: qweight 8 rows x 1 int32, scales 8 f32, qzeros 1 x 1 int32 */
    assert_float_equal(wq_cost_qlinear_bytes(8, 4, &j), 32 + 32 + 4, 1e-9);
    /* 4 x 256 with groups of 128: qweight 4 x 32 int32, scales 2 x 4 f32, qzeros 2 x 1 int32 */
    j.group_size = 128;
    assert_float_equal(wq_cost_qlinear_bytes(4, 256, &j), 512 + 32 + 8, 1e-9);
}

static void time_should_scale_with_ranks_and_saturate(void **state)
{
    (void)state;
    /* Llama-3-8B widths, 2 blocks: more ranks are faster until the sequences run out */
    wq_cost_shape s = {.d = 4096,
                       .F = 14336,
                       .n_heads = 32,
                       .n_kv_heads = 8,
                       .head_dim = 128,
                       .vocab = 128256,
                       .n_layers = 2,
                       .src_bytes = 2};
    wq_cost_job j = gptq_job();
    j.n_samples = 16, j.seqlen = 128, j.group_size = 128;
    wq_machine m;
    wq_cost_machine_defaults(&m);
    wq_cost_plan p1, p2, p64;
    assert_int_equal(wq_cost_run(&s, &j, &m, 1, 1, 1, 1, &p1), WQ_OK);
    assert_int_equal(wq_cost_run(&s, &j, &m, 2, 1, 1, 2, &p2), WQ_OK);
    assert_int_equal(wq_cost_run(&s, &j, &m, 64, 1, 1, 64, &p64), WQ_OK);
    assert_true(p2.seconds < p1.seconds);
    assert_true(p64.seconds < p2.seconds);
    assert_float_equal(p1.t_blocks, 2 * p1.t_block, 1e-9);
    /* the factorisation is not split: it bounds the speedup */
    assert_true(p64.t_block > p64.block.t_prep);
    assert_int_equal(p64.useful_ranks, 112); /* gate/up: 14336 rows / 128-row tiles */
    /* activations per rank shrink with D: 16 x 128 x 4096 x 4 bytes on one rank */
    assert_float_equal(p1.mem.acts, 16.0 * 128 * 4096 * 4, 1.0);
    /* the down_proj Hessian alone: exact triangle 16 B + H 8 B + U 4 B per cell */
    assert_true(p1.mem.total > 16.0 * 14336 * 14337 / 2 + 12.0 * 14336 * 14336);
}

static void choose_should_refuse_a_budget_below_one_block(void **state)
{
    (void)state;
    wq_cost_shape s = tiny();
    wq_cost_job j = gptq_job();
    wq_machine m;
    wq_cost_machine_defaults(&m);
    wq_cost_plan p;
    char why[512];
    assert_int_equal(wq_cost_choose(&s, &j, &m, 2, 1, 2, 1e6, &p, why, sizeof why), WQ_ERR_ARG);
    assert_non_null(strstr(why, "no grid fits"));
    assert_int_equal(wq_cost_choose(&s, &j, &m, 2, 1, 2, 0, &p, why, sizeof why), WQ_OK);
    assert_int_equal(p.P, 1); /* stages are sequential: P = 1 is never slower */
    assert_int_equal(p.D, 2);
    /* RTN: whole tensors over ranks, useful ranks = tensors (3 + 2 x 9) */
    j.algo = WQ_COST_RTN;
    assert_int_equal(wq_cost_choose(&s, &j, &m, 64, 1, 64, 0, &p, why, sizeof why), WQ_OK);
    assert_int_equal(p.useful_ranks, 21);
}

static void rtn_memory_should_hold_one_chunk_unless_mse_search(void **state)
{
    (void)state;
    wq_cost_shape s = tiny();
    wq_cost_job j = {.algo = WQ_COST_RTN, .bits = 4, .group_size = -1};
    wq_machine m;
    wq_cost_machine_defaults(&m);
    wq_cost_mem mem;
    /* the largest item is gate/up (8 x 4 = 32 weights, 1 group per row): streamed, f32 of the
     * chunk (32 x 4) + the 1 MiB bf16 conversion scratch + codes 32 + scale and zero 8 x 8 x 1 +
     * packed 32 x 4 / 8 */
    wq_cost_peak_memory(&s, &j, &m, 1, &mem);
    assert_float_equal(mem.total - mem.base, 128.0 + 1048576.0 + 32.0 + 64.0 + 16.0, 1e-6);
    /* use_mse_search needs the whole layer as f32 (still 32 x 4 here), no conversion chunking */
    j.mse_search = true;
    wq_cost_peak_memory(&s, &j, &m, 1, &mem);
    assert_float_equal(mem.total - mem.base, 128.0 + 32.0 + 64.0 + 16.0, 1e-6);
}

static void checkpoint_bytes_should_match_the_entry_layout(void **state)
{
    (void)state;
    wq_cost_job j = {.algo = WQ_COST_RTN, .bits = 4, .group_size = -1};
    /* 8 x 4 at 4 bits: 32 codes two per byte (16) + 8 rows x 1 group x (f32 scale + zero) (64) */
    assert_float_equal(wq_cost_ckpt_bytes(8, 4, &j), 16.0 + 64.0, 1e-9);
    /* 8 bits: one byte per code; groups of 2: 2 groups per row */
    j.bits = 8, j.group_size = 2;
    assert_float_equal(wq_cost_ckpt_bytes(8, 4, &j), 32.0 + 128.0, 1e-9);
    j.algo = WQ_COST_GPTQ;
    assert_float_equal(wq_cost_ckpt_bytes(8, 4, &j), 160.0, 1e-9);
    /* no checkpoint: --no-checkpoint, or an algorithm that writes none */
    j.no_checkpoint = true;
    assert_float_equal(wq_cost_ckpt_bytes(8, 4, &j), 0.0, 1e-12);
    j.no_checkpoint = false, j.algo = WQ_COST_AWQ;
    assert_float_equal(wq_cost_ckpt_bytes(8, 4, &j), 0.0, 1e-12);
}

/* A vocabulary of 10^6 x d 4: the embedding and lm_head raw copies (8 MB each in bf16) dwarf
 * everything else (the blocks hold a few hundred bytes), so the rounds are hand-countable. */
static void rounds_should_share_a_nodes_reads_and_container_writes(void **state)
{
    (void)state;
    wq_cost_shape s = tiny();
    s.vocab = 1000000;
    wq_cost_job j = {.algo = WQ_COST_RTN, .bits = 4, .group_size = -1, .no_checkpoint = true};
    wq_machine m;
    wq_cost_machine_defaults(&m);
    m.fs_read_bw = 1e9, m.fs_node_bw = 1e9, m.fs_write_bw = 1e9, m.fs_sync_bw = 1e9;
    m.net_lat = 0;
    const double copy = 8e6; /* bytes of one raw copy */
    wq_cost_plan one, split, shared;
    assert_int_equal(wq_cost_run(&s, &j, &m, 1, 1, 1, 1, &one), WQ_OK);
    assert_int_equal(wq_cost_run(&s, &j, &m, 2, 1, 1, 1, &split), WQ_OK);  /* 2 nodes */
    assert_int_equal(wq_cost_run(&s, &j, &m, 2, 1, 1, 2, &shared), WQ_OK); /* 1 node */
    /* one rank: both copies read and written at 1 GB/s one after the other: 32 ms */
    assert_float_equal(one.t_rounds, 4 * copy / 1e9, 1e-4);
    /* a rank per node: the copies run side by side, 16 ms */
    assert_float_equal(split.t_rounds, 2 * copy / 1e9, 1e-4);
    /* two ranks of one node: each reads at the node's 1 GB/s / 2 (16 ms) and writes (8 ms), but
     * the node reads 16 MB and writes 16 MB into the one file in that round: 32 ms */
    assert_float_equal(shared.t_rounds, 4 * copy / 1e9, 1e-4);
    /* the container is written with write-behind: what is left dirty at the end (at most one
     * 64 MiB window per rank of a node) is flushed, here the whole 16 MB container */
    assert_float_equal(one.t_flush, one.container_bytes / 1e9, 1e-12);
    assert_float_equal(split.t_flush, one.container_bytes / 2 / 1e9, 1e-12);
    setenv("WQ_WRITE_BEHIND_MB", "1", 1);
    assert_int_equal(wq_cost_run(&s, &j, &m, 1, 1, 1, 1, &one), WQ_OK);
    assert_float_equal(one.t_flush, 1048576.0 / 1e9, 1e-12);
    setenv("WQ_WRITE_BEHIND_MB", "0", 1); /* off: the whole container at the end */
    assert_int_equal(wq_cost_run(&s, &j, &m, 1, 1, 1, 1, &one), WQ_OK);
    assert_float_equal(one.t_flush, one.container_bytes / 1e9, 1e-12);
    unsetenv("WQ_WRITE_BEHIND_MB");
    assert_float_equal(one.seconds,
                       one.t_startup + one.t_rounds + one.t_embed + one.t_blocks + one.t_flush,
                       1e-12);
}

static void checkpoint_should_cost_rtn_its_entry_writes(void **state)
{
    (void)state;
    wq_cost_shape s = tiny();
    wq_cost_job j = {.algo = WQ_COST_RTN, .bits = 4, .group_size = -1};
    wq_machine m;
    wq_cost_machine_defaults(&m);
    m.fs_write_bw = 1e3; /* slow enough that the entries dominate the difference */
    wq_cost_plan with, without;
    assert_int_equal(wq_cost_run(&s, &j, &m, 1, 1, 1, 1, &with), WQ_OK);
    j.no_checkpoint = true;
    assert_int_equal(wq_cost_run(&s, &j, &m, 1, 1, 1, 1, &without), WQ_OK);
    /* per block: entries of q 4x4, k 2x4, v 2x4, o 4x4, gate 8x4, up 8x4, down 4x8, codes two per
     * byte (144 / 2 = 72) + 8 bytes per row and group (32 rows, one group each: 256) = 328 bytes;
     * 2 blocks, durable at fs_write_bw with write-behind */
    assert_float_equal(with.t_rounds - without.t_rounds, 2 * 328.0 / 1e3, 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(params_should_match_hand_count),
        cmocka_unit_test(forward_flops_should_count_linears_and_causal_attention),
        cmocka_unit_test(gptq_block_should_count_hessian_factorisation_and_solve),
        cmocka_unit_test(autoround_should_cost_three_forwards_per_iteration),
        cmocka_unit_test(container_bytes_should_match_packed_layout),
        cmocka_unit_test(time_should_scale_with_ranks_and_saturate),
        cmocka_unit_test(choose_should_refuse_a_budget_below_one_block),
        cmocka_unit_test(rtn_memory_should_hold_one_chunk_unless_mse_search),
        cmocka_unit_test(checkpoint_bytes_should_match_the_entry_layout),
        cmocka_unit_test(rounds_should_share_a_nodes_reads_and_container_writes),
        cmocka_unit_test(checkpoint_should_cost_rtn_its_entry_writes),
    };
    return cmocka_run_group_tests_name("dist_cost", tests, NULL, NULL);
}
