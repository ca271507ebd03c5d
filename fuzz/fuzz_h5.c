/* fuzz_h5.c: libFuzzer harness for the container reader. The input is a whole container file:
 * written to a scratch file, opened with wq_h5_open, and every entry's datasets are read (raw,
 * as f32, qmatrix, dequantized, extras). HDF5's own parsing of garbage is out of scope: the
 * library is not instrumented and has its own fuzzing; crashes inside libhdf5 are triaged, not
 * fixed here. scripts/fuzz runs this harness with a small -max_len. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "fuzz_util.h"
#include "io_hdf5/h5_container.h"

/* A container that passed validation may still declare shapes far larger than the file (HDF5
 * datasets can be unallocated); the harness does not read entries beyond this many elements, so
 * that a "huge but valid" declaration is not reported as an out-of-memory finding. */
#define MAX_ELEMS ((int64_t)1 << 24)

static int64_t numel_of(const wq_h5_entry *e)
{
    if (e->kind == WQ_H5_QLINEAR) {
        if (e->rows > MAX_ELEMS || e->cols > MAX_ELEMS) return -1;
        return e->rows * e->cols <= MAX_ELEMS ? e->rows * e->cols : -1;
    }
    int64_t n = 1;
    for (int k = 0; k < e->ndim; k++) {
        if (e->shape[k] < 0 || e->shape[k] > MAX_ELEMS) return -1;
        n *= e->shape[k];
        if (n > MAX_ELEMS) return -1;
    }
    return n;
}

/* Reads one dataset in its stored form, into a buffer sized as h5_container.h tells callers to
 * size it: wq_h5_dataset_info().bytes. */
static void read_stored(const wq_h5_reader *r, const wq_h5_entry *e, const char *name)
{
    wq_h5_dsinfo di;
    if (wq_h5_dataset_info(r, e, name, &di) != WQ_OK) return;
    WQ_FUZZ_CHECK(di.ndim >= 0 && di.ndim <= 4);
    int64_t n = 1;
    for (int k = 0; k < di.ndim; k++) {
        if (di.dims[k] < 0 || di.dims[k] > MAX_ELEMS) return;
        n *= di.dims[k];
        if (n > MAX_ELEMS) return;
    }
    void *buf = malloc(di.bytes ? di.bytes : 1);
    if (!buf) return;
    (void)wq_h5_read_dataset(r, e, name, buf);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wq_fuzz_quiet();
    const char *path = wq_fuzz_write_temp(data, size, ".h5");
    if (!path) return 0;
    wq_h5_reader *r = NULL;
    if (wq_h5_open(path, &r) != WQ_OK) {
        WQ_FUZZ_CHECK(r == NULL);
        return 0;
    }
    WQ_FUZZ_CHECK(wq_h5_source_config(r) && wq_h5_wquant_config(r) && wq_h5_version(r) &&
                  wq_h5_algorithm(r));
    const int64_t n = wq_h5_count(r);
    for (int64_t i = 0; i < n; i++) {
        const wq_h5_entry *e = wq_h5_entry_at(r, i);
        WQ_FUZZ_CHECK(e != NULL && wq_h5_find(r, e->name) == e);
        (void)wq_h5_entry_bytes(r, e);
        (void)wq_h5_entry_bits_per_weight(r, e);
        const int64_t numel = numel_of(e);
        if (numel < 0) continue;
        if (e->kind == WQ_H5_RAW) {
            read_stored(r, e, NULL);
            void *raw = malloc((size_t)(numel ? numel : 1) * wq_dtype_size(e->orig_dtype));
            float *f = malloc((size_t)(numel ? numel : 1) * sizeof *f);
            if (raw && f) {
                (void)wq_h5_read_raw(r, e, raw);
                (void)wq_h5_read_raw_f32(r, e, f);
            }
            free(raw);
            free(f);
            continue;
        }
        static const char *const slots[] = {"qweight", "qzeros", "scales", "g_idx"};
        for (int k = 0; k < 4; k++)
            read_stored(r, e, slots[k]);
        for (int k = 0; k < e->n_extra; k++) {
            read_stored(r, e, e->extra[k].name);
            if (e->extra[k].len > MAX_ELEMS) continue;
            float *x = malloc((size_t)e->extra[k].len * sizeof *x);
            if (x) (void)wq_h5_read_extra(r, e, e->extra[k].name, x);
            free(x);
        }
        wq_qmatrix q;
        if (wq_h5_read_qmatrix(r, e, &q) == WQ_OK) wq_qmatrix_free(&q);
        float *W = malloc((size_t)numel * sizeof *W);
        if (W) (void)wq_h5_dequant(r, e, W);
        free(W);
    }
    WQ_FUZZ_CHECK(wq_h5_entry_at(r, n) == NULL);
    wq_h5_close(r);
    return 0;
}
