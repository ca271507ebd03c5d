/* test_core_png.c: the PNG encoder (CRC-32 and Adler-32 against published check values, a zlib
 * stream and a whole PNG decoded by zlib's inflate, an independent implementation), the plotter's
 * ticks and the sweep file's axis enumeration. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/core_alloc.h"
#include "core/core_plot.h"
#include "core/core_png.h"
#include "core/core_sweep.h"
#include "wq_testutil.h"

static void crc32_should_match_published_check_values(void **state)
{
    (void)state;
    /* CRC-32/ISO-HDLC check value of "123456789" (the catalogue's "check") */
    assert_int_equal(wq_png_crc32(0, (const uint8_t *)"123456789", 9), 0xCBF43926u);
    /* every PNG ends with the chunk IEND, whose CRC (of the type alone) is AE 42 60 82 */
    assert_int_equal(wq_png_crc32(0, (const uint8_t *)"IEND", 4), 0xAE426082u);
    /* continuing a CRC over two pieces equals the CRC of the whole */
    uint32_t c = wq_png_crc32(0, (const uint8_t *)"1234", 4);
    assert_int_equal(wq_png_crc32(c, (const uint8_t *)"56789", 5), 0xCBF43926u);
    /* Adler-32 of "Wikipedia" is 0x11E60398 (RFC 1950's worked example on Wikipedia) */
    assert_int_equal(wq_png_adler32(1, (const uint8_t *)"Wikipedia", 9), 0x11E60398u);
}

/* Inflates with zlib and compares with the source. */
static void check_roundtrip(const uint8_t *src, size_t n, size_t period)
{
    uint8_t *z = NULL;
    size_t zn = 0;
    assert_int_equal(wq_png_zlib_compress(src, n, period, &z, &zn), WQ_OK);
    uint8_t *back = malloc(n + 1);
    uLongf bn = (uLongf)n + 1;
    assert_int_equal(uncompress(back, &bn, z, (uLong)zn), Z_OK);
    assert_int_equal(bn, n);
    assert_memory_equal(back, src, n);
    free(back);
    wq_free(z);
}

static void deflate_should_inflate_with_zlib(void **state)
{
    (void)state;
    enum { N = 70000 };
    uint8_t *buf = malloc(N);
    wq_test_rng s = {WQ_TEST_SEED};
    for (size_t i = 0; i < N; i++)
        buf[i] = (uint8_t)(wq_test_next(&s) >> 56); /* literals */
    check_roundtrip(buf, N, 0);
    check_roundtrip(buf, 1, 0);
    for (size_t i = 0; i < N; i++)
        buf[i] = (uint8_t)((i / 300) % 7); /* long runs */
    check_roundtrip(buf, N, 0);
    for (size_t i = 0; i < N; i++)
        buf[i] = (uint8_t)((i % 801) * 7 % 13); /* repeated rows */
    check_roundtrip(buf, N, 801);
    check_roundtrip(buf, 0, 801);
    free(buf);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void png_should_have_valid_chunks_and_decode_to_the_pixels(void **state)
{
    (void)state;
    enum { W = 37, H = 23 };
    uint8_t pix[W * H];
    const uint8_t pal[9] = {255, 255, 255, 0, 0, 0, 200, 10, 10};
    for (int i = 0; i < W * H; i++)
        pix[i] = (uint8_t)((i % W) > 20 ? 2 : (i / W) % 2);
    uint8_t *png = NULL;
    size_t n = 0;
    assert_int_equal(wq_png_encode_indexed(pix, W, H, pal, 3, &png, &n), WQ_OK);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    assert_memory_equal(png, sig, 8);
    size_t pos = 8;
    const char *want[] = {"IHDR", "PLTE", "IDAT", "IEND"};
    uint8_t raw[(W + 1) * H];
    for (int k = 0; k < 4; k++) {
        uint32_t len = be32(png + pos);
        assert_memory_equal(png + pos + 4, want[k], 4);
        /* the CRC over type + data, computed here with zlib's crc32 */
        uint32_t crc = (uint32_t)crc32(0, png + pos + 4, len + 4);
        assert_int_equal(be32(png + pos + 8 + len), crc);
        if (k == 0) {
            assert_int_equal(be32(png + pos + 8), W);
            assert_int_equal(be32(png + pos + 12), H);
            assert_int_equal(png[pos + 16], 8);
            assert_int_equal(png[pos + 17], 3);
        }
        if (k == 1) assert_memory_equal(png + pos + 8, pal, 9);
        if (k == 2) {
            uLongf rn = sizeof raw;
            assert_int_equal(uncompress(raw, &rn, png + pos + 8, len), Z_OK);
            assert_int_equal(rn, sizeof raw);
            for (int y = 0; y < H; y++) {
                assert_int_equal(raw[y * (W + 1)], 0); /* filter None */
                assert_memory_equal(raw + y * (W + 1) + 1, pix + y * W, W);
            }
        }
        pos += 12 + len;
    }
    assert_int_equal(pos, n);
    wq_free(png);
    pix[5] = 3; /* outside the palette */
    assert_int_equal(wq_png_encode_indexed(pix, W, H, pal, 3, &png, &n), WQ_ERR_ARG);
}

static void ticks_should_be_round_numbers_inside_the_range(void **state)
{
    (void)state;
    double t[32];
    int dec;
    int n = wq_plot_nice_ticks(4.03, 5.57, 6, t, &dec);
    /* range 1.54 / 6 = 0.26 -> step 0.2: 4.2, 4.4, ..., 5.4 */
    assert_int_equal(n, 7);
    assert_int_equal(dec, 1);
    for (int i = 0; i < n; i++)
        assert_float_equal(t[i], 4.2 + 0.2 * i, 1e-9);
    n = wq_plot_nice_ticks(0, 1000, 5, t, &dec);
    assert_int_equal(n, 6);
    assert_int_equal(dec, 0);
    assert_float_equal(t[5], 1000, 0);
}

static void plot_should_render_markers_in_series_colours(void **state)
{
    (void)state;
    wq_plot_point pts[2] = {{4.0, 10.0, 0}, {5.0, 5.0, 1}};
    wq_plot_spec s = {.title = "t",
                      .xlabel = "x",
                      .ylabel = "y",
                      .series_names = {"rtn", "gptq"},
                      .n_series = 2,
                      .pts = pts,
                      .n_pts = 2};
    uint8_t *pix = NULL;
    int w, h, seen[WQ_PLOT_N_COLORS] = {0};
    assert_int_equal(wq_plot_render(&s, &pix, &w, &h), WQ_OK);
    assert_int_equal(w, 800);
    assert_int_equal(h, 560);
    for (int i = 0; i < w * h; i++)
        seen[pix[i]]++;
    assert_true(seen[4] > 40 && seen[5] > 40); /* both markers and their legend entries */
    assert_int_equal(seen[6], 0);              /* no third series */
    wq_free(pix);
    pts[1].series = 2;
    assert_int_equal(wq_plot_render(&s, &pix, &w, &h), WQ_ERR_ARG);
}

static const char *k_sweep =
    "{\"base\": {\"rtn\": {\"global\": {\"bits\": 4, \"use_sym\": false}}}, \"model\": \"m\","
    " \"eval\": {\"text\": \"dir/tiny.txt\", \"range\": \"1:5\"},"
    " \"algorithm_params\": {\"gptq\": {\"act_order\": true}},"
    " \"axes\": {\"algorithm\": [\"rtn\", \"gptq\"], \"bits\": [4, 3, 2], \"group_size\": [32, "
    "64]}}";

static void sweep_should_enumerate_the_product_last_axis_fastest(void **state)
{
    (void)state;
    wq_sweep *s = NULL;
    assert_int_equal(wq_sweep_parse(k_sweep, "t.json", &s), WQ_OK);
    assert_null(wq_sweep_base_path(s));
    assert_int_equal(wq_sweep_count(s), 12);
    assert_int_equal(wq_sweep_n_axes(s), 3);
    assert_string_equal(wq_sweep_eval_at(s, 0)->name, "tiny");
    assert_int_equal(wq_sweep_eval_at(s, 0)->range_begin, 1);
    const int bits[3] = {4, 3, 2}, gs[2] = {32, 64};
    for (int64_t i = 0; i < 12; i++) {
        wq_sweep_point p;
        assert_int_equal(wq_sweep_point_make(s, i, &p), WQ_OK);
        /* nested loops: algorithm (slowest), bits, group_size (fastest) */
        int a = (int)(i / 6), b = (int)(i / 2 % 3), g = (int)(i % 2);
        assert_int_equal(p.cfg.algo, a ? WQ_ALGO_GPTQ : WQ_ALGO_RTN);
        assert_int_equal(p.cfg.global.bits, bits[b]);
        assert_int_equal(p.cfg.global.group_size, gs[g]);
        assert_false(p.cfg.global.sym);
        assert_int_equal(p.cfg.ap.act_order, a == 1); /* algorithm_params only for gptq */
        char name[64];
        snprintf(name, sizeof name, "%02d_%s_w%d_g%d", (int)i, a ? "gptq" : "rtn", bits[b], gs[g]);
        assert_string_equal(p.name, name);
        wq_sweep_point_free(&p);
    }
    /* definitions differ between points and are stable */
    wq_sweep_point p0, p1, q0;
    assert_int_equal(wq_sweep_point_make(s, 0, &p0), WQ_OK);
    assert_int_equal(wq_sweep_point_make(s, 1, &p1), WQ_OK);
    assert_int_equal(wq_sweep_point_make(s, 0, &q0), WQ_OK);
    assert_string_not_equal(p0.definition, p1.definition);
    assert_string_equal(p0.definition, q0.definition);
    wq_sweep_point_free(&p0), wq_sweep_point_free(&p1), wq_sweep_point_free(&q0);
    assert_int_equal(wq_sweep_point_make(s, 12, &p0), WQ_ERR_ARG);
    wq_sweep_destroy(s);
}

static void sweep_should_reject_bad_files_naming_the_key(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"model\": \"m\", \"eval\": {\"text\": \"t\"}}",     /* no base */
        "{\"base\": \"c.json\", \"eval\": {\"text\": \"t\"}}", /* no model */
        "{\"base\": \"c.json\", \"model\": \"m\", \"eval\": {\"text\": \"t\"}, \"axes\": "
        "{\"bits\": []}}",
        "{\"base\": \"c.json\", \"model\": \"m\", \"eval\": {\"text\": \"t\"}, \"axes\": "
        "{\"bits\": [4, 4]}}",
        "{\"base\": \"c.json\", \"model\": \"m\", \"eval\": {\"text\": \"t\"}, \"axes\": "
        "{\"algorithm\": [\"foo\"]}}",
        "{\"base\": \"c.json\", \"model\": \"m\", \"eval\": {\"text\": \"t\", \"protocol\": "
        "\"x\"}}",
        "{\"base\": \"c.json\", \"model\": \"m\", \"eval\": {\"text\": \"t\"}, \"colour\": 1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wq_sweep *s = NULL;
        assert_int_equal(wq_sweep_parse(bad[i], "bad.json", &s), WQ_ERR_ARG);
        assert_null(s);
    }
    /* a base given as a path; an axis value the config rejects fails at point construction */
    wq_sweep *s = NULL;
    assert_int_equal(
        wq_sweep_parse("{\"base\": \"c.json\", \"model\": \"m\", \"eval\": {\"text\": \"t\"},"
                       " \"axes\": {\"bits\": [4, 9]}}",
                       "b.json", &s),
        WQ_OK);
    assert_string_equal(wq_sweep_base_path(s), "c.json");
    assert_int_equal(wq_sweep_set_base(s, "{\"rtn\": {}}", "c.json"), WQ_OK);
    wq_sweep_point p;
    assert_int_equal(wq_sweep_point_make(s, 0, &p), WQ_OK);
    wq_sweep_point_free(&p);
    assert_int_equal(wq_sweep_point_make(s, 1, &p), WQ_ERR_ARG); /* bits 9 */
    wq_sweep_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32_should_match_published_check_values),
        cmocka_unit_test(deflate_should_inflate_with_zlib),
        cmocka_unit_test(png_should_have_valid_chunks_and_decode_to_the_pixels),
        cmocka_unit_test(ticks_should_be_round_numbers_inside_the_range),
        cmocka_unit_test(plot_should_render_markers_in_series_colours),
        cmocka_unit_test(sweep_should_enumerate_the_product_last_axis_fastest),
        cmocka_unit_test(sweep_should_reject_bad_files_naming_the_key),
    };
    return cmocka_run_group_tests_name("core_png", tests, NULL, NULL);
}
