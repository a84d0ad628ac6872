/* The horizontal pass of ``ops/resize.py`` with SIMD: four float32 rows of interleaved RGB filtered along x.
 *
 * Why C: numba cannot vectorise this pass (three interleaved channels, 2-5 taps per output pixel, a different
 * start per pixel), so it runs scalar: 12 loads and 12 multiply-adds per tap, over half of the resize's time.
 * Here one 256-bit register holds two rows' RGB (plus one ignored lane), so a tap is two broadcast
 * multiply-adds for the four rows. The arithmetic per output value is the scalar kernel's: start at 0.5, then
 * one fused multiply-add per tap in tap order. (numba's fastmath may reassociate a long tap loop, so on large
 * downscales a rare value rounds the other way: at most 1 grey level; tests/test_ops.py checks both passes.)
 *
 * Contract (the caller, ``resize.resize_crop``, checks it): each row is readable one float past its last pixel
 * (a 4-lane load of the last pixel), and ``a0..a3`` hold ``3 * out_w`` floats. Output pixels are written in
 * increasing address order (flipped views are walked backwards), each with a 4-float store whose fourth value
 * is overwritten by the next pixel; the last pixel of a row is stored as three floats.
 *
 * It is a Python extension module only so that setuptools builds and ships it; numba calls the exported
 * function by address (``resize.py``), and CPUs without AVX2 + FMA use the numba kernel instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

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
static inline void store3(float *dst, __m128 v) {
    float tmp[4];
    _mm_storeu_ps(tmp, v);
    dst[0] = tmp[0];
    dst[1] = tmp[1];
    dst[2] = tmp[2];
}

__attribute__((target("avx2,fma")))
int64_t ffcv_ssl_hresize_rows4(uint64_t p_r0, uint64_t p_r1, uint64_t p_r2, uint64_t p_r3,
                               uint64_t p_a0, uint64_t p_a1, uint64_t p_a2, uint64_t p_a3,
                               uint64_t p_xs, uint64_t p_xn, uint64_t p_xw, int64_t w3, int64_t kw, int64_t out_w,
                               int64_t flip) {
    const float *r0 = (const float *)p_r0, *r1 = (const float *)p_r1;
    const float *r2 = (const float *)p_r2, *r3 = (const float *)p_r3;
    float *a0 = (float *)p_a0, *a1 = (float *)p_a1, *a2 = (float *)p_a2, *a3 = (float *)p_a3;
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
        const int64_t o = 3 * i;
        if (i + 1 < out_w) {
            _mm_storeu_ps(a0 + o, _mm256_castps256_ps128(c01));
            _mm_storeu_ps(a1 + o, _mm256_extractf128_ps(c01, 1));
            _mm_storeu_ps(a2 + o, _mm256_castps256_ps128(c23));
            _mm_storeu_ps(a3 + o, _mm256_extractf128_ps(c23, 1));
        } else {
            store3(a0 + o, _mm256_castps256_ps128(c01));
            store3(a1 + o, _mm256_extractf128_ps(c01, 1));
            store3(a2 + o, _mm256_castps256_ps128(c23));
            store3(a3 + o, _mm256_extractf128_ps(c23, 1));
        }
    }
    return 0;
}
#else
int64_t ffcv_ssl_hresize_rows4(uint64_t p_r0, uint64_t p_r1, uint64_t p_r2, uint64_t p_r3,
                               uint64_t p_a0, uint64_t p_a1, uint64_t p_a2, uint64_t p_a3,
                               uint64_t p_xs, uint64_t p_xn, uint64_t p_xw, int64_t w3, int64_t kw, int64_t out_w,
                               int64_t flip) {
    (void)p_r0; (void)p_r1; (void)p_r2; (void)p_r3; (void)p_a0; (void)p_a1; (void)p_a2; (void)p_a3;
    (void)p_xs; (void)p_xn; (void)p_xw; (void)w3; (void)kw; (void)out_w; (void)flip;
    return -1;   /* never called: ffcv_ssl_hresize_available() is 0 */
}
#endif

static struct PyModuleDef hresize_module = {PyModuleDef_HEAD_INIT, "_hresize", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__hresize(void) { return PyModule_Create(&hresize_module); }
