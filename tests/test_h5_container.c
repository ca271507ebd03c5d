/* test_h5_container.c: the parallel-HDF5 container (src/io_hdf5/), run under mpiexec at np = 1..4.
 * A deterministic "model" (quantized linears of every int width, nf4/fp4, ragged groups, g_idx,
 * extras, a layer written in row blocks by several ranks, raw tensors of every dtype) is written
 * collectively and read back exactly; its packed datasets are checked against packers written
 * here from docs/container.md; h5dump/h5ls read it; files from 1..np ranks are byte-identical;
 * failures (unwritable path, failing rank, unwritten entry, bad writes, differing declarations)
 * leave nothing behind and reach every rank; damaged files give clear errors; qconfig.json has
 * INC's form.
 * MPI rules (style.md B6): collective calls first, asserts after; one verdict (MPI_MAX of the
 * failures); the group name carries the rank.
 * `test_h5_container --serial FILE` (no mpiexec, no MPI_Init) re-checks a kept container with the
 * serial reader; `--keep FILE` (MPI mode) keeps the container for it. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <hdf5.h> /* only to damage finished containers for the reader's error tests */

#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_half.h"
#include "core/core_log.h"
#include "core/core_qtypes.h"
#include "dist/dist.h"
#include "io_hdf5/h5_container.h"
#include "kernels/kern_quant.h"
#include "wq_testutil.h"
#include "wq_version.h"

static wq_dist *g_dist;
static char g_dir[512];    /* shared directory (rank 0 creates it, every rank gets the name) */
static const char *g_keep; /* --keep FILE */

/* ---- the test model ---------------------------------------------------------------------------
 */

typedef struct {
    const char *name;
    wq_h5_kind kind;
    /* qlinear */
    wq_qdtype qdt;
    int bits;
    int64_t rows, cols, gs;
    int sym, full;
    wq_scale_dtype sd;
    int gidx;
    const char *algo;
    int n_extra;
    int64_t block_rows; /* > 0: written as row blocks by several ranks */
    /* raw */
    wq_dtype dt;
    int ndim;
    int64_t shape[4];
    int linear;
} tcase;

#define Q(nm, qd, b, r, c, g, sy, fu, s, gi, al, ex, br)                                           \
    {                                                                                              \
        .name = nm, .kind = WQ_H5_QLINEAR, .qdt = qd, .bits = b, .rows = r, .cols = c, .gs = g,    \
        .sym = sy, .full = fu, .sd = s, .gidx = gi, .algo = al, .n_extra = ex, .block_rows = br    \
    }
#define R(nm, d, nd, s0, s1, s2, s3, lin)                                                          \
    {                                                                                              \
        .name = nm, .kind = WQ_H5_RAW, .dt = d, .ndim = nd, .shape = {s0, s1, s2, s3},             \
        .linear = lin                                                                              \
    }

/* clang-format off */
static const tcase k_cases[] = {
    R("model.embed_tokens.weight", WQ_DTYPE_F16, 2, 50, 16, 0, 0, 0),
    /* 100 = 3*32 + 4: ragged last group; 24 rows: qzeros' last word is short */
    Q("model.layers.0.self_attn.q_proj", WQ_QDTYPE_INT, 4, 24, 100, 32, 1, 0, WQ_SCALE_F16, 0, "rtn", 0, 0),
    R("model.layers.0.self_attn.q_proj.bias", WQ_DTYPE_F32, 1, 24, 0, 0, 0, 0),
    /* 3 bit (10 per word), act-order g_idx, extras */
    Q("model.layers.0.self_attn.k_proj", WQ_QDTYPE_INT, 3, 17, 70, 16, 0, 0, WQ_SCALE_F32, 1, "gptq", 2, 0),
    Q("model.layers.0.mlp.down_proj", WQ_QDTYPE_INT, 8, 9, 33, -1, 0, 0, WQ_SCALE_F32, 0, "rtn", 0, 0),
    Q("model.layers.1.mlp.up_proj", WQ_QDTYPE_INT, 2, 16, 64, 8, 1, 1, WQ_SCALE_F32, 0, "rtn", 0, 0),
    Q("model.layers.1.mlp.gate_proj", WQ_QDTYPE_INT, 5, 13, 50, 25, 0, 0, WQ_SCALE_F16, 0, "rtn", 1, 0),
    Q("model.layers.1.self_attn.o_proj", WQ_QDTYPE_INT, 6, 11, 40, 128, 1, 0, WQ_SCALE_F32, 0, "rtn", 0, 0),
    Q("model.layers.1.self_attn.v_proj", WQ_QDTYPE_INT, 7, 8, 30, 7, 0, 0, WQ_SCALE_F32, 1, "gptq", 0, 0),
    Q("model.layers.2.mlp.down_proj", WQ_QDTYPE_INT, 1, 40, 96, 32, 1, 0, WQ_SCALE_F32, 0, "rtn", 0, 0),
    R("model.layers.2.input_layernorm.weight", WQ_DTYPE_BF16, 1, 16, 0, 0, 0, 0),
    Q("model.layers.2.self_attn.q_proj", WQ_QDTYPE_NF4, 4, 10, 45, 16, 1, 0, WQ_SCALE_F16, 0, "rtn", 0, 0),
    Q("model.layers.2.self_attn.k_proj", WQ_QDTYPE_FP4_BNB, 4, 6, 33, 32, 1, 0, WQ_SCALE_F32, 0, "rtn", 0, 0),
    Q("model.layers.2.self_attn.v_proj", WQ_QDTYPE_FP4_E2M1, 4, 5, 7, 32, 1, 0, WQ_SCALE_F32, 0, "rtn", 0, 4),
    /* 64 rows in blocks of 8 (npw for 4 bit) spread over the ranks */
    Q("model.layers.3.mlp.up_proj", WQ_QDTYPE_INT, 4, 64, 48, 16, 0, 0, WQ_SCALE_F16, 0, "rtn", 0, 8),
    /* hand-checked words: codes 1..8 -> 0x87654321, sym zero 8 -> (8-1) per field = 0x77777777 */
    Q("golden.proj", WQ_QDTYPE_INT, 4, 8, 8, 8, 1, 0, WQ_SCALE_F32, 0, "rtn", 0, 0),
    R("model.rotary_emb.inv_freq", WQ_DTYPE_F64, 1, 8, 0, 0, 0, 0),
    R("model.layers.0.table", WQ_DTYPE_I32, 3, 2, 3, 4, 0, 0),
    R("model.mask", WQ_DTYPE_U8, 4, 2, 2, 2, 3, 0),
    R("model.scalar", WQ_DTYPE_F32, 0, 0, 0, 0, 0, 0),
    R("model.empty", WQ_DTYPE_F32, 2, 0, 16, 0, 0, 0),
    R("model.norm.weight", WQ_DTYPE_F32, 1, 16, 0, 0, 0, 0),
    R("lm_head.weight", WQ_DTYPE_BF16, 2, 50, 16, 0, 0, 1),
};
/* clang-format on */
enum { N_CASES = sizeof k_cases / sizeof k_cases[0] };
static const char *const k_extra_names[] = {"input_scale", "clip"};

static const char k_source_config[] = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": "
                                      "\"llama\", \"note\": \"h\xc3\xa9llo\"}";
static char *g_wquant_config; /* > 64 KiB: exercises large attributes */

static uint64_t name_seed(const char *s)
{
    uint64_t h = 1469598103934665603ULL ^ WQ_TEST_SEED;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void build_entries(wq_h5_entry *es)
{
    memset(es, 0, N_CASES * sizeof *es);
    for (int i = 0; i < N_CASES; i++) {
        const tcase *c = &k_cases[i];
        wq_h5_entry *e = &es[i];
        snprintf(e->name, sizeof e->name, "%s", c->name);
        e->kind = c->kind;
        if (c->kind == WQ_H5_RAW) {
            e->orig_dtype = c->dt;
            e->ndim = c->ndim;
            memcpy(e->shape, c->shape, sizeof e->shape);
            e->linear = c->linear;
            continue;
        }
        e->orig_dtype = WQ_DTYPE_BF16;
        e->rows = c->rows;
        e->cols = c->cols;
        e->ndim = 2;
        e->shape[0] = c->rows;
        e->shape[1] = c->cols;
        e->spec = wq_qspec_default();
        e->spec.dtype = c->qdt;
        e->spec.bits = c->bits;
        e->spec.group_size = c->gs;
        e->spec.sym = c->sym;
        e->spec.full_range = c->full;
        e->spec.scale_dtype = c->sd;
        e->spec.double_quant = i % 2;
        e->group_size_eff = wq_qspec_group_size(&e->spec, c->cols);
        e->has_gidx = c->gidx;
        snprintf(e->algorithm, sizeof e->algorithm, "%s", c->algo);
        e->n_extra = c->n_extra;
        for (int k = 0; k < c->n_extra; k++) {
            snprintf(e->extra[k].name, sizeof e->extra[k].name, "%s", k_extra_names[k]);
            e->extra[k].len = k == 0 ? c->cols : 1;
        }
    }
}

/* The quantized matrix of a qlinear entry: codes cover every level (row 0), zero points include
 * 0 and the maximum, scales are arbitrary floats (some negative), g_idx an act-order assignment. */
static void make_qmatrix(const wq_h5_entry *e, wq_qmatrix *m)
{
    wq_test_rng r = {name_seed(e->name)};
    assert_int_equal(
        wq_qmatrix_init(m, e->rows, e->cols, e->group_size_eff, e->spec.dtype, e->spec.bits),
        WQ_OK);
    const int is_int = e->spec.dtype == WQ_QDTYPE_INT;
    const unsigned levels = is_int ? 1u << e->spec.bits : 16u;
    const int64_t ng = m->ngroups;
    const int golden = strcmp(e->name, "golden.proj") == 0;
    for (int64_t o = 0; o < e->rows; o++)
        for (int64_t c = 0; c < e->cols; c++)
            m->codes[o * e->cols + c] = golden   ? (uint8_t)(c + 1)
                                        : o == 0 ? (uint8_t)(c % levels)
                                                 : (uint8_t)(wq_test_next(&r) % levels);
    for (int64_t i = 0; i < e->rows * ng; i++) {
        float s = (float)(1e-4 + 0.05 * wq_test_uniform01(&r));
        if (e->spec.full_range && i % 3 == 1) s = -s;
        m->scales[i] = golden ? 0.5f : s;
        if (is_int)
            m->zeros[i] = e->spec.sym ? (float)(levels / 2) : (float)(wq_test_next(&r) % levels);
    }
    if (is_int && !e->spec.sym) {
        m->zeros[0] = 0.0f; /* stored as (0 - 1) & mask: the §13.4 corner */
        m->zeros[ng - 1] = (float)(levels - 1);
    }
    if (e->has_gidx) {
        assert_int_equal(wq_qmatrix_alloc_gidx(m), WQ_OK);
        int64_t *perm = malloc((size_t)e->cols * sizeof *perm);
        for (int64_t c = 0; c < e->cols; c++)
            perm[c] = c;
        for (int64_t c = e->cols - 1; c > 0; c--) {
            int64_t j = (int64_t)(wq_test_next(&r) % (uint64_t)(c + 1)), t = perm[c];
            perm[c] = perm[j];
            perm[j] = t;
        }
        for (int64_t k = 0; k < e->cols; k++)
            m->g_idx[perm[k]] = (int32_t)(k / e->group_size_eff);
        free(perm);
    }
}

static int64_t numel_of(const wq_h5_entry *e)
{
    int64_t n = 1;
    for (int k = 0; k < e->ndim; k++)
        n *= e->shape[k];
    return n;
}

/* Raw tensor bytes (finite values for the float types). Caller frees. */
static void *make_raw(const wq_h5_entry *e)
{
    wq_test_rng r = {name_seed(e->name)};
    const int64_t n = numel_of(e);
    unsigned char *b = malloc((size_t)n * wq_dtype_size(e->orig_dtype) + 1);
    for (int64_t i = 0; i < n; i++) {
        float x = wq_test_normal(&r);
        switch (e->orig_dtype) {
        case WQ_DTYPE_F32:
            memcpy(b + 4 * i, &x, 4);
            break;
        case WQ_DTYPE_F64: {
            double d = (double)x * 1e-3 + 1e-9 * (double)i;
            memcpy(b + 8 * i, &d, 8);
            break;
        }
        case WQ_DTYPE_F16:
            ((uint16_t *)b)[i] = wq_f32_to_f16(x);
            break;
        case WQ_DTYPE_BF16:
            ((uint16_t *)b)[i] = wq_f32_to_bf16(x);
            break;
        case WQ_DTYPE_I32:
            ((int32_t *)b)[i] = (int32_t)(wq_test_next(&r) % 2000001) - 1000000;
            break;
        case WQ_DTYPE_U8:
            b[i] = (unsigned char)wq_test_next(&r);
            break;
        default:
            fail_msg("no generator for %s", wq_dtype_name(e->orig_dtype));
        }
    }
    return b;
}

static void make_extra(const wq_h5_entry *e, int k, float *x)
{
    wq_test_rng r = {name_seed(e->name) + 17u * (uint64_t)(k + 1)};
    for (int64_t i = 0; i < e->extra[k].len; i++)
        x[i] = 0.5f + (float)wq_test_uniform01(&r);
}

/* Writes this rank's share: entry i belongs to rank (7i + 3) % size; row blocks of entry i go
 * round robin from rank i % size. Returns the first failure (writing stops there). */
static wq_status write_entries(wq_h5_file *f, const wq_h5_entry *es, int rank, int size)
{
    wq_status st = WQ_OK;
    for (int i = 0; i < N_CASES && st == WQ_OK; i++) {
        const wq_h5_entry *e = &es[i];
        const int mine = (7 * i + 3) % size == rank;
        if (e->kind == WQ_H5_RAW) {
            if (!mine) continue;
            void *b = make_raw(e);
            st = wq_h5_write_raw(f, i, b);
            free(b);
            continue;
        }
        const int64_t br = k_cases[i].block_rows;
        if (!mine && br == 0) continue;
        wq_qmatrix m;
        make_qmatrix(e, &m);
        if (br == 0) {
            st = wq_h5_write_qlinear(f, i, &m);
        } else {
            for (int64_t b = 0; b * br < e->rows && st == WQ_OK; b++) {
                if ((b + i) % size != rank) continue;
                const int64_t r0 = b * br, nr = e->rows - r0 < br ? e->rows - r0 : br;
                wq_qmatrix v = m; /* a view of rows [r0, r0 + nr) */
                v.rows = nr;
                v.codes = m.codes + r0 * m.cols;
                v.scales = m.scales + r0 * m.ngroups;
                v.zeros = m.zeros ? m.zeros + r0 * m.ngroups : NULL;
                v.g_idx = r0 == 0 ? m.g_idx : NULL;
                st = wq_h5_write_qlinear_rows(f, i, r0, &v);
            }
        }
        for (int k = 0; mine && k < e->n_extra && st == WQ_OK; k++) {
            float *x = malloc((size_t)e->extra[k].len * sizeof *x);
            make_extra(e, k, x);
            st = wq_h5_write_extra(f, i, e->extra[k].name, x);
            free(x);
        }
        wq_qmatrix_free(&m);
    }
    return st;
}

/* Collective: writes the whole model to path over dist d. */
static wq_status write_model(wq_dist *d, const char *path)
{
    wq_h5_entry es[N_CASES];
    build_entries(es);
    wq_h5_file *f = NULL;
    wq_status st = wq_h5_create(d, path, es, N_CASES, k_source_config, g_wquant_config, &f);
    if (st != WQ_OK) return st;
    return wq_h5_finish(f, write_entries(f, es, wq_dist_rank(d), wq_dist_size(d)));
}

/* ---- reference packers (docs/container.md; independent of src/kernels) -------------------------
 */

static uint32_t field(unsigned v, int bits, int e)
{
    return (v & ((1u << bits) - 1u)) << (bits * e);
}

/* optimum qweight [ceil(cols/npw)][rows] or native [rows][ceil(cols/npw)], LSB first along cols */
static void ref_qweight(const wq_qmatrix *m, int native, uint32_t *w)
{
    const int npw = 32 / m->bits;
    const int64_t nw = (m->cols + npw - 1) / npw;
    for (int64_t o = 0; o < m->rows; o++)
        for (int64_t j = 0; j < nw; j++) {
            uint32_t x = 0;
            for (int e = 0; e < npw && j * npw + e < m->cols; e++)
                x |= field(m->codes[o * m->cols + j * npw + e], m->bits, e);
            w[native ? o * nw + j : j * m->rows + o] = x;
        }
}

/* qzeros [ngroups][ceil(rows/npw)], (zp - 1) & mask, LSB first along rows */
static void ref_qzeros(const wq_qmatrix *m, uint32_t *w)
{
    const int npw = 32 / m->bits;
    const int64_t nw = (m->rows + npw - 1) / npw;
    for (int64_t g = 0; g < m->ngroups; g++)
        for (int64_t j = 0; j < nw; j++) {
            uint32_t x = 0;
            for (int e = 0; e < npw && j * npw + e < m->rows; e++)
                x |= field((unsigned)((int)m->zeros[(j * npw + e) * m->ngroups + g] - 1), m->bits,
                           e);
            w[g * nw + j] = x;
        }
}

static float stored_scale(float s, wq_scale_dtype sd)
{
    return sd == WQ_SCALE_F16 ? wq_f16_to_f32(wq_f32_to_f16(s)) : s;
}

/* ---- checks of a finished container (no collectives: safe to assert) ---------------------------
 */

static void check_qlinear(const wq_h5_reader *r, const wq_h5_entry *want, const wq_h5_entry *got)
{
    assert_int_equal(got->rows, want->rows);
    assert_int_equal(got->cols, want->cols);
    assert_int_equal(got->ndim, 2);
    assert_int_equal(got->shape[0], want->rows);
    assert_int_equal(got->shape[1], want->cols);
    assert_int_equal(got->group_size_eff, want->group_size_eff);
    assert_int_equal(got->spec.dtype, want->spec.dtype);
    assert_int_equal(got->spec.bits, want->spec.bits);
    assert_int_equal(got->spec.group_size, want->spec.group_size);
    assert_int_equal(got->spec.sym, want->spec.sym);
    assert_int_equal(got->spec.full_range, want->spec.full_range);
    assert_int_equal(got->spec.scale_dtype, want->spec.scale_dtype);
    assert_int_equal(got->spec.double_quant, want->spec.double_quant);
    assert_int_equal(got->spec.dq_bits, want->spec.dq_bits);
    assert_int_equal(got->spec.dq_group_size, want->spec.dq_group_size);
    assert_int_equal(got->has_gidx, want->has_gidx);
    assert_int_equal(got->orig_dtype, want->orig_dtype);
    assert_string_equal(got->algorithm, want->algorithm);
    assert_int_equal(got->n_extra, want->n_extra);

    wq_qmatrix m, q;
    make_qmatrix(want, &m);
    const int64_t n = m.rows * m.cols, ng = m.ngroups;
    const int native = want->spec.dtype != WQ_QDTYPE_INT, npw = 32 / want->spec.bits;
    for (int64_t i = 0; i < want->rows * ng; i++)
        m.scales[i] = stored_scale(m.scales[i], want->spec.scale_dtype);

    /* unpacked */
    assert_int_equal(wq_h5_read_qmatrix(r, got, &q), WQ_OK);
    assert_int_equal(q.rows, m.rows);
    assert_int_equal(q.ngroups, ng);
    assert_memory_equal(q.codes, m.codes, (size_t)n);
    assert_memory_equal(q.scales, m.scales, (size_t)(m.rows * ng) * sizeof(float));
    if (!native)
        assert_memory_equal(q.zeros, m.zeros, (size_t)(m.rows * ng) * sizeof(float));
    else
        assert_null(q.zeros);
    if (want->has_gidx)
        assert_memory_equal(q.g_idx, m.g_idx, (size_t)m.cols * 4);
    else
        assert_null(q.g_idx);
    wq_qmatrix_free(&q);

    /* dequantized = the kernel's dequantization of the expected matrix, bit for bit */
    float *w1 = malloc((size_t)n * 4), *w2 = malloc((size_t)n * 4);
    wq_kern_dequant_matrix(&m, w1);
    assert_int_equal(wq_h5_dequant(r, got, w2), WQ_OK);
    assert_memory_equal(w1, w2, (size_t)n * 4);
    free(w1), free(w2);

    /* packed words against the reference packers */
    wq_h5_dsinfo di;
    size_t total = 0;
    const int64_t nw = (m.cols + npw - 1) / npw;
    assert_int_equal(wq_h5_dataset_info(r, got, "qweight", &di), WQ_OK);
    assert_int_equal(di.ndim, 2);
    assert_int_equal(di.dims[0], native ? m.rows : nw);
    assert_int_equal(di.dims[1], native ? nw : m.rows);
    assert_int_equal(di.bytes, (size_t)(nw * m.rows) * 4);
    assert_int_equal(di.dtype, WQ_DTYPE_I32);
    total += di.bytes;
    uint32_t *ref = malloc(di.bytes), *words = malloc(di.bytes);
    ref_qweight(&m, native, ref);
    assert_int_equal(wq_h5_read_dataset(r, got, "qweight", words), WQ_OK);
    assert_memory_equal(words, ref, di.bytes);
    if (strcmp(want->name, "golden.proj") == 0)
        for (int64_t i = 0; i < m.rows; i++)
            assert_int_equal(words[i], 0x87654321u);
    free(ref), free(words);
    if (!native) {
        const int64_t nz = (m.rows + npw - 1) / npw;
        assert_int_equal(wq_h5_dataset_info(r, got, "qzeros", &di), WQ_OK);
        assert_int_equal(di.dims[0], ng);
        assert_int_equal(di.dims[1], nz);
        total += di.bytes;
        ref = malloc(di.bytes), words = malloc(di.bytes);
        ref_qzeros(&m, ref);
        assert_int_equal(wq_h5_read_dataset(r, got, "qzeros", words), WQ_OK);
        assert_memory_equal(words, ref, di.bytes);
        if (strcmp(want->name, "golden.proj") == 0) assert_int_equal(words[0], 0x77777777u);
        free(ref), free(words);
    } else {
        assert_int_equal(wq_h5_dataset_info(r, got, "qzeros", &di), WQ_ERR_ARG);
    }
    const int f16 = want->spec.scale_dtype == WQ_SCALE_F16;
    assert_int_equal(wq_h5_dataset_info(r, got, "scales", &di), WQ_OK);
    assert_int_equal(di.dims[0], ng);
    assert_int_equal(di.dims[1], m.rows);
    assert_int_equal(di.dtype, f16 ? WQ_DTYPE_F16 : WQ_DTYPE_F32);
    assert_int_equal(di.bytes, (size_t)(ng * m.rows) * (f16 ? 2 : 4));
    total += di.bytes;
    unsigned char *sc = malloc(di.bytes);
    assert_int_equal(wq_h5_read_dataset(r, got, "scales", sc), WQ_OK);
    for (int64_t g = 0; g < ng; g++)
        for (int64_t o = 0; o < m.rows; o++) {
            const float s = m.scales[o * ng + g];
            if (f16)
                assert_int_equal(((uint16_t *)sc)[g * m.rows + o], wq_f32_to_f16(s));
            else
                assert_memory_equal(&((float *)sc)[g * m.rows + o], &s, 4);
        }
    free(sc);
    if (want->has_gidx) {
        assert_int_equal(wq_h5_dataset_info(r, got, "g_idx", &di), WQ_OK);
        assert_int_equal(di.ndim, 1);
        assert_int_equal(di.dims[0], m.cols);
        total += di.bytes;
    } else {
        assert_int_equal(wq_h5_dataset_info(r, got, "g_idx", &di), WQ_ERR_ARG);
    }
    /* extras: listed sorted by name; compare by name */
    for (int k = 0; k < want->n_extra; k++) {
        int j = 0;
        while (j < got->n_extra && strcmp(got->extra[j].name, want->extra[k].name) != 0)
            j++;
        assert_true(j < got->n_extra);
        assert_int_equal(got->extra[j].len, want->extra[k].len);
        float *a = malloc((size_t)want->extra[k].len * 4),
              *b = malloc((size_t)want->extra[k].len * 4);
        make_extra(want, k, a);
        assert_int_equal(wq_h5_read_extra(r, got, want->extra[k].name, b), WQ_OK);
        assert_memory_equal(a, b, (size_t)want->extra[k].len * 4);
        assert_int_equal(wq_h5_dataset_info(r, got, want->extra[k].name, &di), WQ_OK);
        total += di.bytes;
        free(a), free(b);
    }
    assert_int_equal(wq_h5_read_extra(r, got, "nope", NULL), WQ_ERR_ARG);
    assert_int_equal(wq_h5_entry_bytes(r, got), total);
    assert_true(wq_h5_entry_bits_per_weight(r, got) == 8.0 * (double)total / (double)n);
    wq_qmatrix_free(&m);
}

static void check_raw(const wq_h5_reader *r, const wq_h5_entry *want, const wq_h5_entry *got)
{
    assert_int_equal(got->orig_dtype, want->orig_dtype);
    assert_int_equal(got->ndim, want->ndim);
    for (int k = 0; k < want->ndim; k++)
        assert_int_equal(got->shape[k], want->shape[k]);
    assert_int_equal(got->linear, want->linear);
    const int64_t n = numel_of(want);
    const size_t bytes = (size_t)n * wq_dtype_size(want->orig_dtype);
    assert_int_equal(wq_h5_entry_bytes(r, got), bytes);
    unsigned char *b = make_raw(want), *g = malloc(bytes + 1);
    assert_int_equal(wq_h5_read_raw(r, got, g), WQ_OK);
    assert_memory_equal(g, b, bytes);
    float *f = malloc((size_t)n * 4 + 4), *x = malloc((size_t)n * 4 + 4);
    assert_int_equal(wq_h5_read_raw_f32(r, got, f), WQ_OK);
    if (want->orig_dtype == WQ_DTYPE_I32)
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)((int32_t *)b)[i];
    else if (want->orig_dtype == WQ_DTYPE_U8)
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)b[i];
    else
        wq_convert_to_f32(want->orig_dtype, b, x, (size_t)n);
    assert_memory_equal(f, x, (size_t)n * 4);
    free(b), free(g), free(f), free(x);
}

static void check_model(const char *path)
{
    wq_h5_entry es[N_CASES];
    build_entries(es);
    wq_h5_reader *r = NULL;
    assert_int_equal(wq_h5_open(path, &r), WQ_OK);
    assert_int_equal(wq_h5_count(r), N_CASES);
    assert_string_equal(wq_h5_version(r), WQ_VERSION_STRING);
    assert_string_equal(wq_h5_source_config(r), k_source_config);
    if (g_wquant_config) assert_string_equal(wq_h5_wquant_config(r), g_wquant_config);
    assert_string_equal(wq_h5_algorithm(r), "mixed");
    assert_null(wq_h5_entry_at(r, N_CASES));
    assert_null(wq_h5_find(r, "model.layers.0"));
    for (int i = 0; i < N_CASES; i++) {
        const wq_h5_entry *got = wq_h5_entry_at(r, i);
        assert_non_null(got);
        assert_string_equal(got->name, es[i].name); /* declaration order, exact names */
        assert_int_equal(got->kind, es[i].kind);
        assert_ptr_equal(wq_h5_find(r, es[i].name), got);
        if (es[i].kind == WQ_H5_QLINEAR)
            check_qlinear(r, &es[i], got);
        else
            check_raw(r, &es[i], got);
    }
    /* wrong-kind requests are refused, not misread */
    assert_int_equal(wq_h5_read_raw(r, wq_h5_find(r, "golden.proj"), NULL), WQ_ERR_ARG);
    wq_qmatrix q;
    assert_int_equal(wq_h5_read_qmatrix(r, wq_h5_find(r, "model.norm.weight"), &q), WQ_ERR_ARG);
    wq_h5_close(r);
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Rank 0 runs the command; every rank gets its exit status. Collective. */
static int system0(const char *cmd)
{
    int rc = 0;
    if (wq_dist_rank(g_dist) == 0) rc = wq_test_system("%s", cmd);
    wq_dist_bcast(g_dist, 0, &rc, sizeof rc);
    return rc;
}

static int copy_file(const char *from, const char *to, double fraction)
{
    FILE *a = fopen(from, "rb");
    if (!a) return -1;
    fseek(a, 0, SEEK_END);
    long n = ftell(a);
    fseek(a, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, a);
    fclose(a);
    int rc = got == (size_t)n ? wq_test_write_file(to, b, (size_t)((double)n * fraction)) : -1;
    free(b);
    return rc;
}

/* Damages a root attribute with the plain HDF5 API: sets an int value, or deletes it. */
static int damage_attr(const char *path, const char *name, int value, int remove)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return -1;
    herr_t rc;
    if (remove) {
        rc = H5Adelete(f, name);
    } else {
        hid_t a = H5Aopen(f, name, H5P_DEFAULT);
        rc = a >= 0 ? H5Awrite(a, H5T_NATIVE_INT, &value) : -1;
        if (a >= 0) H5Aclose(a);
    }
    return H5Fclose(f) < 0 || rc < 0 ? -1 : 0;
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void container_should_roundtrip_every_entry_exactly(void **state)
{
    (void)state;
    char path[600], tmp[620];
    snprintf(path, sizeof path, "%s/model.h5", g_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    wq_status st = write_model(g_dist, path);
    /* collective part done */
    assert_int_equal(st, WQ_OK);
    assert_true(exists(path));
    assert_false(exists(tmp));
    check_model(path);
}

static void container_should_be_read_by_h5_tools(void **state)
{
    (void)state;
    char cmd[2400];
    int rc[4];
    snprintf(cmd, sizeof cmd, "h5dump -H '%s/model.h5' > '%s/h5dump.txt'", g_dir, g_dir);
    rc[0] = system0(cmd);
    snprintf(cmd, sizeof cmd, "h5ls -r '%s/model.h5' > '%s/h5ls.txt'", g_dir, g_dir);
    rc[1] = system0(cmd);
    /* 16-bit floats are real HDF5 float types: h5dump prints their values */
    snprintf(
        cmd, sizeof cmd,
        "h5dump -d '/layers/model.layers.0.self_attn.q_proj/scales' -d '/tensors/lm_head.weight' "
        "'%s/model.h5' > '%s/values.txt'",
        g_dir, g_dir);
    rc[2] = system0(cmd);
    snprintf(cmd, sizeof cmd,
             "grep -q 'model.layers.0.self_attn.q_proj/qweight' '%s/h5ls.txt' && "
             "grep -q 'wq_format_version' '%s/h5dump.txt' && grep -q 'complete' '%s/h5dump.txt'",
             g_dir, g_dir, g_dir);
    rc[3] = system0(cmd);
    for (int i = 0; i < 4; i++)
        assert_int_equal(rc[i], 0);
}

static void containers_should_be_byte_identical_for_any_rank_count(void **state)
{
    (void)state;
    const int rank = wq_dist_rank(g_dist), size = wq_dist_size(g_dist);
    wq_status st[4] = {WQ_OK, WQ_OK, WQ_OK, WQ_OK};
    int cmp_rc[4] = {0}, diff_rc[4] = {0};
    for (int k = 1; k <= size && k <= 4; k++) {
        wq_dist *sub = NULL;
        wq_status s = wq_dist_split(g_dist, rank < k ? 0 : 1, rank, &sub);
        char path[600];
        snprintf(path, sizeof path, "%s/np%d.h5", g_dir, k);
        if (s == WQ_OK && rank < k) s = write_model(sub, path);
        st[k - 1] = s;
        wq_dist_destroy(sub);
        if (k == 1 && size > 1) sleep(1); /* timestamps (if any were stored) would now differ */
        wq_dist_barrier(g_dist);
        char cmd[2400];
        snprintf(cmd, sizeof cmd, "cmp '%s/np1.h5' '%s'", g_dir, path);
        cmp_rc[k - 1] = system0(cmd);
        snprintf(cmd, sizeof cmd, "h5diff '%s/np1.h5' '%s'", g_dir, path);
        diff_rc[k - 1] = system0(cmd);
    }
    /* the full-communicator container of the first test is the np = size one */
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cmp '%s/np1.h5' '%s/model.h5'", g_dir, g_dir);
    int model_rc = system0(cmd);
    for (int k = 1; k <= size && k <= 4; k++) {
        if (rank < k) assert_int_equal(st[k - 1], WQ_OK);
        assert_int_equal(diff_rc[k - 1], 0);
        assert_int_equal(cmp_rc[k - 1], 0);
    }
    assert_int_equal(model_rc, 0);
}

/* Write-behind (core_io.h) only changes when data reaches storage, never the file: with a window
 * of ~1 KiB every raw tensor above it is written in row slabs and synced many times over; off (0)
 * nothing is synced until the end. Both must equal the default-window container byte for byte. */
static void write_behind_should_not_change_the_container(void **state)
{
    (void)state;
    const char *windows[2] = {"0.001", "0"};
    int cmp_rc[2] = {-1, -1};
    wq_status st[2];
    for (int k = 0; k < 2; k++) {
        char path[600], cmd[2400];
        snprintf(path, sizeof path, "%s/wb%d.h5", g_dir, k);
        setenv("WQ_WRITE_BEHIND_MB", windows[k], 1);
        st[k] = write_model(g_dist, path);
        unsetenv("WQ_WRITE_BEHIND_MB");
        wq_dist_barrier(g_dist);
        snprintf(cmd, sizeof cmd, "cmp '%s/model.h5' '%s'", g_dir, path);
        cmp_rc[k] = system0(cmd);
        if (k == 0) check_model(path);
    }
    for (int k = 0; k < 2; k++) {
        assert_int_equal(st[k], WQ_OK);
        assert_int_equal(cmp_rc[k], 0);
    }
}

/* A one-layer container for the failure tests. */
static void small_entries(wq_h5_entry *es)
{
    memset(es, 0, 2 * sizeof *es);
    snprintf(es[0].name, sizeof es[0].name, "layer.q");
    es[0].kind = WQ_H5_QLINEAR;
    es[0].rows = 16;
    es[0].cols = 64;
    es[0].orig_dtype = WQ_DTYPE_F32;
    es[0].spec = wq_qspec_default(); /* int4 sym g32 */
    es[0].spec.scale_dtype = WQ_SCALE_F16;
    es[0].group_size_eff = 32;
    snprintf(es[0].algorithm, sizeof es[0].algorithm, "rtn");
    es[0].n_extra = 1;
    snprintf(es[0].extra[0].name, sizeof es[0].extra[0].name, "input_scale");
    es[0].extra[0].len = 64;
    snprintf(es[1].name, sizeof es[1].name, "norm.weight");
    es[1].kind = WQ_H5_RAW;
    es[1].orig_dtype = WQ_DTYPE_F32;
    es[1].ndim = 1;
    es[1].shape[0] = 8;
}

/* Rank 0 writes everything of the small container (skip: leave entry `skip` unwritten). */
static wq_status write_small(wq_h5_file *f, const wq_h5_entry *es, int skip)
{
    if (wq_dist_rank(g_dist) != 0) return WQ_OK;
    wq_qmatrix m;
    make_qmatrix(&es[0], &m);
    /* the implicit g_idx (c / group_size) is accepted for a layer declared without one */
    if (wq_qmatrix_alloc_gidx(&m) != WQ_OK) {
        wq_qmatrix_free(&m);
        return WQ_ERR_NOMEM;
    }
    for (int c = 0; c < 64; c++)
        m.g_idx[c] = c / 32;
    float x[64] = {0}, nw[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (int i = 0; i < 64; i++)
        x[i] = 1.0f + (float)i;
    wq_status st = skip == 0 ? WQ_OK : wq_h5_write_qlinear(f, 0, &m);
    if (st == WQ_OK && skip != 0) st = wq_h5_write_extra(f, 0, "input_scale", x);
    if (st == WQ_OK && skip != 1) st = wq_h5_write_raw(f, 1, nw);
    wq_qmatrix_free(&m);
    return st;
}

static void failed_runs_should_leave_no_file_and_keep_the_old_one(void **state)
{
    (void)state;
    const int rank = wq_dist_rank(g_dist), size = wq_dist_size(g_dist);
    wq_h5_entry es[2];
    small_entries(es);
    char path[600], tmp[620], gap[600], gtmp[620];
    snprintf(path, sizeof path, "%s/fail.h5", g_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(gap, sizeof gap, "%s/gap.h5", g_dir);
    snprintf(gtmp, sizeof gtmp, "%s.tmp", gap);
    wq_h5_file *f = NULL;
    /* 1: a good container */
    wq_status st1 = wq_h5_create(g_dist, path, es, 2, "{}", "{}", &f);
    if (st1 == WQ_OK) st1 = wq_h5_finish(f, write_small(f, es, -1));
    /* 2: same path, the last rank fails: every rank gets an error, the old file stays */
    wq_status st2 = wq_h5_create(g_dist, path, es, 1, "{}", "{}", &f); /* only the layer */
    int tmp_seen = 0;
    if (st2 == WQ_OK) {
        tmp_seen = rank == 0 && exists(tmp);
        wq_status local = write_small(f, es, 1);
        if (rank == size - 1) {
            WQ_LOG_ERROR("injected failure on rank %d", rank);
            local = WQ_ERR_NUMERIC;
        }
        st2 = wq_h5_finish(f, local);
    }
    wq_dist_barrier(g_dist);
    /* 3: an entry nobody writes: finish refuses on every rank, nothing at the path */
    wq_status st3 = wq_h5_create(g_dist, gap, es, 2, "{}", "{}", &f);
    if (st3 == WQ_OK) st3 = wq_h5_finish(f, write_small(f, es, 1));
    wq_dist_barrier(g_dist);

    assert_int_equal(st1, WQ_OK);
    if (rank == 0) assert_true(tmp_seen);
    assert_true(st2 != WQ_OK);
    assert_int_equal(st2, rank == size - 1 ? WQ_ERR_NUMERIC : WQ_ERR_PEER);
    assert_false(exists(tmp));
    wq_h5_reader *r = NULL;
    assert_int_equal(wq_h5_open(path, &r), WQ_OK);
    assert_int_equal(wq_h5_count(r), 2); /* the first container, untouched */
    wq_h5_close(r);
    assert_int_equal(st3, WQ_ERR_ARG); /* deterministic: every rank reaches the same verdict */
    assert_false(exists(gap));
    assert_false(exists(gtmp));
    if (rank == 0) assert_non_null(strstr(wq_log_last_error(), "norm.weight"));
}

static void unwritable_output_should_fail_on_every_rank(void **state)
{
    (void)state;
    const int rank = wq_dist_rank(g_dist), size = wq_dist_size(g_dist);
    wq_h5_entry es[2];
    small_entries(es);
    const char *bad = "/nonexistent-wq-dir/sub/out.h5";
    wq_h5_file *f = (wq_h5_file *)&es; /* must be reset to NULL */
    wq_status st1 = wq_h5_create(g_dist, bad, es, 2, "{}", "{}", &f);
    char msg1[1024];
    snprintf(msg1, sizeof msg1, "%s", wq_log_last_error());
    wq_h5_file *f2 = NULL;
    wq_status st2 = wq_h5_create(g_dist, g_dir, es, 2, "{}", "{}", &f2); /* a directory */
    /* differing declarations: rank 1 says 17 rows */
    char path[600];
    snprintf(path, sizeof path, "%s/differ.h5", g_dir);
    if (rank == 1) es[0].rows = 17;
    wq_h5_file *f3 = NULL;
    wq_status st3 = wq_h5_create(g_dist, path, es, 2, "{}", "{}", &f3);
    if (st3 == WQ_OK) st3 = wq_h5_finish(f3, WQ_OK); /* only if the check were broken */
    wq_dist_barrier(g_dist);

    assert_null(f);
    assert_null(f2);
    assert_true(st1 != WQ_OK);
    assert_int_equal(st1, rank == 0 ? WQ_ERR_IO : WQ_ERR_PEER);
    if (rank == 0) assert_non_null(strstr(msg1, bad));
    assert_false(exists(bad));
    assert_true(st2 != WQ_OK);
    if (size > 1) {
        assert_true(st3 != WQ_OK);
        assert_int_equal(st3, rank == 1 ? WQ_ERR_ARG : WQ_ERR_PEER);
        assert_false(exists(path));
    }
}

static void invalid_writes_should_be_rejected(void **state)
{
    (void)state;
    const int rank = wq_dist_rank(g_dist);
    wq_h5_entry es[2];
    small_entries(es);
    char path[600];
    snprintf(path, sizeof path, "%s/invalid.h5", g_dir);
    wq_h5_file *f = NULL;
    wq_status got[12];
    for (int i = 0; i < 12; i++)
        got[i] = WQ_OK;
    wq_status st = wq_h5_create(g_dist, path, es, 2, "{}", "{}", &f);
    if (st == WQ_OK) {
        wq_qmatrix m, w;
        make_qmatrix(&es[0], &m);
        make_qmatrix(&es[0], &w);
        float x[64] = {0};
        got[0] = wq_h5_write_qlinear(f, 2, &m); /* index out of range */
        got[1] = wq_h5_write_raw(f, 0, x);      /* wrong kind */
        w.codes[5] = 16;                        /* 4-bit code out of range */
        got[2] = wq_h5_write_qlinear(f, 0, &w);
        w.codes[5] = 0;
        w.scales[3] = NAN;
        got[3] = wq_h5_write_qlinear(f, 0, &w);
        w.scales[3] = 1e6f; /* finite in f32, inf in f16 */
        got[4] = wq_h5_write_qlinear(f, 0, &w);
        w.scales[3] = 0.5f;
        w.zeros[1] = 7.5f;
        got[5] = wq_h5_write_qlinear(f, 0, &w);
        w.zeros[1] = 8.0f;
        wq_qmatrix blk = m;
        blk.rows = 4;
        got[6] = wq_h5_write_qlinear_rows(f, 0, 4, &blk); /* not aligned to 8 rows */
        got[7] = wq_h5_write_qlinear(f, 0, &blk);         /* partial without _rows */
        got[8] = wq_h5_write_extra(f, 0, "other", x);     /* undeclared extra */
        x[2] = INFINITY;
        got[9] = wq_h5_write_extra(f, 0, "input_scale", x);
        int32_t gi[64];
        for (int c = 0; c < 64; c++)
            gi[c] = c / 32;
        gi[0] = 1;
        w.g_idx = gi;
        got[10] = wq_h5_write_qlinear(f, 0, &w); /* a real g_idx, not declared */
        w.g_idx = NULL;
        blk.rows = 17;
        got[11] = wq_h5_write_qlinear_rows(f, 0, 0, &blk); /* beyond the last row */
        wq_qmatrix_free(&m);
        wq_qmatrix_free(&w);
        st = wq_h5_finish(f, write_small(f, es, -1));
    }
    const wq_status want[12] = {WQ_ERR_ARG,     WQ_ERR_ARG,     WQ_ERR_ARG, WQ_ERR_NUMERIC,
                                WQ_ERR_NUMERIC, WQ_ERR_ARG,     WQ_ERR_ARG, WQ_ERR_ARG,
                                WQ_ERR_ARG,     WQ_ERR_NUMERIC, WQ_ERR_ARG, WQ_ERR_ARG};
    assert_int_equal(st, WQ_OK);
    for (int i = 0; i < 12; i++) {
        if (got[i] != want[i]) print_error("rank %d: invalid write %d gave %d\n", rank, i, got[i]);
        assert_int_equal(got[i], want[i]);
    }
    /* the rejected writes changed nothing */
    wq_h5_reader *r = NULL;
    assert_int_equal(wq_h5_open(path, &r), WQ_OK);
    wq_qmatrix q, m;
    make_qmatrix(&es[0], &m);
    assert_int_equal(wq_h5_read_qmatrix(r, wq_h5_find(r, "layer.q"), &q), WQ_OK);
    assert_memory_equal(q.codes, m.codes, 16 * 64);
    wq_qmatrix_free(&q);
    wq_qmatrix_free(&m);
    wq_h5_close(r);
}

/* An HDF5 write that fails (here: the file-size limit, as a full file system would) is reported
 * with the file and the dataset; every rank fails, nothing is left at the path. */
static void failed_hdf5_write_should_name_the_dataset(void **state)
{
    (void)state;
    const int rank = wq_dist_rank(g_dist);
    wq_h5_entry es[2];
    small_entries(es);
    char path[600], msg[1024] = "";
    snprintf(path, sizeof path, "%s/efbig.h5", g_dir);
    wq_h5_file *f = NULL;
    wq_status st = wq_h5_create(g_dist, path, es, 2, "{}", "{}", &f);
    int limited = 0;
    if (st == WQ_OK) {
        struct rlimit old, lim;
        wq_status local = WQ_OK;
        if (rank == 0 && getrlimit(RLIMIT_FSIZE, &old) == 0) {
            signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of the signal */
            lim = old;
            lim.rlim_cur = 1;
            limited = setrlimit(RLIMIT_FSIZE, &lim) == 0;
            wq_log_clear_error();
            local = write_small(f, es, -1);
            snprintf(msg, sizeof msg, "%s", wq_log_last_error());
            setrlimit(RLIMIT_FSIZE, &old);
        }
        st = wq_h5_finish(f, local);
    }
    wq_dist_barrier(g_dist);
    assert_true(st != WQ_OK);
    assert_false(exists(path));
    if (rank == 0) {
        if (!limited || !strstr(msg, "layer.q") || !strstr(msg, "qweight"))
            print_error("limited %d, message '%s'\n", limited, msg);
        assert_true(limited);
        assert_int_equal(st, WQ_ERR_IO);
        assert_non_null(strstr(msg, "'/layers/layer.q/qweight'"));
        assert_non_null(strstr(msg, "efbig.h5"));
    } else {
        assert_int_equal(st, WQ_ERR_PEER);
    }
}

static void reader_should_reject_bad_files_clearly(void **state)
{
    (void)state;
    const int rank = wq_dist_rank(g_dist);
    char model[600], p[700];
    snprintf(model, sizeof model, "%s/model.h5", g_dir);
    wq_h5_reader *r = NULL;
    struct {
        const char *what;
        wq_status want;
        const char *msg;
    } cases[] = {
        {"missing", WQ_ERR_IO, "cannot read"},
        {"text", WQ_ERR_FORMAT, "not an HDF5 file"},
        {"truncated", WQ_ERR_FORMAT, "truncated"},
        {"incomplete", WQ_ERR_FORMAT, "not marked complete"},
        {"future", WQ_ERR_FORMAT, "HINT"},
        {"unversioned", WQ_ERR_FORMAT, "no wq_format_version"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(p, sizeof p, "%s/bad.r%d.%s.h5", g_dir, rank, cases[i].what);
        switch (i) {
        case 1:
            assert_int_equal(wq_test_write_file(p, "{\"not\": \"hdf5\"}\n", 16), 0);
            break;
        case 2:
            assert_int_equal(copy_file(model, p, 0.5), 0);
            break;
        case 3:
            assert_int_equal(copy_file(model, p, 1.0), 0);
            assert_int_equal(damage_attr(p, "complete", 0, 0), 0);
            break;
        case 4:
            assert_int_equal(copy_file(model, p, 1.0), 0);
            assert_int_equal(damage_attr(p, "wq_format_version", WQ_FORMAT_VERSION + 98, 0), 0);
            break;
        case 5:
            assert_int_equal(copy_file(model, p, 1.0), 0);
            assert_int_equal(damage_attr(p, "wq_format_version", 0, 1), 0);
            break;
        default:
            break;
        }
        wq_log_clear_error();
        wq_status st = wq_h5_open(p, &r);
        if (st != cases[i].want || !strstr(wq_log_last_error(), p) ||
            !strstr(wq_log_last_error(), cases[i].msg))
            print_error("%s: status %d, message '%s'\n", cases[i].what, st, wq_log_last_error());
        assert_int_equal(st, cases[i].want);
        assert_null(r);
        assert_non_null(strstr(wq_log_last_error(), p));
        assert_non_null(strstr(wq_log_last_error(), cases[i].msg));
    }
}

static void qconfig_should_follow_inc_form(void **state)
{
    (void)state;
    const int rank = wq_dist_rank(g_dist);
    char dir[600], out[700], qc[800], buf[64];
    wq_h5_qconfig_path("a/b/c.h5", buf, sizeof buf);
    assert_string_equal(buf, "a/b/qconfig.json");
    wq_h5_qconfig_path("c.h5", buf, sizeof buf);
    assert_string_equal(buf, "qconfig.json");
    /* each rank its own directory: the writer is not collective */
    snprintf(dir, sizeof dir, "%s/qc.r%d", g_dir, rank);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(out, sizeof out, "%s/model.h5", dir);
    wq_h5_entry es[N_CASES];
    build_entries(es);
    es[N_CASES - 1].linear = 0; /* lm_head still recognised through the config's fp32 rule */
    wq_config cfg;
    wq_config_defaults(&cfg, WQ_ALGO_RTN);
    assert_int_equal(wq_h5_write_qconfig(out, &cfg, es, N_CASES), WQ_OK);
    wq_h5_qconfig_path(out, qc, sizeof qc);
    FILE *fp = fopen(qc, "rb");
    assert_non_null(fp);
    static char text[1 << 17];
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[n] = '\0';
    assert_null(strchr(text, '\t'));
    static const char head[] =
        "{\n    \"('model.layers.0.self_attn.q_proj', 'Linear')\": {\n        \"rtn\": {\n"
        "            \"dtype\": \"int\",\n";
    assert_memory_equal(text, head, sizeof head - 1);
    char tmpq[900];
    snprintf(tmpq, sizeof tmpq, "%s.tmp", qc);
    assert_false(exists(tmpq));
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    /* keys: the linears only, in entry order */
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        while (k < N_CASES && es[k].kind != WQ_H5_QLINEAR &&
               strcmp(es[k].name, "lm_head.weight") != 0)
            k++;
        assert_true(k < N_CASES);
        char key[320];
        if (es[k].kind == WQ_H5_QLINEAR) {
            snprintf(key, sizeof key, "('%s', 'Linear')", es[k].name);
            assert_string_equal(it->string, key);
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(it, es[k].algorithm);
            assert_non_null(a);
            assert_string_equal(cJSON_GetObjectItem(a, "dtype")->valuestring,
                                wq_qdtype_name(es[k].spec.dtype));
            assert_int_equal(cJSON_GetObjectItem(a, "bits")->valueint, es[k].spec.bits);
            assert_int_equal(cJSON_GetObjectItem(a, "group_size")->valueint,
                             (int)es[k].spec.group_size);
            assert_true(cJSON_IsBool(cJSON_GetObjectItem(a, "use_sym")));
            assert_true(cJSON_IsTrue(cJSON_GetObjectItem(a, "use_sym")) == (es[k].spec.sym != 0));
            assert_non_null(cJSON_GetObjectItem(a, "double_quant_group_size"));
        } else {
            assert_string_equal(it->string, "('lm_head', 'Linear')");
            assert_string_equal(cJSON_GetObjectItem(it, "dtype")->valuestring, "fp32");
        }
        k++;
    }
    int nq = 0;
    for (int i = 0; i < N_CASES; i++)
        nq += es[i].kind == WQ_H5_QLINEAR;
    assert_int_equal(cJSON_GetArraySize(root), nq + 1);
    cJSON_Delete(root);
}

static void serial_reader_should_read_a_kept_container(void **state)
{
    check_model((const char *)*state);
}

/* ---- main -------------------------------------------------------------------------------------
 */

static int run_serial(const char *path)
{
    /* no MPI_Init: the reader must work in a plain program */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(serial_reader_should_read_a_kept_container, (void *)path),
    };
    return cmocka_run_group_tests_name("io_hdf5.serial", tests, NULL, NULL) != 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--serial") == 0) return run_serial(argv[i + 1]);
        if (strcmp(argv[i], "--keep") == 0) g_keep = argv[i + 1];
    }
    if (wq_dist_create(&argc, &argv, &g_dist) != WQ_OK) return 1;
    const int rank = wq_dist_rank(g_dist);
    if (rank == 0 && !wq_test_tmpdir(g_dir, sizeof g_dir)) g_dir[0] = '\0';
    wq_dist_bcast(g_dist, 0, g_dir, sizeof g_dir);
    if (!g_dir[0]) {
        wq_dist_destroy(g_dist);
        return 1;
    }
    /* a > 64 KiB config text (HDF5's compact attribute limit) */
    size_t pad = 100000;
    g_wquant_config = malloc(pad + 64);
    int len = snprintf(g_wquant_config, 64, "{\"rtn\": {\"global\": {}}, \"pad\": \"");
    memset(g_wquant_config + len, 'x', pad);
    snprintf(g_wquant_config + len + pad, 8, "\"}");

    char name[64];
    snprintf(name, sizeof name, "io_hdf5.r%d", rank);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(container_should_roundtrip_every_entry_exactly),
        cmocka_unit_test(container_should_be_read_by_h5_tools),
        cmocka_unit_test(containers_should_be_byte_identical_for_any_rank_count),
        cmocka_unit_test(write_behind_should_not_change_the_container),
        cmocka_unit_test(failed_runs_should_leave_no_file_and_keep_the_old_one),
        cmocka_unit_test(unwritable_output_should_fail_on_every_rank),
        cmocka_unit_test(invalid_writes_should_be_rejected),
        cmocka_unit_test(failed_hdf5_write_should_name_the_dataset),
        cmocka_unit_test(reader_should_reject_bad_files_clearly),
        cmocka_unit_test(qconfig_should_follow_inc_form),
    };
    int failed = cmocka_run_group_tests_name(name, tests, NULL, NULL);
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) {
        char model[600];
        snprintf(model, sizeof model, "%s/model.h5", g_dir);
        if (!failed && g_keep && copy_file(model, g_keep, 1.0) != 0) failed = 1;
        if (!failed)
            wq_test_system("rm -rf '%s'", g_dir);
        else
            fprintf(stderr, "io_hdf5: files kept in %s (seed %llx)\n", g_dir,
                    (unsigned long long)WQ_TEST_SEED);
    }
    free(g_wquant_config);
    wq_dist_destroy(g_dist);
    return failed != 0;
}
