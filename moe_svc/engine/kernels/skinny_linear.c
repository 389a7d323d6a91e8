/* y = x @ w^T for the few rows of a decode step (moe_svc/engine/skinny.py).
 *
 * x (M, K) fp32, w (N, K) row-major fp32 or bf16 (widened to fp32 as it is read:
 * half the bytes, products and sums in fp32), y (M, N) fp32. Decoding multiplies a handful of rows
 * by large weight matrices: reading the weights from memory is the whole cost, and
 * MKL's small-M sgemm reaches about half the memory bandwidth at M = 8 (it packs
 * panels per call). Here every weight row is read once, streamed with a software
 * prefetch ahead, and dotted with up to 8 rows of x at a time while it sits in L1.
 *
 * Each output y[m, n] is one dot product summed in the same order whatever M is, so
 * a row's result does not depend on which other rows share the call (greedy decoding
 * is the same alone and batched).
 *
 * Compiled at load time with -march=native; OpenMP regions run on the calling
 * thread's team, the one torch uses (libgomp is shared with torch's).
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

#if defined(__AVX512F__)
#define VW 16
typedef __m512 vec;
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
static inline float vsum(vec v) { return _mm512_reduce_add_ps(v); }
/* bf16 -> fp32: the 16 bits are the fp32's high half */
static inline vec vload_bf16(const uint16_t *p) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
#elif defined(__AVX2__) && defined(__FMA__)
#define VW 8
typedef __m256 vec;
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
static inline float vsum(vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline vec vload_bf16(const uint16_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#else
#error "skinny_linear needs AVX2 with FMA, or AVX-512"
#endif

#define PREFETCH_BYTES 4096 /* ahead of the weight row being read */

/* one weight row against rows 0..MM-1 of x (MM a compile-time constant: the
 * accumulators stay in registers); W the weight element type, LOAD its widening load */
#define DEFINE_BLOCK(NAME, W, LOAD, MM)                                                \
    static void NAME##_##MM(const float *x, int64_t K, const W *wr, float *y, int64_t N) { \
        vec acc[MM];                                                                   \
        for (int m = 0; m < MM; ++m) acc[m] = VZERO();                                 \
        for (int64_t k = 0; k < K; k += VW) {                                          \
            _mm_prefetch((const char *)(wr + k) + PREFETCH_BYTES, _MM_HINT_T0);        \
            vec wv = LOAD(wr + k);                                                     \
            for (int m = 0; m < MM; ++m) acc[m] = VFMA(wv, VLOAD(x + m * K + k), acc[m]); \
        }                                                                              \
        for (int m = 0; m < MM; ++m) y[m * N] = vsum(acc[m]);                          \
    }

/* x rows [0, M) against weight rows [n0, n1): each weight row is read from memory
 * once and stays in L1 for the blocks of 8 rows of x after the first */
#define DEFINE_LINEAR(NAME, W, LOAD)                                                   \
    DEFINE_BLOCK(NAME, W, LOAD, 1)                                                     \
    DEFINE_BLOCK(NAME, W, LOAD, 2)                                                     \
    DEFINE_BLOCK(NAME, W, LOAD, 3)                                                     \
    DEFINE_BLOCK(NAME, W, LOAD, 4)                                                     \
    DEFINE_BLOCK(NAME, W, LOAD, 5)                                                     \
    DEFINE_BLOCK(NAME, W, LOAD, 6)                                                     \
    DEFINE_BLOCK(NAME, W, LOAD, 7)                                                     \
    DEFINE_BLOCK(NAME, W, LOAD, 8)                                                     \
    typedef void (*NAME##_fn)(const float *, int64_t, const W *, float *, int64_t);    \
    static const NAME##_fn NAME##_BLOCKS[9] = {0,         NAME##_1, NAME##_2,          \
                                               NAME##_3,  NAME##_4, NAME##_5,          \
                                               NAME##_6,  NAME##_7, NAME##_8};         \
    static void NAME##_rows(const float *x, int64_t M, int64_t K, const W *w,          \
                            int64_t n0, int64_t n1, float *y, int64_t N) {             \
        for (int64_t n = n0; n < n1; ++n) {                                            \
            for (int64_t m0 = 0; m0 < M; m0 += 8) {                                    \
                int64_t mm = M - m0 < 8 ? M - m0 : 8;                                  \
                NAME##_BLOCKS[mm](x + m0 * K, K, w + n * K, y + m0 * N + n, N);         \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    void NAME(const float *x, int64_t M, int64_t K, const W *w, int64_t N, float *y,   \
              int threads) {                                                           \
        if (threads <= 1 || N * K < (1 << 16)) { /* small: not worth waking the team */ \
            NAME##_rows(x, M, K, w, 0, N, y, N);                                       \
            return;                                                                    \
        }                                                                              \
        _Pragma("omp parallel num_threads(threads)") {                                 \
            int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();              \
            int64_t chunk = (N + nt - 1) / nt;                                         \
            int64_t n0 = t * chunk, n1 = n0 + chunk < N ? n0 + chunk : N;              \
            if (n0 < n1) NAME##_rows(x, M, K, w, n0, n1, y, N);                        \
        }                                                                              \
    }

int skinny_vector_width(void) { return VW; }

/* K must be a multiple of skinny_vector_width(); threads: the OpenMP team size */
DEFINE_LINEAR(skinny_linear, float, VLOAD)
DEFINE_LINEAR(skinny_linear_bf16, uint16_t, vload_bf16)
