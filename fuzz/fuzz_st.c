/* fuzz_st.c: libFuzzer harness for the safetensors header parser. The input is a whole
 * .safetensors file: it is written to a scratch file, opened with wq_st_open_file, and every tensor
 * is read raw, as f32 (float dtypes) and by rows. Checks the table's own invariants too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "fuzz_util.h"
#include "model/st_reader.h"

static int is_float(wq_dtype t)
{
    return t == WQ_DTYPE_F32 || t == WQ_DTYPE_F16 || t == WQ_DTYPE_BF16 || t == WQ_DTYPE_F64;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wq_fuzz_quiet();
    const char *path = wq_fuzz_write_temp(data, size, ".safetensors");
    if (!path) return 0;
    wq_st_model *m = NULL;
    if (wq_st_open_file(path, &m) != WQ_OK) {
        WQ_FUZZ_CHECK(m == NULL);
        return 0;
    }
    const int64_t n = wq_st_count(m);
    for (int64_t i = 0; i < n; i++) {
        const wq_st_tensor *t = wq_st_at(m, i);
        WQ_FUZZ_CHECK(t != NULL && wq_st_find(m, t->name) == t);
        if (i > 0) WQ_FUZZ_CHECK(strcmp(wq_st_at(m, i - 1)->name, t->name) < 0);
        /* validated at open: every tensor's bytes lie inside the file, so nbytes <= size */
        WQ_FUZZ_CHECK(t->nbytes <= size && t->offset + t->nbytes <= size);
        WQ_FUZZ_CHECK(t->ndim >= 0 && t->ndim <= 4);
        unsigned char *raw = malloc(t->nbytes ? t->nbytes : 1);
        if (!raw) continue;
        WQ_FUZZ_CHECK(wq_st_read_raw(m, t, raw) == WQ_OK);
        free(raw);
        if (!is_float(t->dtype)) continue;
        /* numel floats can exceed the file size (F16 doubles it); the input cap bounds this */
        float *f = malloc(((size_t)t->numel ? (size_t)t->numel : 1) * sizeof *f);
        if (!f) continue;
        WQ_FUZZ_CHECK(wq_st_read_f32(m, t, f) == WQ_OK);
        if (t->ndim >= 1 && t->shape[0] > 0) {
            /* last row, then an out-of-range request that must be refused */
            WQ_FUZZ_CHECK(wq_st_read_rows_f32(m, t, t->shape[0] - 1, 1, f) == WQ_OK);
            WQ_FUZZ_CHECK(wq_st_read_rows_f32(m, t, t->shape[0], 1, f) != WQ_OK);
        }
        free(f);
    }
    WQ_FUZZ_CHECK(wq_st_at(m, n) == NULL && wq_st_find(m, "\x01no such tensor") == NULL);
    wq_st_close(m);
    return 0;
}
