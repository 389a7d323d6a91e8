/* y = x @ w^T for the few rows of a decode step (moe_svc/kernels/skinny.py).
 *
 * x (M, K) fp32, w (N, K) row-major fp32 or bf16 (widened to fp32 as it is read:
 * half the bytes, products and sums in fp32), or int8 with one fp32 scale per row
 * stored after the row's K values (a row is K + 4 bytes: a quarter of fp32's; the
 * int8 dot product is scaled once at its end), or int4 in groups of 32 along K
 * (16 bytes of nibbles per group, then the row's K/32 fp32 scales: 5/8 of a byte a
 * weight; each group's dot product is scaled as it is added), y (M, N) fp32. Decoding multiplies a handful of rows
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
 *
 * skinny_moe[_bf16] runs a whole shared-base MoE block (engine/shared_experts.py) for
 * the rows of a decode step in one call: a step is bound by its count of small
 * torch ops as much as by weight bytes, and the block took ~50 of them per layer.
 */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define VW 16
typedef __m512 vec;
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VSET1(f) _mm512_set1_ps(f)
static inline float vsum(vec v) { return _mm512_reduce_add_ps(v); }
/* bf16 -> fp32: the 16 bits are the fp32's high half */
static inline vec vload_bf16(const uint16_t *p) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline vec vload_i8(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
/* 16 bytes of an int4 group -> its 32 weights (nibble + 8 stored): low nibbles are
 * weights 0..15, high nibbles 16..31 */
#define I4_VECS 2
static inline void vload_i4_group(const uint8_t *p, vec *out) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)p), low = _mm_set1_epi8(0x0F);
    __m512i eight = _mm512_set1_epi32(8);
    __m128i lo = _mm_and_si128(bytes, low), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
    out[0] = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(lo), eight));
    out[1] = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(hi), eight));
}
#elif defined(__AVX2__) && defined(__FMA__)
#define VW 8
typedef __m256 vec;
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VSET1(f) _mm256_set1_ps(f)
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
static inline vec vload_i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
#define I4_VECS 4
static inline void vload_i4_group(const uint8_t *p, vec *out) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)p), low = _mm_set1_epi8(0x0F);
    __m256i eight = _mm256_set1_epi32(8);
    __m128i lo = _mm_and_si128(bytes, low), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
    out[0] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(lo), eight));
    out[1] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)), eight));
    out[2] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(hi), eight));
    out[3] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)), eight));
}
#else
#error "skinny_linear needs AVX2 with FMA, or AVX-512"
#endif

#define PREFETCH_BYTES 4096 /* ahead of the weight row being read */

/* Per weight type: the row stride in elements, and the factor a row's dot product is
 * scaled by (1 for fp32 and bf16, an exact no-op; the stored scale for int8). */
#define STRIDE_PLAIN(K) (K)
#define STRIDE_I8(K) ((K) + 4)
#define I4_GROUP 32
#define STRIDE_I4(K) ((K) / 2 + (K) / I4_GROUP * 4) /* bytes: nibbles, then the scales */
static inline float scale_f32(const float *row, int64_t K) { (void)row; (void)K; return 1.f; }
static inline float scale_bf16(const uint16_t *row, int64_t K) { (void)row; (void)K; return 1.f; }
static inline float scale_i8(const int8_t *row, int64_t K) {
    float s;
    memcpy(&s, row + K, sizeof s);
    return s;
}
/* int4 rows scale per group, inside the dot product: nothing left for its end */
static inline float scale_i4(const uint8_t *row, int64_t K) { (void)row; (void)K; return 1.f; }
/* weight o of an int4 row of L weights, scaled */
static inline float i4_weight(const uint8_t *row, int64_t o, int64_t L) {
    int64_t g = o / I4_GROUP, j = o % I4_GROUP;
    uint8_t byte = row[g * 16 + (j & 15)];
    int q = (j < 16 ? byte & 15 : byte >> 4) - 8;
    float s;
    memcpy(&s, row + L / 2 + g * 4, sizeof s);
    return (float)q * s;
}

/* one int4 weight row against rows 0..MM-1 of x: per group of 32, the products summed
 * then scaled by the group's scale into the row's accumulator */
#define DEFINE_BLOCK_I4(NAME, MM)                                                      \
    static void NAME##_##MM(const float *x, int64_t K, const uint8_t *wr, float *y,     \
                            int64_t N) {                                               \
        const uint8_t *scales = wr + K / 2;                                            \
        vec acc[MM];                                                                   \
        for (int m = 0; m < MM; ++m) acc[m] = VZERO();                                 \
        for (int64_t g = 0; g < K / I4_GROUP; ++g) {                                   \
            _mm_prefetch((const char *)(wr + g * 16) + PREFETCH_BYTES, _MM_HINT_T0);   \
            vec wv[I4_VECS];                                                           \
            vload_i4_group(wr + g * 16, wv);                                           \
            float sg;                                                                  \
            memcpy(&sg, scales + g * 4, sizeof sg);                                    \
            vec s = VSET1(sg);                                                         \
            for (int m = 0; m < MM; ++m) {                                             \
                const float *xg = x + m * K + g * I4_GROUP;                            \
                vec t = VZERO();                                                       \
                for (int v = 0; v < I4_VECS; ++v) t = VFMA(wv[v], VLOAD(xg + v * VW), t); \
                acc[m] = VFMA(t, s, acc[m]);                                           \
            }                                                                          \
        }                                                                              \
        for (int m = 0; m < MM; ++m) y[m * N] = vsum(acc[m]);                          \
    }

/* one weight row against rows 0..MM-1 of x (MM a compile-time constant: the
 * accumulators stay in registers); W the weight element type, LOAD its widening load,
 * SCALE the row's scale */
#define DEFINE_BLOCK(NAME, W, LOAD, SCALE, MM)                                         \
    static void NAME##_##MM(const float *x, int64_t K, const W *wr, float *y, int64_t N) { \
        vec acc[MM];                                                                   \
        for (int m = 0; m < MM; ++m) acc[m] = VZERO();                                 \
        for (int64_t k = 0; k < K; k += VW) {                                          \
            _mm_prefetch((const char *)(wr + k) + PREFETCH_BYTES, _MM_HINT_T0);        \
            vec wv = LOAD(wr + k);                                                     \
            for (int m = 0; m < MM; ++m) acc[m] = VFMA(wv, VLOAD(x + m * K + k), acc[m]); \
        }                                                                              \
        float scale = SCALE(wr, K);                                                    \
        for (int m = 0; m < MM; ++m) y[m * N] = vsum(acc[m]) * scale;                  \
    }

/* x rows [0, M) against weight rows [n0, n1): each weight row is read from memory
 * once and stays in L1 for the blocks of 8 rows of x after the first */
#define DEFINE_LINEAR(NAME, W, LOAD, SCALE, STRIDE)                                    \
    DEFINE_BLOCK(NAME, W, LOAD, SCALE, 1)                                              \
    DEFINE_BLOCK(NAME, W, LOAD, SCALE, 2)                                              \
    DEFINE_BLOCK(NAME, W, LOAD, SCALE, 3)                                              \
    DEFINE_BLOCK(NAME, W, LOAD, SCALE, 4)                                              \
    DEFINE_BLOCK(NAME, W, LOAD, SCALE, 5)                                              \
    DEFINE_BLOCK(NAME, W, LOAD, SCALE, 6)                                              \
    DEFINE_BLOCK(NAME, W, LOAD, SCALE, 7)                                              \
    DEFINE_BLOCK(NAME, W, LOAD, SCALE, 8)                                              \
    DEFINE_ROWS(NAME, W, STRIDE)

/* int4: its own blocks (the scales sit inside the dot product) */
#define DEFINE_LINEAR_I4(NAME)                                                         \
    DEFINE_BLOCK_I4(NAME, 1)                                                           \
    DEFINE_BLOCK_I4(NAME, 2)                                                           \
    DEFINE_BLOCK_I4(NAME, 3)                                                           \
    DEFINE_BLOCK_I4(NAME, 4)                                                           \
    DEFINE_BLOCK_I4(NAME, 5)                                                           \
    DEFINE_BLOCK_I4(NAME, 6)                                                           \
    DEFINE_BLOCK_I4(NAME, 7)                                                           \
    DEFINE_BLOCK_I4(NAME, 8)                                                           \
    DEFINE_ROWS(NAME, uint8_t, STRIDE_I4)

/* the blocks' dispatch over rows of x, and the threaded entry point */
#define DEFINE_ROWS(NAME, W, STRIDE)                                                   \
    typedef void (*NAME##_fn)(const float *, int64_t, const W *, float *, int64_t);    \
    static const NAME##_fn NAME##_BLOCKS[9] = {0,         NAME##_1, NAME##_2,          \
                                               NAME##_3,  NAME##_4, NAME##_5,          \
                                               NAME##_6,  NAME##_7, NAME##_8};         \
    static void NAME##_rows(const float *x, int64_t M, int64_t K, const W *w,          \
                            int64_t n0, int64_t n1, float *y, int64_t N) {             \
        for (int64_t n = n0; n < n1; ++n) {                                            \
            for (int64_t m0 = 0; m0 < M; m0 += 8) {                                    \
                int64_t mm = M - m0 < 8 ? M - m0 : 8;                                  \
                NAME##_BLOCKS[mm](x + m0 * K, K, w + n * STRIDE(K), y + m0 * N + n, N); \
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

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
/* weight o of a row of L weights, before the row's scale (SCALE) */
static inline float f32_weight(const float *row, int64_t o, int64_t L) { (void)L; return row[o]; }
static inline float bf16_weight(const uint16_t *row, int64_t o, int64_t L) {
    (void)L;
    return bf16_to_f32(row[o]);
}
static inline float i8_weight(const int8_t *row, int64_t o, int64_t L) {
    (void)L;
    return (float)row[o];
}

/* rows [lo, hi) of n split evenly over the team (inside a parallel region) */
static inline void team_share(int64_t n, int64_t *lo, int64_t *hi) {
    int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t chunk = (n + nt - 1) / nt;
    *lo = t * chunk < n ? t * chunk : n;
    *hi = *lo + chunk < n ? *lo + chunk : n;
}

int skinny_vector_width(void) { return VW; }

/* K must be a multiple of skinny_vector_width(); threads: the OpenMP team size */
DEFINE_LINEAR(skinny_linear, float, VLOAD, scale_f32, STRIDE_PLAIN)
DEFINE_LINEAR(skinny_linear_bf16, uint16_t, vload_bf16, scale_bf16, STRIDE_PLAIN)
DEFINE_LINEAR(skinny_linear_i8, int8_t, vload_i8, scale_i8, STRIDE_I8)
DEFINE_LINEAR_I4(skinny_linear_i4)

/* The shared-base MoE block for the rows of a decode step (SharedBaseMoeBlock):
 *   router logits, top-k experts and their softmax weights (fp32, as Mixtral);
 *   gu = W_gu x;  per chosen expert e: pair = gu + B_gu[e] (A_gu[e] x);
 *   h = silu(pair[:I]) * pair[I:];  hw = w h;
 *   out = W_dn (sum_j hw_j) + sum_j B_dn[e_j] (A_dn[e_j] hw_j).
 * gate (E, C), gu (2I, C), gu_a (E*r_gu, C), dn (C, I), dn_a (E*r_dn, I) row-major;
 * the B factors per expert transposed, gu_bt (E, r_gu, 2I) and dn_bt (E, r_dn, C),
 * so that adding B_e a is a run of contiguous axpys. A factor may be NULL (rank 0).
 * Each row's sums run in the same order whatever M (batch-invariant).
 * scratch: M * (2I + E*r_gu + 2k*I + k*I + I + k*r_dn) floats. */
#define DEFINE_MOE(NAME, LINEAR, W, ELEM, SCALE, STRIDE)                               \
    void NAME(const float *x, int64_t M, int64_t C, const W *gate, int64_t E, int64_t k, \
              const W *gu, int64_t I, const W *gu_a, const W *gu_bt, int64_t r_gu,     \
              const W *dn, const W *dn_a, const W *dn_bt, int64_t r_dn, float *out,     \
              float *logits, int64_t *selected, float *weights, float *scratch,        \
              int threads) {                                                            \
        float *gate_up = scratch;        /* (M, 2I) */                                  \
        float *xa = gate_up + M * 2 * I; /* (M, E*r_gu) */                              \
        float *pair = xa + M * E * r_gu; /* (M, k, 2I) */                               \
        float *hw = pair + M * k * 2 * I; /* (M, k, I) */                               \
        float *hsum = hw + M * k * I;    /* (M, I) */                                   \
        float *ha = hsum + M * I;        /* (M, k, r_dn) */                             \
        _Pragma("omp parallel num_threads(threads)") {                                  \
            int64_t lo, hi;                                                             \
            _Pragma("omp single") {                                                     \
                LINEAR##_rows(x, M, C, gate, 0, E, logits, E);                          \
                for (int64_t m = 0; m < M; ++m) { /* top-k, softmax over those k */     \
                    const float *l = logits + m * E;                                    \
                    int64_t *sel = selected + m * k;                                    \
                    for (int64_t j = 0; j < k; ++j) {                                   \
                        int64_t best = -1;                                              \
                        for (int64_t e = 0; e < E; ++e) {                               \
                            int taken = 0;                                              \
                            for (int64_t i = 0; i < j; ++i) taken |= sel[i] == e;       \
                            if (!taken && (best < 0 || l[e] > l[best])) best = e;       \
                        }                                                               \
                        sel[j] = best;                                                  \
                    }                                                                   \
                    float total = 0.f, *w = weights + m * k;                            \
                    for (int64_t j = 0; j < k; ++j) {                                   \
                        w[j] = expf(l[sel[j]] - l[sel[0]]);                             \
                        total += w[j];                                                  \
                    }                                                                   \
                    for (int64_t j = 0; j < k; ++j) w[j] /= total;                      \
                }                                                                       \
            } /* implicit barrier: every thread sees the routing */                     \
            team_share(2 * I, &lo, &hi);                                                \
            LINEAR##_rows(x, M, C, gu, lo, hi, gate_up, 2 * I);                         \
            if (gu_a) {                                                                 \
                team_share(E * r_gu, &lo, &hi);                                         \
                LINEAR##_rows(x, M, C, gu_a, lo, hi, xa, E * r_gu);                     \
            }                                                                           \
            _Pragma("omp barrier")                                                      \
            team_share(I, &lo, &hi);                                                    \
            for (int64_t m = 0; m < M; ++m) {                                           \
                for (int64_t o = lo; o < hi; ++o) hsum[m * I + o] = 0.f;                \
                for (int64_t j = 0; j < k; ++j) {                                       \
                    int64_t e = selected[m * k + j];                                    \
                    float *p = pair + (m * k + j) * 2 * I, *h = hw + (m * k + j) * I;   \
                    const float *g = gate_up + m * 2 * I;                               \
                    for (int64_t o = lo; o < hi; ++o) {                                 \
                        p[o] = g[o];                                                    \
                        p[o + I] = g[o + I];                                            \
                    }                                                                   \
                    for (int64_t t = 0; gu_bt && t < r_gu; ++t) {                       \
                        const W *b = gu_bt + (e * r_gu + t) * STRIDE(2 * I);            \
                        float a = xa[m * E * r_gu + e * r_gu + t] * SCALE(b, 2 * I);    \
                        for (int64_t o = lo; o < hi; ++o) {                             \
                            p[o] += a * ELEM(b, o, 2 * I);                              \
                            p[o + I] += a * ELEM(b, o + I, 2 * I);                      \
                        }                                                               \
                    }                                                                   \
                    float w = weights[m * k + j];                                       \
                    for (int64_t o = lo; o < hi; ++o) {                                 \
                        float gv = p[o];                                                \
                        h[o] = gv / (1.f + expf(-gv)) * p[o + I] * w;                   \
                        hsum[m * I + o] += h[o];                                        \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
            _Pragma("omp barrier")                                                      \
            if (dn_a) {                                                                 \
                team_share(M * k * r_dn, &lo, &hi);                                     \
                for (int64_t i = lo; i < hi; ++i) { /* i = (m, j, t) */                 \
                    int64_t mj = i / r_dn, t = i % r_dn, e = selected[mj];              \
                    LINEAR##_1(hw + mj * I, I, dn_a + (e * r_dn + t) * STRIDE(I), ha + i, 1); \
                }                                                                       \
                _Pragma("omp barrier")                                                  \
            }                                                                           \
            team_share(C, &lo, &hi);                                                    \
            LINEAR##_rows(hsum, M, I, dn, lo, hi, out, C);                              \
            for (int64_t m = 0; dn_bt && m < M; ++m)                                    \
                for (int64_t j = 0; j < k; ++j)                                         \
                    for (int64_t t = 0; t < r_dn; ++t) {                                \
                        int64_t e = selected[m * k + j];                                \
                        const W *b = dn_bt + (e * r_dn + t) * STRIDE(C);                \
                        float a = ha[(m * k + j) * r_dn + t] * SCALE(b, C);             \
                        for (int64_t c = lo; c < hi; ++c) out[m * C + c] += a * ELEM(b, c, C); \
                    }                                                                   \
        }                                                                               \
    }

DEFINE_MOE(skinny_moe, skinny_linear, float, f32_weight, scale_f32, STRIDE_PLAIN)
DEFINE_MOE(skinny_moe_bf16, skinny_linear_bf16, uint16_t, bf16_weight, scale_bf16, STRIDE_PLAIN)
DEFINE_MOE(skinny_moe_i8, skinny_linear_i8, int8_t, i8_weight, scale_i8, STRIDE_I8)
DEFINE_MOE(skinny_moe_i4, skinny_linear_i4, uint8_t, i4_weight, scale_i4, STRIDE_I4)

/* Attention of one decode step (Attention.forward with T = 1): q, k, v in one product
 * (wqkv (nq, C), nq = (nh + 2 nkv) hd), rotary embedding of q and k (cos/sin (M, hd)),
 * the new k and v written to each row's cache slot, softmax(q K^T / sqrt(hd)) V over
 * the row's valid keys up to its slot (grouped-query heads: nh / nkv queries per
 * key head), then the output product wo (C, nh hd). The caches are fp32
 * [row, kv head, slot, hd] with the given row and head strides; valid (M, >= kv_len).
 * hd must be a multiple of skinny_vector_width().
 * scratch: M * (nq + nh hd + nh kv_len) floats. */
#define DEFINE_ATTENTION(NAME, LINEAR, W)                                               \
    void NAME(const float *x, int64_t M, int64_t C, const W *wqkv, const W *wo,        \
              int64_t nh, int64_t nkv, int64_t hd, const float *cos, const float *sin, \
              float *kc, float *vc, int64_t row_stride, int64_t head_stride,          \
              const int64_t *slots, const uint8_t *valid, int64_t valid_stride,       \
              int64_t kv_len, float *out, float *scratch, int threads) {              \
        int64_t nq = (nh + 2 * nkv) * hd, half = hd / 2, group = nh / nkv;            \
        float *qkv = scratch, *y = qkv + M * nq, *probs = y + M * nh * hd;            \
        float scale = 1.f / sqrtf((float)hd);                                          \
        _Pragma("omp parallel num_threads(threads)") {                                 \
            int64_t lo, hi;                                                            \
            team_share(nq, &lo, &hi);                                                  \
            LINEAR##_rows(x, M, C, wqkv, lo, hi, qkv, nq);                             \
            _Pragma("omp barrier")                                                     \
            team_share(M * (nh + 2 * nkv), &lo, &hi);                                  \
            for (int64_t i = lo; i < hi; ++i) { /* i = (row, head of q, k or v) */     \
                int64_t m = i / (nh + 2 * nkv), h = i % (nh + 2 * nkv);                \
                float *v = qkv + m * nq + h * hd;                                      \
                if (h < nh + nkv) { /* rotary: x cos + rotate_half(x) sin */            \
                    const float *c = cos + m * hd, *s = sin + m * hd;                  \
                    for (int64_t d = 0; d < half; ++d) {                               \
                        float a = v[d], b = v[d + half];                               \
                        v[d] = a * c[d] - b * s[d];                                    \
                        v[d + half] = b * c[d + half] + a * s[d + half];               \
                    }                                                                  \
                }                                                                      \
                if (h >= nh) { /* k or v: into the cache at the row's slot */          \
                    int64_t g = h < nh + nkv ? h - nh : h - nh - nkv;                  \
                    float *dst = (h < nh + nkv ? kc : vc) + m * row_stride +           \
                                 g * head_stride + slots[m] * hd;                      \
                    memcpy(dst, v, hd * sizeof(float));                                \
                }                                                                      \
            }                                                                          \
            _Pragma("omp barrier")                                                     \
            team_share(M * nh, &lo, &hi);                                              \
            for (int64_t i = lo; i < hi; ++i) { /* i = (row, query head) */            \
                int64_t m = i / nh, h = i % nh, g = h / group, slot = slots[m];        \
                const float *keys = kc + m * row_stride + g * head_stride;             \
                const float *vals = vc + m * row_stride + g * head_stride;             \
                const uint8_t *ok = valid + m * valid_stride;                          \
                float *p = probs + i * kv_len, *yo = y + m * nh * hd + h * hd;         \
                skinny_linear_rows(qkv + m * nq + h * hd, 1, hd, keys, 0, kv_len, p, kv_len); \
                float top = -INFINITY, total = 0.f;                                    \
                for (int64_t s = 0; s < kv_len; ++s) {                                 \
                    int seen = (ok[s] && s <= slot) || s == slot;                      \
                    p[s] = seen ? p[s] * scale : -INFINITY;                            \
                    if (p[s] > top) top = p[s];                                        \
                }                                                                      \
                for (int64_t s = 0; s < kv_len; ++s) {                                 \
                    p[s] = p[s] == -INFINITY ? 0.f : expf(p[s] - top);                 \
                    total += p[s];                                                     \
                }                                                                      \
                for (int64_t d = 0; d < hd; ++d) yo[d] = 0.f;                          \
                for (int64_t s = 0; s < kv_len; ++s) {                                 \
                    if (p[s] == 0.f) continue;                                         \
                    float w = p[s] / total;                                            \
                    for (int64_t d = 0; d < hd; ++d) yo[d] += w * vals[s * hd + d];    \
                }                                                                      \
            }                                                                          \
            _Pragma("omp barrier")                                                     \
            team_share(C, &lo, &hi);                                                   \
            LINEAR##_rows(y, M, nh * hd, wo, lo, hi, out, C);                          \
        }                                                                              \
    }

DEFINE_ATTENTION(skinny_attention, skinny_linear, float)
DEFINE_ATTENTION(skinny_attention_bf16, skinny_linear_bf16, uint16_t)
DEFINE_ATTENTION(skinny_attention_i8, skinny_linear_i8, int8_t)
DEFINE_ATTENTION(skinny_attention_i4, skinny_linear_i4, uint8_t)

/* RMSNorm of M rows of C (as RMSNorm.forward in fp32): out = w * (x / sqrt(mean(x^2) + eps)).
 * torch's rms_norm is ~10 ops; a decode step has two per layer. */
void skinny_rms_norm(const float *x, int64_t M, int64_t C, const float *w, float eps,
                     float *out) {
    for (int64_t m = 0; m < M; ++m) {
        const float *r = x + m * C;
        float squares = 0.f;
        for (int64_t c = 0; c < C; ++c) squares += r[c] * r[c];
        float scale = 1.f / sqrtf(squares / (float)C + eps);
        for (int64_t c = 0; c < C; ++c) out[m * C + c] = w[c] * (r[c] * scale);
    }
}
