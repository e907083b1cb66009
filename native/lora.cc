// LoRA's rank-r products in the pass that makes an activation's bf16 copy (src/tensor/ops/lora-linear.ts).
//
// Where LoRA's factors ride along the base product ([x | s h] [W | B]^T forward, [g | dh] [W; A] backward), the rows
// of x (or of the output gradient g) are cast to bf16 with r columns beside them, and those r columns hold a rank-r
// product of the same rows: s h = s x A^T forward, dh = s g B backward. As products of their own these are skinny
// (N = r) passes over a whole activation, and oneDNN's and OpenBLAS's kernels, which pack panels sized for large
// products, run them far under memory bandwidth (cls-lora, 2048 rows: 0.2 ms for a 1 MB operand). Here each row's r
// dot products are taken while the row is in L1, right after its cast. The backward pass also needs B's gradient
// g^T (s h) (M = nOut, N = r, K = rows: another skinny pass over g), accumulated in the same pass.
//
// lora_rows(src (rows, cols) f32 or bf16, dst (rows, ld) bf16 with ld >= cols + r, F (r, cols) bf16, scale,
//           h (rows, r) bf16, H (rows, r) bf16 or null, gH (cols, r) f32 or null), r <= kLoraRowsMaxRank:
//   dst[i, :cols] = bf16(src[i])       (a copy when src is bf16 already)
//   t = scale * dst[i, :cols] F^T      (the bf16 values' products accumulated in f32, as a bf16 product's are)
//   dst[i, cols:cols + r] = h[i] = bf16(t)
//   dst[i, cols + r:ld] = 0            (the caller pads rows to whole cache lines: see lora-linear.ts, paddedWidth)
//   gH = dst[:, :cols]^T H             (H given: a sum over rows in chunks whose size depends on rows alone, added in
//                                       chunk order, so the same bits for any thread count; see sum_chunk_rows)
// lora_outer(X (rows, ld) bf16, H (rows, r) bf16) = X[:, :cols]^T H, (r, cols): A's gradient dh^T x from x's kept copy,
// the other skinny product of the backward pass (M = r), with the same chunks and kernels as gH.
// On CPUs with AVX512-BF16 the products are vdpbf16ps (pairs of bf16 products added into f32, as oneDNN's AVX512-BF16
// kernels compute them; the instruction treats denormal inputs as zero); elsewhere the bf16 values are widened and
// multiplied with FMAs.
#include <immintrin.h>
#include <cstring>
#include <type_traits>
#include <vector>
#include "args.h"
#include "vecmath.h"

namespace ag {
namespace {

inline __m256 widen8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}

inline float hsum8(__m256 v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

inline void copy_row(const float* s, uint16_t* d, int64_t n) { f32_to_bf16_row(s, d, n); }
inline void copy_row(const uint16_t* s, uint16_t* d, int64_t n) { std::memcpy(d, s, (size_t)n * sizeof(uint16_t)); }

// ---- AVX2 + FMA (any x86-64-v3 CPU): bf16 values widened to f32 (exact), FMAs ----

// t[j] = row . F[j] (Fw: F widened, (r, cols)) for one bf16 row d; h[j] = bf16(scale t[j]), also after the row.
template <int r>
void project_row_avx2(uint16_t* d, int64_t cols, const float* Fw, float scale, uint16_t* h) {
  const int64_t cv = cols / 8 * 8;
  __m256 t[r];
#pragma GCC unroll 16
  for (int j = 0; j < r; j++) t[j] = _mm256_setzero_ps();
  for (int64_t c = 0; c < cv; c += 8) {
    const __m256 x = widen8(d + c);
#pragma GCC unroll 16
    for (int j = 0; j < r; j++) t[j] = _mm256_fmadd_ps(x, _mm256_loadu_ps(Fw + j * cols + c), t[j]);
  }
#pragma GCC unroll 16
  for (int j = 0; j < r; j++) {
    float v = hsum8(t[j]);
    for (int64_t c = cv; c < cols; c++) v += bf16_to_f32(d[c]) * Fw[j * cols + c];
    d[cols + j] = h[j] = f32_to_bf16(scale * v);
  }
}

// acc (r, cols) = rows [i0, i1) of dst (ld apart)^T H, a block of 8 columns at a time with its r sums in registers,
// rows in order.
template <int r>
void outer_avx2(const uint16_t* dst, int64_t ld, int64_t cols, const uint16_t* H, int64_t i0, int64_t i1, float* acc) {
  const int64_t cv = cols / 8 * 8;
  std::vector<float> Hw((size_t)((i1 - i0) * r));
  bf16_to_f32_n(H + i0 * r, Hw.data(), (i1 - i0) * r);
  for (int64_t c = 0; c < cv; c += 8) {
    __m256 s[r];
#pragma GCC unroll 16
    for (int j = 0; j < r; j++) s[j] = _mm256_setzero_ps();
    for (int64_t i = i0; i < i1; i++) {
      const __m256 x = widen8(dst + i * ld + c);
      const float* hr = Hw.data() + (i - i0) * r;
#pragma GCC unroll 16
      for (int j = 0; j < r; j++) s[j] = _mm256_fmadd_ps(x, _mm256_broadcast_ss(hr + j), s[j]);
    }
#pragma GCC unroll 16
    for (int j = 0; j < r; j++) _mm256_storeu_ps(acc + j * cols + c, s[j]);
  }
  for (int64_t c = cv; c < cols; c++) {
#pragma GCC unroll 16
    for (int j = 0; j < r; j++) {
      float v = 0.f;
      for (int64_t i = i0; i < i1; i++) v += bf16_to_f32(dst[i * ld + c]) * Hw[(i - i0) * r + j];
      acc[j * cols + c] = v;
    }
  }
}

// ---- AVX512-BF16: vdpbf16ps, 32 bf16 products a pair at a time into 16 f32 sums ----
#define AG_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

AG_BF16_TARGET inline __m512 dot_bf16(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

template <int r>
AG_BF16_TARGET void project_row_bf16(uint16_t* d, int64_t cols, const uint16_t* F, float scale, uint16_t* h) {
  __m512 t[r];
#pragma GCC unroll 16
  for (int j = 0; j < r; j++) t[j] = _mm512_setzero_ps();
  for (int64_t c = 0; c < cols; c += 32) {
    const __mmask32 m = cols - c >= 32 ? ~(__mmask32)0 : (__mmask32)((1u << (cols - c)) - 1);
    const __m512i x = _mm512_maskz_loadu_epi16(m, d + c);  // the missing tail is zeros: zero products
#pragma GCC unroll 16
    for (int j = 0; j < r; j++) t[j] = dot_bf16(t[j], x, _mm512_maskz_loadu_epi16(m, F + j * cols + c));
  }
#pragma GCC unroll 16
  for (int j = 0; j < r; j++) d[cols + j] = h[j] = f32_to_bf16(scale * _mm512_reduce_add_ps(t[j]));
}

// acc (r, cols) = rows [i0, i1) of dst^T H: 16 columns at a time with their r sums in registers, rows a pair at a time
// (row i's and row i+1's values interleaved against the pair (H[i, j], H[i+1, j])).
template <int r>
AG_BF16_TARGET void outer_bf16(const uint16_t* dst, int64_t ld, int64_t cols, const uint16_t* H, int64_t i0, int64_t i1,
                               float* acc) {
  const int64_t n = i1 - i0, pairs = (n + 1) / 2;
  std::vector<uint32_t> Hp((size_t)(pairs * r));  // (H[i, j], H[i+1, j]) as one 32-bit pair, 0 past the last row
  for (int64_t p = 0; p < pairs; p++)
#pragma GCC unroll 16
    for (int j = 0; j < r; j++) {
      const int64_t i = i0 + 2 * p;
      Hp[p * r + j] = (uint32_t)H[i * r + j] | (i + 1 < i1 ? (uint32_t)H[(i + 1) * r + j] << 16 : 0u);
    }
  alignas(64) static const uint16_t kIdx[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  const __m512i idx = _mm512_load_si512(kIdx);
  for (int64_t c = 0; c < cols; c += 16) {
    const __mmask16 m = cols - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - c)) - 1);
    __m512 s[r];
#pragma GCC unroll 16
    for (int j = 0; j < r; j++) s[j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < pairs; p++) {
      const int64_t i = i0 + 2 * p;
      const __m512i a = _mm512_castsi256_si512(_mm256_maskz_loadu_epi16(m, dst + i * ld + c));
      const __m512i b = i + 1 < i1 ? _mm512_castsi256_si512(_mm256_maskz_loadu_epi16(m, dst + (i + 1) * ld + c))
                                   : _mm512_setzero_si512();
      const __m512i x = _mm512_permutex2var_epi16(a, idx, b);
      const uint32_t* hp = Hp.data() + p * r;
#pragma GCC unroll 16
      for (int j = 0; j < r; j++) s[j] = dot_bf16(s[j], x, _mm512_set1_epi32((int)hp[j]));
    }
#pragma GCC unroll 16
    for (int j = 0; j < r; j++) _mm512_mask_storeu_ps(acc + j * cols + c, m, s[j]);
  }
}

// out (n) = the chunks' partials (nchunk blocks of n) added in chunk order.
void sum_parts(const std::vector<float>& parts, int64_t nchunk, int64_t n, float* out) {
  std::memcpy(out, parts.data(), (size_t)n * sizeof(float));
  for (int64_t ch = 1; ch < nchunk; ch++) {
    const float* pc = parts.data() + (size_t)ch * n;
    for (int64_t k = 0; k < n; k++) out[k] += pc[k];
  }
}

// Calls fn(std::integral_constant<int, r>) for r in 1..kLoraRowsMaxRank: the kernels keep their r sums in registers.
template <typename Fn>
void with_rank(int64_t r, Fn&& fn) {
  switch (r) {
#define AG_RANK(n) case n: fn(std::integral_constant<int, n>{}); break;
    AG_RANK(1) AG_RANK(2) AG_RANK(3) AG_RANK(4) AG_RANK(5) AG_RANK(6) AG_RANK(7) AG_RANK(8)
    AG_RANK(9) AG_RANK(10) AG_RANK(11) AG_RANK(12) AG_RANK(13) AG_RANK(14) AG_RANK(15) AG_RANK(16)
#undef AG_RANK
  }
}

template <typename S, int r>
void lora_rows_t(const S* src, int64_t rows, int64_t cols, int64_t ld, uint16_t* dst, const uint16_t* F, float scale,
                 uint16_t* h, const uint16_t* H, float* gH) {
  const bool bf16 = bf16_dot_isa();
  std::vector<float> Fw(bf16 ? 0 : (size_t)(r * cols));
  if (!bf16) bf16_to_f32_n(F, Fw.data(), r * cols);
  // Rows in chunks (each chunk's outer product summed into its own partial): each row is cast and projected while it
  // is in L1, then the chunk's outer product is taken while it is in L2.
  const int64_t chunk = sum_chunk_rows(rows, 128);
  const int64_t nchunk = std::max<int64_t>(1, (rows + chunk - 1) / chunk);
  std::vector<float> parts(H ? (size_t)(nchunk * r * cols) : 0);
#pragma omp parallel for schedule(static) if (nchunk > 1 && par(rows * ld))
  for (int64_t ch = 0; ch < nchunk; ch++) {
    const int64_t c0 = ch * chunk, c1 = std::min(rows, c0 + chunk);
    for (int64_t i = c0; i < c1; i++) {
      uint16_t* d = dst + i * ld;
      copy_row(src + i * cols, d, cols);
      if (bf16) project_row_bf16<r>(d, cols, F, scale, h + i * r);
      else project_row_avx2<r>(d, cols, Fw.data(), scale, h + i * r);
      if (ld > cols + r) std::memset(d + cols + r, 0, (size_t)(ld - cols - r) * sizeof(uint16_t));
    }
    if (!H) continue;
    float* acc = parts.data() + (size_t)ch * r * cols;
    if (bf16) outer_bf16<r>(dst, ld, cols, H, c0, c1, acc);
    else outer_avx2<r>(dst, ld, cols, H, c0, c1, acc);
  }
  if (!H) return;
  std::vector<float> sum((size_t)(r * cols));
  sum_parts(parts, nchunk, r * cols, sum.data());
  for (int64_t c = 0; c < cols; c++) {
#pragma GCC unroll 16
    for (int j = 0; j < r; j++) gH[c * r + j] = sum[(size_t)j * cols + c];
  }
}

// out (r, cols) = X[:, :cols]^T H for X (rows, ld) and H (rows, r), both bf16: A's gradient dh^T x from x's copy.
template <int r>
void lora_outer_t(const uint16_t* X, int64_t rows, int64_t cols, int64_t ld, const uint16_t* H, float* out) {
  const bool bf16 = bf16_dot_isa();
  const int64_t chunk = sum_chunk_rows(rows, 128);
  const int64_t nchunk = std::max<int64_t>(1, (rows + chunk - 1) / chunk);
  std::vector<float> parts((size_t)(nchunk * r * cols));
#pragma omp parallel for schedule(static) if (nchunk > 1 && par(rows * cols))
  for (int64_t ch = 0; ch < nchunk; ch++) {
    const int64_t c0 = ch * chunk, c1 = std::min(rows, c0 + chunk);
    float* acc = parts.data() + (size_t)ch * r * cols;
    // X is cold here (x's copy from the forward pass): the chunk's rows are fetched in order first, as a stream the
    // hardware prefetcher follows, for the column blocks below to find them in L2
    for (int64_t i = c0; i < c1; i++)
      for (int64_t c = 0; c < cols; c += 32) _mm_prefetch((const char*)(X + i * ld + c), _MM_HINT_T1);
    if (bf16) outer_bf16<r>(X, ld, cols, H, c0, c1, acc);
    else outer_avx2<r>(X, ld, cols, H, c0, c1, acc);
  }
  sum_parts(parts, nchunk, r * cols, out);
}

}  // namespace

void lora_rows(const void* src, bool srcBf16, int64_t rows, int64_t cols, int64_t ld, uint16_t* dst, const uint16_t* F,
               int64_t r, float scale, uint16_t* h, const uint16_t* H, float* gH) {
  with_rank(r, [&](auto R) {
    constexpr int kR = decltype(R)::value;
    if (srcBf16) lora_rows_t<uint16_t, kR>((const uint16_t*)src, rows, cols, ld, dst, F, scale, h, H, gH);
    else lora_rows_t<float, kR>((const float*)src, rows, cols, ld, dst, F, scale, h, H, gH);
  });
}

void lora_outer(const uint16_t* X, int64_t rows, int64_t cols, int64_t ld, const uint16_t* H, int64_t r, float* out) {
  with_rank(r, [&](auto R) { lora_outer_t<decltype(R)::value>(X, rows, cols, ld, H, out); });
}

// loraRows(src Float32Array | Uint16Array (bf16), rows, cols, dst Uint16Array, F Uint16Array, r, scale,
//          h Uint16Array, H Uint16Array | null, gH Float32Array | null, ld)
KERNEL(JsLoraRows) {
  Args a(info, "loraRows", 11);
  size_t ns, nd, nf, nh, nH, ng;
  int es = 0;
  const void* src = a.arr(0, -1, &ns, false, &es);
  a.need(es == 4 || es == 2, "src must be a Float32Array or a Uint16Array of bf16 values");
  const int64_t rows = a.integer(1), cols = a.integer(2), r = a.integer(5);
  uint16_t* dst = (uint16_t*)a.arr(3, napi_uint16_array, &nd);
  const uint16_t* F = (const uint16_t*)a.arr(4, napi_uint16_array, &nf);
  const float scale = (float)a.num(6);
  uint16_t* h = (uint16_t*)a.arr(7, napi_uint16_array, &nh);
  const uint16_t* H = (const uint16_t*)a.arr(8, napi_uint16_array, &nH, true);
  float* gH = a.f32(9, &ng, true);
  const int64_t ld = a.integer(10);
  a.need(r >= 1 && r <= kLoraRowsMaxRank, "r must be 1 to " + std::to_string(kLoraRowsMaxRank));
  a.need((int64_t)ns >= rows * cols, "src is smaller than rows x cols");
  a.need(ld >= cols + r, "ld is smaller than cols + r");
  a.need((int64_t)nd >= rows * ld, "dst is smaller than rows x ld");
  a.need((int64_t)nf >= r * cols, "F is smaller than r x cols");
  a.need((int64_t)nh >= rows * r, "h is smaller than rows x r");
  a.need(!H == !gH, "H and gH come together");
  a.need(!H || ((int64_t)nH >= rows * r && (int64_t)ng >= cols * r), "H must hold rows x r and gH cols x r elements");
  lora_rows(src, es == 2, rows, cols, ld, dst, F, r, scale, h, H, gH);
  UNDEF;
}

// loraOuter(X Uint16Array (rows, ld), rows, cols, ld, H Uint16Array (rows, r), r, out Float32Array (r, cols))
KERNEL(JsLoraOuter) {
  Args a(info, "loraOuter", 7);
  size_t nx, nH, no;
  const uint16_t* X = (const uint16_t*)a.arr(0, napi_uint16_array, &nx);
  const int64_t rows = a.integer(1), cols = a.integer(2), ld = a.integer(3), r = a.integer(5);
  const uint16_t* H = (const uint16_t*)a.arr(4, napi_uint16_array, &nH);
  float* out = a.f32(6, &no);
  a.need(r >= 1 && r <= kLoraRowsMaxRank, "r must be 1 to " + std::to_string(kLoraRowsMaxRank));
  a.need(ld >= cols, "ld is smaller than cols");
  a.need((int64_t)nx >= rows * ld, "X is smaller than rows x ld");
  a.need((int64_t)nH >= rows * r, "H is smaller than rows x r");
  a.need((int64_t)no >= r * cols, "out is smaller than r x cols");
  lora_outer(X, rows, cols, ld, H, r, out);
  UNDEF;
}

void register_lora(Napi::Env env, Napi::Object exports) {
  exports.Set("loraRows", Napi::Function::New(env, JsLoraRows, "loraRows"));
  exports.Set("loraOuter", Napi::Function::New(env, JsLoraOuter, "loraOuter"));
}

}  // namespace ag
