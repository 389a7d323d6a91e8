/* y = x @ w^T for the few rows of a decode step (moe_svc/engine/skinny.py).
 *
 * x (M, K), w (N, K) row-major fp32, y (M, N). Decoding multiplies a handful of rows
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
#else
#error "skinny_linear needs AVX2 with FMA, or AVX-512"
#endif

#define PREFETCH_FLOATS 1024 /* 4 KB ahead of the weight row being read */

/* rows n0..n1 of w against rows 0..MM-1 of x (MM a compile-time constant: the
 * accumulators stay in registers) */
#define DEFINE_BLOCK(MM)                                                              \
    static void block_##MM(const float *x, int64_t K, const float *wr, float *y,      \
                           int64_t N) {                                               \
        vec acc[MM];                                                                  \
        for (int m = 0; m < MM; ++m) acc[m] = VZERO();                                \
        for (int64_t k = 0; k < K; k += VW) {                                         \
            _mm_prefetch((const char *)(wr + k + PREFETCH_FLOATS), _MM_HINT_T0);       \
            vec wv = VLOAD(wr + k);                                                   \
            for (int m = 0; m < MM; ++m) acc[m] = VFMA(wv, VLOAD(x + m * K + k), acc[m]); \
        }                                                                             \
        for (int m = 0; m < MM; ++m) y[m * N] = vsum(acc[m]);                         \
    }
DEFINE_BLOCK(1)
DEFINE_BLOCK(2)
DEFINE_BLOCK(3)
DEFINE_BLOCK(4)
DEFINE_BLOCK(5)
DEFINE_BLOCK(6)
DEFINE_BLOCK(7)
DEFINE_BLOCK(8)

typedef void (*block_fn)(const float *, int64_t, const float *, float *, int64_t);
static const block_fn BLOCKS[9] = {0,       block_1, block_2, block_3, block_4,
                                   block_5, block_6, block_7, block_8};

static void rows(const float *x, int64_t M, int64_t K, const float *w, int64_t n0,
                 int64_t n1, float *y, int64_t N) {
    for (int64_t n = n0; n < n1; ++n) {
        const float *wr = w + n * K;
        for (int64_t m0 = 0; m0 < M; m0 += 8) { /* the weight row is in L1 after m0 = 0 */
            int64_t mm = M - m0 < 8 ? M - m0 : 8;
            BLOCKS[mm](x + m0 * K, K, wr, y + m0 * N + n, N);
        }
    }
}

int skinny_vector_width(void) { return VW; }

/* K must be a multiple of skinny_vector_width(); threads: the OpenMP team size */
void skinny_linear(const float *x, int64_t M, int64_t K, const float *w, int64_t N,
                   float *y, int threads) {
    if (threads <= 1 || N * K < (1 << 16)) { /* small products: not worth waking the team */
        rows(x, M, K, w, 0, N, y, N);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t chunk = (N + nt - 1) / nt;
        int64_t n0 = t * chunk, n1 = n0 + chunk < N ? n0 + chunk : N;
        if (n0 < n1) rows(x, M, K, w, n0, n1, y, N);
    }
}
