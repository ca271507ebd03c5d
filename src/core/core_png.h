/* core_png.h: a small self-contained PNG encoder (8-bit palette images) for the sweep plot:
 * CRC-32 (ISO 3309 / PNG), Adler-32 (RFC 1950) and a fixed-Huffman DEFLATE (RFC 1951) whose LZ77
 * matches are runs (distance 1) and repeated rows (distance = row length). No zlib, no libpng.
 * Layer: core. Pure; no I/O except wq_png_write_file. */
#ifndef WQ_CORE_PNG_H
#define WQ_CORE_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CRC-32 as PNG uses it (polynomial 0xEDB88320, init and final xor 0xFFFFFFFF), continuing from
 * `crc` (0 to start). */
uint32_t wq_png_crc32(uint32_t crc, const uint8_t *p, size_t n);
/* Adler-32 (RFC 1950), continuing from `adler` (1 to start). */
uint32_t wq_png_adler32(uint32_t adler, const uint8_t *p, size_t n);

/* A zlib stream (RFC 1950 header, one final fixed-Huffman block, Adler-32) of src[0..n).
 * `period` > 0 lets matches reach back `period` bytes (the PNG row length) besides runs.
 * *out is wq_malloc'd; *out_len its length. Returns WQ_ERR_NOMEM on allocation failure. */
wq_status wq_png_zlib_compress(const uint8_t *src, size_t n, size_t period, uint8_t **out,
                               size_t *out_len);

/* Encodes a w x h image of palette indices (pix, row-major, one byte per pixel) with n_colors RGB
 * palette entries (palette[3*i..3*i+2]) as an 8-bit indexed PNG into a wq_malloc'd buffer.
 * WQ_ERR_ARG for empty sizes, > 256 colours or an index outside the palette. */
wq_status wq_png_encode_indexed(const uint8_t *pix, int w, int h, const uint8_t *palette,
                                int n_colors, uint8_t **out, size_t *out_len);

/* wq_png_encode_indexed written to `path` (via path.tmp and a rename: never half-written).
 * WQ_ERR_IO naming the path when it cannot be written. */
wq_status wq_png_write_file(const char *path, const uint8_t *pix, int w, int h,
                            const uint8_t *palette, int n_colors);

#ifdef __cplusplus
}
#endif
#endif
