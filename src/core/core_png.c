/* core_png.c: PNG encoder for 8-bit palette images: chunks with CRC-32, a zlib stream made of one
 * fixed-Huffman DEFLATE block (RFC 1951 3.2.6) and Adler-32. The only matches searched are runs of
 * the previous byte (distance 1) and the byte one row above (distance = row length), which is what
 * a plot on a flat background needs. Layer: core. */
#include "core/core_png.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_log.h"

uint32_t wq_png_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    static int ready = 0;
    if (!ready) { /* benign race: every writer stores the same values */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

uint32_t wq_png_adler32(uint32_t adler, const uint8_t *p, size_t n)
{
    uint32_t a = adler & 0xFFFF, b = adler >> 16;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    return (b << 16) | a;
}

/* ---- DEFLATE, fixed Huffman codes ------------------------------------------------------------ */

typedef struct {
    uint8_t *buf;
    size_t len;
    uint32_t acc; /* pending bits, LSB first */
    int nacc;
} bitw;

static void put_bits(bitw *w, uint32_t v, int n) /* v's n low bits, LSB first */
{
    w->acc |= v << w->nacc;
    w->nacc += n;
    while (w->nacc >= 8) {
        w->buf[w->len++] = (uint8_t)w->acc;
        w->acc >>= 8;
        w->nacc -= 8;
    }
}

static void put_code(bitw *w, uint32_t code, int n) /* Huffman codes go MSB first */
{
    uint32_t r = 0;
    for (int i = 0; i < n; i++)
        r |= ((code >> i) & 1u) << (n - 1 - i);
    put_bits(w, r, n);
}

static void put_litlen(bitw *w, int sym) /* RFC 1951 3.2.6 */
{
    if (sym < 144)
        put_code(w, 0x30u + (uint32_t)sym, 8);
    else if (sym < 256)
        put_code(w, 0x190u + (uint32_t)(sym - 144), 9);
    else if (sym < 280)
        put_code(w, (uint32_t)(sym - 256), 7);
    else
        put_code(w, 0xC0u + (uint32_t)(sym - 280), 8);
}

static const uint16_t k_len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                        15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                        67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t k_len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                        2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t k_dist_base[30] = {
    1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t k_dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                         6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static void put_match(bitw *w, int len, int dist)
{
    int lc = 28;
    while (k_len_base[lc] > len)
        lc--;
    put_litlen(w, 257 + lc);
    put_bits(w, (uint32_t)(len - k_len_base[lc]), k_len_extra[lc]);
    int dc = 29;
    while (k_dist_base[dc] > dist)
        dc--;
    put_code(w, (uint32_t)dc, 5);
    put_bits(w, (uint32_t)(dist - k_dist_base[dc]), k_dist_extra[dc]);
}

static int match_len(const uint8_t *src, size_t n, size_t i, size_t dist)
{
    if (dist == 0 || i < dist) return 0;
    size_t max = n - i < 258 ? n - i : 258, k = 0;
    while (k < max && src[i + k] == src[i + k - dist])
        k++;
    return (int)k;
}

wq_status wq_png_zlib_compress(const uint8_t *src, size_t n, size_t period, uint8_t **out,
                               size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (period > 32768) period = 0; /* beyond DEFLATE's window */
    /* worst case: every byte a 9-bit literal, plus header, end code and Adler-32 */
    bitw w = {wq_malloc(n + n / 8 + 64), 0, 0, 0};
    if (!w.buf) return WQ_ERR_NOMEM;
    w.buf[w.len++] = 0x78; /* CM 8 (deflate), CINFO 7 (32 KiB window) */
    w.buf[w.len++] = 0x01; /* FCHECK: 0x7801 % 31 == 0, no dictionary, fastest level */
    put_bits(&w, 1, 1);    /* BFINAL */
    put_bits(&w, 1, 2);    /* BTYPE 01: fixed Huffman codes */
    for (size_t i = 0; i < n;) {
        int l1 = match_len(src, n, i, 1), lp = match_len(src, n, i, period);
        int len = l1 >= lp ? l1 : lp;
        if (len >= 3) {
            put_match(&w, len, l1 >= lp ? 1 : (int)period);
            i += (size_t)len;
        } else {
            put_litlen(&w, src[i]);
            i++;
        }
    }
    put_litlen(&w, 256); /* end of block */
    if (w.nacc) put_bits(&w, 0, 8 - w.nacc);
    uint32_t ad = wq_png_adler32(1, src, n);
    for (int s = 24; s >= 0; s -= 8)
        w.buf[w.len++] = (uint8_t)(ad >> s);
    *out = w.buf;
    *out_len = w.len;
    return WQ_OK;
}

/* ---- PNG ------------------------------------------------------------------------------------- */

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* Appends one chunk (length, type, data, CRC of type + data) at buf + *pos. */
static void put_chunk(uint8_t *buf, size_t *pos, const char *type, const uint8_t *data, size_t n)
{
    uint8_t *p = buf + *pos;
    be32(p, (uint32_t)n);
    memcpy(p + 4, type, 4);
    if (n) memcpy(p + 8, data, n);
    be32(p + 8 + n, wq_png_crc32(0, p + 4, n + 4));
    *pos += 12 + n;
}

wq_status wq_png_encode_indexed(const uint8_t *pix, int w, int h, const uint8_t *palette,
                                int n_colors, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (w <= 0 || h <= 0 || w > (1 << 15) || h > (1 << 15) || n_colors < 1 || n_colors > 256) {
        WQ_LOG_ERROR("png: bad image %dx%d with %d colours", w, h, n_colors);
        return WQ_ERR_ARG;
    }
    size_t row = (size_t)w + 1, raw_len = row * (size_t)h;
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++)
        if (pix[i] >= n_colors) {
            WQ_LOG_ERROR("png: pixel %zu has colour %d outside the %d-entry palette", i, pix[i],
                         n_colors);
            return WQ_ERR_ARG;
        }
    uint8_t *raw = wq_malloc(raw_len), *z = NULL, *buf = NULL;
    size_t zlen = 0;
    if (!raw) return WQ_ERR_NOMEM;
    for (int y = 0; y < h; y++) { /* filter type 0 (None) on every row */
        raw[(size_t)y * row] = 0;
        memcpy(raw + (size_t)y * row + 1, pix + (size_t)y * (size_t)w, (size_t)w);
    }
    wq_status st = wq_png_zlib_compress(raw, raw_len, row, &z, &zlen);
    wq_free(raw);
    if (st != WQ_OK) return st;
    buf = wq_malloc(8 + 25 + 12 + 3 * (size_t)n_colors + 12 + zlen + 12);
    if (!buf) {
        wq_free(z);
        return WQ_ERR_NOMEM;
    }
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    size_t pos = 8;
    memcpy(buf, sig, 8);
    uint8_t ihdr[13];
    be32(ihdr, (uint32_t)w);
    be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 3;  /* colour type: indexed */
    ihdr[10] = 0; /* compression: deflate */
    ihdr[11] = 0; /* filter method 0 */
    ihdr[12] = 0; /* no interlace */
    put_chunk(buf, &pos, "IHDR", ihdr, sizeof ihdr);
    put_chunk(buf, &pos, "PLTE", palette, 3 * (size_t)n_colors);
    put_chunk(buf, &pos, "IDAT", z, zlen);
    put_chunk(buf, &pos, "IEND", NULL, 0);
    wq_free(z);
    *out = buf;
    *out_len = pos;
    return WQ_OK;
}

wq_status wq_png_write_file(const char *path, const uint8_t *pix, int w, int h,
                            const uint8_t *palette, int n_colors)
{
    uint8_t *png = NULL;
    size_t n = 0;
    WQ_TRY(wq_png_encode_indexed(pix, w, h, palette, n_colors, &png, &n));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    wq_status st = WQ_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(png, 1, n, f) != n) st = WQ_ERR_IO;
    if (f && fclose(f) != 0) st = WQ_ERR_IO;
    if (st == WQ_OK && rename(tmp, path) != 0) st = WQ_ERR_IO;
    if (st != WQ_OK) {
        WQ_LOG_ERROR("cannot write '%s': %s", path, strerror(errno));
        remove(tmp);
    }
    wq_free(png);
    return st;
}
