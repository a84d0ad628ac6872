/* The horizontal pass of ``ops/resize.py`` with SIMD: four float32 rows of interleaved RGB filtered along x and
 * stored as uint8.
 *
 * Why C: numba cannot vectorise this pass (three interleaved channels, 2-5 taps per output pixel, a different
 * start per pixel), so it runs scalar: 12 loads and 12 multiply-adds per tap, over half of the resize's time.
 * Here one 256-bit register holds two rows' RGB (plus one ignored lane), so a tap is two broadcast
 * multiply-adds for the four rows, and the result goes straight to the uint8 view (no float row and no
 * separate store sweep). The arithmetic per output value is the numba kernel's: start at 0.5, one fused
 * multiply-add per tap in tap order, then uint8(min(max(x, 0), 255)) (truncation, then saturation). numba's
 * fastmath may reassociate a long tap loop, so on large downscales a rare value rounds the other way: at most
 * 1 grey level; tests/test_ops.py checks both passes against each other and against PIL.
 *
 * Contract (the caller, ``resize.resize_crop``, checks it): each float row is readable one float past its last
 * pixel (a 4-lane load of the last pixel), and ``d0..d3`` are uint8 rows of ``3 * out_w`` bytes (two or more
 * may be the same row: the last, partial block of rows repeats the last row with the same values). Output
 * pixels are written in increasing address order (flipped views are walked backwards), each as 4 bytes whose
 * fourth is overwritten by the next pixel; the last pixel of a row is written as 3 bytes.
 *
 * It is a Python extension module only so that setuptools builds and ships it; numba calls the exported
 * function by address (``resize.py``), and CPUs without AVX2 + FMA use the numba kernel instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define HRESIZE_X86 1
#endif

int64_t ffcv_ssl_hresize_available(void) {
#ifdef HRESIZE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

#ifdef HRESIZE_X86
__attribute__((target("avx2,fma")))
static inline void store_pixel(uint8_t *dst, __m128i v, int last) {
    const int32_t px = _mm_cvtsi128_si32(v);          /* R, G, B and a byte the next pixel overwrites */
    if (last) {
        memcpy(dst, &px, 3);
    } else {
        memcpy(dst, &px, 4);
    }
}

__attribute__((target("avx2,fma")))
int64_t ffcv_ssl_hresize_rows4(uint64_t p_r0, uint64_t p_r1, uint64_t p_r2, uint64_t p_r3,
                               uint64_t p_d0, uint64_t p_d1, uint64_t p_d2, uint64_t p_d3,
                               uint64_t p_xs, uint64_t p_xn, uint64_t p_xw, int64_t w3, int64_t kw, int64_t out_w,
                               int64_t flip) {
    const float *r0 = (const float *)p_r0, *r1 = (const float *)p_r1;
    const float *r2 = (const float *)p_r2, *r3 = (const float *)p_r3;
    uint8_t *d0 = (uint8_t *)p_d0, *d1 = (uint8_t *)p_d1, *d2 = (uint8_t *)p_d2, *d3 = (uint8_t *)p_d3;
    const int64_t *xs = (const int64_t *)p_xs, *xn = (const int64_t *)p_xn;
    const float *xw = (const float *)p_xw;
    (void)w3;                                             /* the rows' length: used by the numba fallback */
    const __m256 half = _mm256_set1_ps(0.5f);
    for (int64_t i = 0; i < out_w; i++) {
        const int64_t ox = flip ? out_w - 1 - i : i;      /* output pixel i reads input pixel ox */
        const int64_t n = xn[ox];
        const float *w = xw + ox * kw;
        int64_t j = 3 * xs[ox];
        __m256 c01 = half, c23 = half;
        for (int64_t k = 0; k < n; k++, j += 3) {
            const __m256 wk = _mm256_set1_ps(w[k]);
            c01 = _mm256_fmadd_ps(wk, _mm256_loadu2_m128(r1 + j, r0 + j), c01);
            c23 = _mm256_fmadd_ps(wk, _mm256_loadu2_m128(r3 + j, r2 + j), c23);
        }
        /* uint8(min(max(x, 0), 255)) of the numba store: truncate, then saturate 32 -> 16 -> 8 bits */
        const __m256i w01 = _mm256_packs_epi32(_mm256_cvttps_epi32(c01), _mm256_cvttps_epi32(c01));
        const __m256i w23 = _mm256_packs_epi32(_mm256_cvttps_epi32(c23), _mm256_cvttps_epi32(c23));
        const __m256i q01 = _mm256_packus_epi16(w01, w01), q23 = _mm256_packus_epi16(w23, w23);
        const int64_t o = 3 * i;
        const int last = i + 1 == out_w;
        store_pixel(d0 + o, _mm256_castsi256_si128(q01), last);
        store_pixel(d1 + o, _mm256_extracti128_si256(q01, 1), last);
        store_pixel(d2 + o, _mm256_castsi256_si128(q23), last);
        store_pixel(d3 + o, _mm256_extracti128_si256(q23, 1), last);
    }
    return 0;
}
#else
int64_t ffcv_ssl_hresize_rows4(uint64_t p_r0, uint64_t p_r1, uint64_t p_r2, uint64_t p_r3,
                               uint64_t p_d0, uint64_t p_d1, uint64_t p_d2, uint64_t p_d3,
                               uint64_t p_xs, uint64_t p_xn, uint64_t p_xw, int64_t w3, int64_t kw, int64_t out_w,
                               int64_t flip) {
    (void)p_r0; (void)p_r1; (void)p_r2; (void)p_r3; (void)p_d0; (void)p_d1; (void)p_d2; (void)p_d3;
    (void)p_xs; (void)p_xn; (void)p_xw; (void)w3; (void)kw; (void)out_w; (void)flip;
    return -1;   /* never called: ffcv_ssl_hresize_available() is 0 */
}
#endif

static struct PyModuleDef hresize_module = {PyModuleDef_HEAD_INIT, "_hresize", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__hresize(void) { return PyModule_Create(&hresize_module); }
