// Shared declarations for the autoglm_native addon: kernel entry points (plain C++ on raw pointers),
// threading helpers and the vectorised math used by several files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <immintrin.h>
#include <omp.h>

namespace ag {

// Work (in elements) below which kernels stay single-threaded: an OpenMP fork/join costs a few
// microseconds, which is more than a small elementwise op.
constexpr int64_t kParMin = 32768;
int num_threads();
void set_num_threads(int n);
inline bool par(int64_t work) { return work >= kParMin && num_threads() > 1; }

// Deterministic sums over rows: rows are cut into chunks whose size depends on n alone (at least min_rows, more when
// n is so large that there would be over 64 partials), whichever thread takes a chunk sums it into that chunk's own
// partial, and the partials are added in chunk order, so the result is the same bits for any thread count.
inline int64_t sum_chunk_rows(int64_t n, int64_t min_rows) { return n > 64 * min_rows ? (n + 63) / 64 : min_rows; }

// ---- op codes (must match src/backend/native.ts) ----
enum Unary { U_NEG, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_TANH, U_SIGMOID, U_RELU, U_GELU, U_GELU_TANH, U_SILU, U_ABS,
  U_SQUARE, U_RECIPROCAL, U_SIGN, U_COUNT };
enum Binary { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAX, B_MIN, B_EQ, B_GT, B_GE, B_LT, B_LE, B_COUNT };
enum Reduce { R_SUM, R_MAX, R_MIN, R_COUNT };
enum DT { D_F32, D_BF16, D_F16, D_I32, D_I8, D_COUNT };

// ---- elementwise.cc ----
void fill_f32(float* dst, int64_t n, float v);
// n bytes set to `byte` by the kernel threads, in blocks of 256 KiB (one thread below kParMin floats' worth)
void fill_bytes(void* dst, int64_t n, int byte);
// gelu512.cc: the MLP activations (gelu, gelu_tanh, silu: value; value and derivative) in AVX-512 with the AVX2 path's
// bits, where the CPU has it (use_avx512)
inline bool mlp_act(int op) { return op == U_GELU || op == U_GELU_TANH || op == U_SILU; }
bool use_avx512();
void act_f32_avx512(int op, const float* x, float* y, int64_t m);
void act_grad_avx512(int op, const float* x, float* y, float* d, int64_t m);
// nn.cc's softmax exponentials in 16 lanes with the 8-lane loops' bits (gelu512.cc)
int64_t sum_exp_avx512(const float* x, int64_t i, int64_t n, float mx, float* e, __m256d* s0, __m256d* s1);
int64_t exp_avx512(const float* x, float* y, int64_t n);
void fill_i32(int32_t* dst, int64_t n, int32_t v);
void strided_copy(const void* src, int esize, const int64_t* shape, const int64_t* strides, int ndim, void* dst, const int64_t* dstrides);
void cast(const void* src, int sdt, void* dst, int ddt, int64_t n);
void unary(int op, const float* x, float* out, int64_t n);
void unary_bf16(int op, const float* x, uint16_t* out, int64_t n);  // unary, rounded to bf16
// f(x) and f'(x), rounded to bf16; x f32, or bf16 in x16 (x null)
void unary_bf16_grad(int op, const float* x, const uint16_t* x16, uint16_t* y, uint16_t* d, int64_t n);
// out = g * d; g f32 or bf16 (g16, g null), out f32 or bf16 (out16, out null)
void mul_bf16(const float* g, const uint16_t* g16, const uint16_t* d, float* out, uint16_t* out16, int64_t n);
// out[c] = sum over r of src[r][c] for a bf16 (rows, cols) matrix, in f32, rows in order
void sum_rows_bf16(const uint16_t* src, int64_t rows, int64_t cols, float* out);
void unary_backward(int op, const float* x, const float* y, const float* dy, float* dx, int64_t n);
void binary(int op, const float* a, const int64_t* as, const float* b, const int64_t* bs, const int64_t* shape, int ndim,
            float* out);
void axpby(float alpha, const float* x, float beta, const float* y, float* out, int64_t n);
void affine(const float* x, float scale, float shift, float* out, int64_t n);
void where(const float* c, const int64_t* cs, const float* a, const int64_t* as, const float* b, const int64_t* bs,
           const int64_t* shape, int ndim, float* out);
void dropout_mask(uint32_t seed, double p, float* mask, int64_t n);

// ---- reduce.cc ----
void reduce(int op, const float* x, int64_t outer, int64_t n, int64_t inner, float* out);
// x (n, inner) f32 rounded to bf16 into d16, and its column sums into o: cast and reduce(R_SUM, x, 1, n, inner), in one pass
void cast_column_sum(const float* x, int64_t n, int64_t inner, float* o, uint16_t* d16);
void argmax(const float* x, int64_t outer, int64_t n, int64_t inner, int32_t* out);
double sum_squares(const float* x, int64_t n);

// ---- nn.cc ----
void softmax(const float* x, int64_t rows, int64_t cols, float* out, bool log);
void softmax_backward(const float* y, const float* dy, int64_t rows, int64_t cols, float* dx, bool log);
void layer_norm(const float* x, const float* g, const float* b, int64_t rows, int64_t cols, float eps, float* out,
                float* mean, float* rstd);
void layer_norm_backward(const float* dy, const float* x, const float* g, const float* mean, const float* rstd,
                         int64_t rows, int64_t cols, float* dx, float* dg, float* db);
void layer_norm_backward_y(const float* dy, const float* y, const float* g, const float* b, const float* rstd,
                           int64_t rows, int64_t cols, float* dx, float* dg, float* db);
void rms_norm(const float* x, const float* g, int64_t rows, int64_t cols, float eps, float* out, float* rstd);
void rms_norm_backward_y(const float* dy, const float* y, const float* g, const float* rstd, int64_t rows, int64_t cols,
                         float* dx, float* dg);
void rms_norm_backward(const float* dy, const float* x, const float* g, const float* rstd, int64_t rows, int64_t cols,
                       float* dx, float* dg);
void gather(const float* table, const int32_t* idx, int64_t n, int64_t cols, float* out);
void scatter_add(const float* src, const int32_t* idx, int64_t n, int64_t cols, float* dtable);
void cross_entropy(const float* logits, const int32_t* t, int64_t rows, int64_t cols, int32_t ignore, float ls,
                   float* loss, float* logp);
void cross_entropy_backward(const float* logp, const int32_t* t, int64_t rows, int64_t cols, int32_t ignore, float ls,
                            const float* dloss, float* dlogits);
void cross_entropy_lse(const float* logits, const int32_t* t, int64_t rows, int64_t cols, int32_t ignore, float* loss,
                       float* lse);
void cross_entropy_backward_lse(const float* logits, const float* lse, const int32_t* t, int64_t rows, int64_t cols,
                                int32_t ignore, const float* dloss, float* dlogits);
void cross_entropy_grad_bf16(float* logits, const int32_t* t, int64_t rows, int64_t cols, int32_t ignore, float ls,
                             const float* dloss, float* loss, uint16_t* dl);
void rope(const float* x, const float* cos, const float* sin, int64_t rows, int64_t T, int64_t D, int64_t rot,
          bool inverse, float* out);

// ---- matmul.cc ----
struct MatmulP {
  int64_t batch, M, N, K, strideA, strideB;
  bool transA, transB;
  float alpha, beta;
  // (N) added to every row of out: out = alpha * op(a) @ op(b) + bias. Only with beta = 0.
  const float* bias = nullptr;
};
void matmul_f32(const float* a, const float* b, float* out, const MatmulP& p);
// skinny.cc: one product (no batch) with a dimension <= 16 and the others large; false = not handled, use sgemm.
bool skinny_sgemm(const float* a, const float* b, float* c, const MatmulP& p);
void matmul_bf16(const uint16_t* a, const uint16_t* b, float* out, const MatmulP& p);
// matmul_bf16 with a bf16 output (rounded to nearest even), beta = 0
void matmul_bf16_to_bf16(const uint16_t* a, const uint16_t* b, uint16_t* out, const MatmulP& p);
// matmul_bf16 of B*H dense products (p.strideA = M*K, p.strideB = K*N, no bias, beta = 0) with the output (B, H, M, N)
// written at strides os (last dimension contiguous) by oneDNN itself; false where it does not run (no oneDNN bf16
// path, AMX's pre-filled outputs, a layout the primitive rejects): the caller multiplies densely and scatters.
bool matmul_bf16_out_strided(const uint16_t* a, const uint16_t* b, float* out, const MatmulP& p, int64_t B, int64_t H,
                             const int64_t* os);
enum class LowpKind { bf16, i8, nf4 };
// out = alpha * op(a) @ op(b) + beta * out for f32 a and one low-precision b (strideB ignored: b is shared by the
// batch); i8 values are multiplied by scales[stored row] (null: 1) when widened; nf4 codes (two per byte, high
// nibble first) index the NF4 levels, times scales[element / 64] (the absmax of each block, src/backend/nf4.ts).
void matmul_lowp(const float* a, const void* b, LowpKind kind, const float* scales, float* out, const MatmulP& p);
// nf4.cc: NF4 codes (two a byte, high nibble first) and absmax per 64 of w[0..n): -1, or the index of a non-finite
// element; and dst[i] = the value of element e0 + i (i < n) of such a weight.
int64_t quantize_nf4(const float* w, int64_t n, uint8_t* codes, float* absmax);
void widen_nf4(const uint8_t* q, const float* absmax, int64_t e0, int64_t n, float* dst);
const char* bf16_path();  // "onednn" or "sgemm"
// The CPU runs AVX512-BF16 dot products (vdpbf16ps) and oneDNN may use them (ONEDNN_MAX_CPU_ISA below
// AVX512_CORE_BF16 turns our own bf16 dot kernels off with oneDNN's, so that tests reach the AVX2 paths there).
bool bf16_dot_isa();
const char* onednn_isa();
const char* blas_config();
const char* blas_core();

// ---- optim.cc ----
void adamw8bit(float* p, const float* g, uint8_t* c1, uint8_t* c2, float* a1, float* a2, const float* map1, const float* map2,
               int64_t n, double lr, double b1, double b2, double eps, double wd, double corr1, double corr2, double gs);
void adamw(float* p, const float* g, float* m, float* v, int64_t n, double lr, double b1, double b2, double eps,
           double wd, double step, double gs, uint16_t* out16 = nullptr);
void sgd(float* p, const float* g, float* buf, int64_t n, double lr, double mom, double damp, bool nesterov, double wd,
         bool first, double gs, uint16_t* out16 = nullptr);

// ---- scalar helpers shared by files ----
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((u >> 16) & 0x8000u) | 0x7fc0u);  // NaN -> sign | 0x7fc0
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
void bf16_to_f32_n(const uint16_t* src, float* dst, int64_t n);
void round_bf16_n(const float* src, float* dst, int64_t n);
void cast_rows_bf16(const float* src, int64_t rows, int64_t cols, uint16_t* dst, int64_t ld);

// ---- lora.cc ----
// An activation's bf16 rows with LoRA's rank-r product beside them (and, optionally, B's gradient), in one pass.
constexpr int64_t kLoraRowsMaxRank = 16;
void lora_rows(const void* src, bool srcBf16, int64_t rows, int64_t cols, int64_t ld, uint16_t* dst, const uint16_t* F,
               int64_t r, float scale, uint16_t* h, const uint16_t* H, float* gH);
// out (r, cols) = X[:, :cols]^T H, X (rows, ld) and H (rows, r) bf16 (A's gradient from x's kept copy).
void lora_outer(const uint16_t* X, int64_t rows, int64_t cols, int64_t ld, const uint16_t* H, int64_t r, float* out);

}  // namespace ag
