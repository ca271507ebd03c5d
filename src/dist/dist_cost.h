/* dist_cost.h: the cost model of a quantization run: FLOPs, bytes and seconds per transformer block
 * and per whole run, per-rank peak memory, and the choice of the P x D grid, as functions of the
 * model shapes, the algorithm, the calibration size and a few measured machine constants.
 * Layer: dist. Pure arithmetic, no MPI: unit-testable serially (docs/planning.md derives every
 * term).
 *
 * The terms follow what the code does (cli_gptq.c, cli_awq.c, cli_quantize.c, dist_engine.c):
 * GPTQ runs 1 capture forward per sequential group plus 1 update forward per block, accumulates
 * X^T X in double (dgemm) into exact fixed-point cells, reduces them over the D ranks of the stage,
 * factorises each linear's Hessian on every rank (not split), solves its rows split over the D
 * ranks, and assembles codes and Q on every rank. RTN/HQQ balance whole tensors over all ranks in
 * rounds. */
#ifndef WQ_DIST_COST_H
#define WQ_DIST_COST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Measured machine constants (`wquant plan --calibrate`); rates are for ONE rank with one BLAS
 * thread (wquant's default), bandwidths per node unless noted. */
typedef struct {
    double gemm_flops;   /* sgemm flop/s (large square-ish products) */
    double dgemm_flops;  /* dgemm flop/s (the Hessian panels X^T X) */
    double fwd_flops;    /* transformer block forward flop/s (linears + attention, 2 flops/MAC) */
    double chol_flops;   /* GPTQ preparation flop/s, counted as 2 n^3 / 3 (dpotrf + strtri) */
    double chol_elem_s;  /* + seconds per n^2 element of the preparation (0 = none) */
    double solve_flops;  /* GPTQ row solve flop/s, counted as 2 rows cols^2 */
    double solve_col_s;  /* + seconds per row x column of the solve (0 = none) */
    double exact_rate;   /* values/s added into 128-bit exact accumulators */
    double quant_rate;   /* weights/s, RTN int4 quantize of an f32 matrix */
    double hqq_rate;     /* weights/s, HQQ with 20 solver iterations */
    double mem_bw;       /* bytes/s, memcpy of large buffers */
    double touch_bw;     /* bytes/s, first touch of freshly allocated memory (faults + zeroing) */
    double fs_read_bw;   /* bytes/s, one rank reading model files into fresh memory */
    double fs_write_bw;  /* bytes/s, buffered writes into pages the file system allocates fresh (the
                            container only grows): one node, all its ranks together (writes into
                            one file serialise on the file, locally and per client) */
    double fs_node_bw;   /* bytes/s, reads of all ranks of a node together */
    double fs_sync_bw;   /* bytes/s, written (dirty) pages reaching stable storage (fsync after the
                            writes): the container is fsync'ed before it is marked complete, each
                            checkpoint entry when it is written */
    double net_bw;       /* bytes/s, allreduce payload rate between ranks */
    double net_lat;      /* seconds per message */
    double base_rss;     /* bytes resident in an idle wquant rank (MPI, HDF5, BLAS, code) */
    double startup;      /* seconds: process start, MPI init, headers, container create */
    int cores_per_node;  /* physical cores */
    double mem_per_node; /* bytes */
} wq_machine;

/* Model shapes (Llama family). */
typedef struct {
    int64_t d, F, n_heads, n_kv_heads, head_dim, vocab, n_layers;
    bool tied; /* lm_head shares the embedding */
    bool qkv_bias;
    int src_bytes; /* bytes per checkpoint weight: 2 (bf16/f16) or 4 (f32) */
} wq_cost_shape;

/* Persisted in nothing; order is free. */
typedef enum {
    WQ_COST_RTN,
    WQ_COST_GPTQ,
    WQ_COST_AWQ,
    WQ_COST_HQQ,
    WQ_COST_AUTOROUND,
    WQ_COST_TEQ
} wq_cost_algo;

typedef struct {
    wq_cost_algo algo;
    int bits;           /* code bits (4 for nf4/fp4) */
    int64_t group_size; /* -1 = per output channel */
    bool mse_search;    /* RTN/AWQ use_mse_search: ~40x the quantize work */
    bool quant_lm_head;
    bool true_sequential; /* GPTQ: 4 capture forwards per block instead of 1 */
    bool awq_scale, awq_clip, awq_folding;
    int64_t hqq_iters;
    int64_t ar_iters, ar_batch; /* AutoRound: iterations and batch size (sequences) */
    int64_t teq_steps;
    int64_t teq_snapshot_every; /* TEQ: full-calibration forward every N steps (0 = none) */
    int64_t n_samples, seqlen; /* calibration (ignored by RTN/HQQ) */
    bool no_checkpoint; /* quantize --no-checkpoint; else RTN/HQQ/GPTQ write and fsync one checkpoint
                           entry per quantized linear (cli_ckpt.h) */
} wq_cost_job;

/* One block, with D ranks per stage and `threads` BLAS threads per rank. */
typedef struct {
    /* FLOPs of the whole block (all ranks together) */
    double flops_fwd1;    /* one forward of the block over all calibration tokens */
    double flops_fwd;     /* all forwards the algorithm runs (captures, grids, update) */
    double flops_hess;    /* X^T X panels */
    double flops_prep;    /* GPTQ factorisations, per rank (every rank does all of them) */
    double flops_solve;   /* GPTQ row solves */
    double flops_grid;    /* AWQ layer-loss GEMMs of the scale/clip grids */
    double flops_ar;      /* AutoRound: iters x 3 x forward over batch x seqlen tokens */
    double quant_weights; /* weights run through a quantizer (RTN-equivalents) */
    double exact_values;  /* values added into exact accumulators */
    /* bytes */
    double bytes_read;    /* from the model files, per rank (every stage rank loads the block) */
    double bytes_written; /* into the container (whole block) */
    double bytes_reduced; /* allreduce payload per rank */
    /* seconds on the critical path */
    double t_load, t_fwd, t_hess, t_reduce, t_prep, t_solve, t_grid, t_quant, t_write, t_total;
} wq_cost_block;

/* Per-rank peak memory and its parts (bytes). */
typedef struct {
    double base, acts, weights, algo, transient, total;
    const char *phase; /* where the peak occurs: "block pass", "embedding", "tensor rounds" */
} wq_cost_mem;

typedef struct {
    int ranks, P, D, threads;
    int64_t useful_ranks; /* more ranks than this add no parallelism */
    double seconds;       /* predicted wall time */
    double t_startup, t_rounds, t_embed, t_blocks, t_block; /* t_block: one block */
    double t_flush; /* the container's dirty pages reaching storage at the end (fsync) */
    wq_cost_block block;
    wq_cost_mem mem;
    double bytes_read, bytes_written, container_bytes, model_bytes;
} wq_cost_plan;

/* Fills defaults for a machine whose constants were never measured (documented in planning.md). */
void wq_cost_machine_defaults(wq_machine *m);

/* Parameters of the linears of one block: q, k, v, o, gate, up, down. */
int64_t wq_cost_block_linear_params(const wq_cost_shape *s);
/* All parameters of one block (linears, norms, biases). */
int64_t wq_cost_block_params(const wq_cost_shape *s);
/* All parameters of the model. */
int64_t wq_cost_model_params(const wq_cost_shape *s);

/* FLOPs of one block forward over n_seq sequences of T tokens: 2 x linear params per token plus
 * causal attention 2 x qd x T (T + 1) per sequence (QK^T and AV over the lower triangle). */
double wq_cost_forward_flops(const wq_cost_shape *s, int64_t n_seq, int64_t T);

/* Bytes of one quantized linear in the container: packed codes + f32 scales (+ zeros for int). */
double wq_cost_qlinear_bytes(int64_t rows, int64_t cols, const wq_cost_job *j);
/* Bytes of its checkpoint entry (codes two per byte up to 4 bits, else one; f32 scales and zero
 * points); 0 when the job writes no checkpoint. */
double wq_cost_ckpt_bytes(int64_t rows, int64_t cols, const wq_cost_job *j);

/* One block. WQ_ERR_ARG on nonsense shapes or D/threads < 1. */
wq_status wq_cost_block_eval(const wq_cost_shape *s, const wq_cost_job *j, const wq_machine *m,
                             int D, int threads, int ranks_per_node, wq_cost_block *out);

/* Peak memory of one rank with D ranks per stage. */
void wq_cost_peak_memory(const wq_cost_shape *s, const wq_cost_job *j, const wq_machine *m, int D,
                         wq_cost_mem *out);

/* The whole run on `ranks` ranks (ranks_per_node of them share a node's file system bandwidth) with
 * P stages. WQ_ERR_ARG if P does not divide into [1, min(ranks, n_layers)]. */
wq_status wq_cost_run(const wq_cost_shape *s, const wq_cost_job *j, const wq_machine *m, int ranks,
                      int P, int threads, int ranks_per_node, wq_cost_plan *out);

/* Chooses P (and so D = ranks / P) minimising the predicted time among the grids whose per-rank
 * peak fits mem_budget (bytes; <= 0: no limit). why[] explains the choice in one or two sentences.
 * WQ_ERR_ARG if no grid fits (why[] names the largest need and its size). */
wq_status wq_cost_choose(const wq_cost_shape *s, const wq_cost_job *j, const wq_machine *m,
                         int ranks, int threads, int ranks_per_node, double mem_budget,
                         wq_cost_plan *out, char *why, size_t why_len);

/* Human-readable bytes ("12.3 GiB") into buf; returns buf. */
const char *wq_cost_fmt_bytes(double bytes, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
