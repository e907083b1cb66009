// fill, stridedCopy, cast, unary (+backward), binary/where with broadcasting, axpby, affine, dropoutMask.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>
#include <limits>
#include "common.h"
#include "vecmath.h"

namespace ag {

namespace {
// Runs body(i0, i1) over [0, n) in blocks, in parallel when n is large enough.
template <class F>
inline void blocks(int64_t n, F body, int64_t work_per_elem = 1) {
  if (!par(n * work_per_elem)) { body(0, n); return; }
  const int64_t B = 8192;
  const int64_t nb = (n + B - 1) / B;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; b++) body(b * B, std::min(n, (b + 1) * B));
}
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kKappa = 0.044715f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;
}  // namespace

void fill_bytes(void* dst, int64_t n, int byte) {
  char* d = static_cast<char*>(dst);
  if (!par(n / (int64_t)sizeof(float))) { std::memset(d, byte, (size_t)n); return; }
  const int64_t B = (int64_t)1 << 18;
  const int64_t nb = (n + B - 1) / B;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; b++) std::memset(d + b * B, byte, (size_t)(std::min(n, (b + 1) * B) - b * B));
}
// +0.0f is all zero bytes: memset, in parallel
void fill_f32(float* d, int64_t n, float v) {
  if (v == 0.0f && !std::signbit(v)) return fill_bytes(d, n * (int64_t)sizeof(float), 0);
  blocks(n, [&](int64_t i0, int64_t i1) { for (int64_t i = i0; i < i1; i++) d[i] = v; });
}
void fill_i32(int32_t* d, int64_t n, int32_t v) { blocks(n, [&](int64_t i0, int64_t i1) { for (int64_t i = i0; i < i1; i++) d[i] = v; }); }

// ---- stridedCopy ------------------------------------------------------------------------------------------
template <class T>
static void strided_copy_t(const T* src, const int64_t* shape, const int64_t* strides, int nd, T* dst, const int64_t* dstrides) {
  if (nd == 0) { dst[0] = src[0]; return; }
  int64_t inner = shape[nd - 1], is = strides[nd - 1];
  int64_t ds = dstrides ? dstrides[nd - 1] : 1;
  int64_t rows = 1;
  for (int d = 0; d < nd - 1; d++) rows *= shape[d];
  if (rows * inner == 0) return;
  auto row = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      int64_t off = 0, doff = 0, rem = r;
      for (int d = nd - 2; d >= 0; d--) {
        const int64_t i = rem % shape[d];
        off += i * strides[d];
        doff += i * (dstrides ? dstrides[d] : 0);
        rem /= shape[d];
      }
      const T* s = src + off;
      T* o = dstrides ? dst + doff : dst + r * inner;
      if (is == 1 && ds == 1) std::memcpy(o, s, inner * sizeof(T));
      else for (int64_t j = 0; j < inner; j++) o[j * ds] = s[j * is];
    }
  };
  if (!par(rows * inner) || rows < 2) row(0, rows);
  else {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) row(r, r + 1);
  }
}
void strided_copy(const void* src, int es, const int64_t* shape, const int64_t* strides, int nd, void* dst, const int64_t* dstrides) {
  if (es == 4) strided_copy_t((const uint32_t*)src, shape, strides, nd, (uint32_t*)dst, dstrides);
  else if (es == 2) strided_copy_t((const uint16_t*)src, shape, strides, nd, (uint16_t*)dst, dstrides);
  else strided_copy_t((const uint8_t*)src, shape, strides, nd, (uint8_t*)dst, dstrides);
}

// ---- cast ---------------------------------------------------------------------------------------------------
// float -> integer: truncate toward zero, saturate, NaN -> 0 (the portable backend's rule).
static inline int32_t f32_to_i32(float x) {
  if (x != x) return 0;
  if (x <= -2147483648.0f) return INT32_MIN;
  if (x >= 2147483647.0f) return INT32_MAX;
  return (int32_t)x;
}
static inline int8_t f32_to_i8(float x) {
  if (x != x) return 0;
  if (x <= -128.0f) return -128;
  if (x >= 127.0f) return 127;
  return (int8_t)(int32_t)x;
}

void bf16_to_f32_n(const uint16_t* s, float* d, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) { bf16_to_f32_row(s + i0, d + i0, i1 - i0); });
}
// 16 at a time (vecmath.h), with the scalar rule's bits
static void f32_to_bf16_n(const float* s, uint16_t* d, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) { f32_to_bf16_row(s + i0, d + i0, i1 - i0); });
}
// f32 values rounded to bf16 precision (f32_to_bf16's rule) and kept in f32 storage: the bits of cast to bf16 then
// widened, in one pass (bf16 operands of the widening product path, without a bf16 buffer between)
void round_bf16_n(const float* s, float* d, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) { round_bf16_row(s + i0, d + i0, i1 - i0); });
}
// The rows of an f32 (rows, cols) matrix cast to bf16 (f32_to_bf16's rule) into rows of `ld` elements, the
// columns past `cols` set to zero: an activation's bf16 copy with room for more columns beside it (LoRA's product
// with its rank-r factors appended, src/tensor/ops/lora-linear.ts), in the one pass the plain cast makes.
void cast_rows_bf16(const float* s, int64_t rows, int64_t cols, uint16_t* d, int64_t ld) {
#pragma omp parallel for schedule(static) if (par(rows * cols))
  for (int64_t r = 0; r < rows; r++) {
    f32_to_bf16_row(s + r * cols, d + r * ld, cols);
    for (int64_t c = cols; c < ld; c++) d[r * ld + c] = 0;
  }
}
static void f32_to_f16_n(const float* s, uint16_t* d, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8)
      _mm_storeu_si128((__m128i*)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < i1; i++) d[i] = _cvtss_sh(s[i], _MM_FROUND_TO_NEAREST_INT);
  });
}
static void f16_to_f32_n(const uint16_t* s, float* d, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(s + i))));
    for (; i < i1; i++) d[i] = _cvtsh_ss(s[i]);
  });
}
static inline float load_f(const void* p, int dt, int64_t i) {
  switch (dt) {
    case D_F32: return ((const float*)p)[i];
    case D_BF16: return bf16_to_f32(((const uint16_t*)p)[i]);
    case D_F16: return _cvtsh_ss(((const uint16_t*)p)[i]);
    case D_I32: return (float)((const int32_t*)p)[i];
    default: return (float)((const int8_t*)p)[i];
  }
}
static inline void store_f(void* p, int dt, int64_t i, float v) {
  switch (dt) {
    case D_F32: ((float*)p)[i] = v; break;
    case D_BF16: ((uint16_t*)p)[i] = f32_to_bf16(v); break;
    case D_F16: ((uint16_t*)p)[i] = _cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT); break;
    case D_I32: ((int32_t*)p)[i] = f32_to_i32(v); break;
    default: ((int8_t*)p)[i] = f32_to_i8(v); break;
  }
}
static const int kSize[D_COUNT] = {4, 2, 2, 4, 1};
void cast(const void* s, int sdt, void* d, int ddt, int64_t n) {
  if (sdt == ddt) { std::memcpy(d, s, n * kSize[sdt]); return; }
  if (sdt == D_F32 && ddt == D_BF16) return f32_to_bf16_n((const float*)s, (uint16_t*)d, n);
  if (sdt == D_BF16 && ddt == D_F32) return bf16_to_f32_n((const uint16_t*)s, (float*)d, n);
  if (sdt == D_F32 && ddt == D_F16) return f32_to_f16_n((const float*)s, (uint16_t*)d, n);
  if (sdt == D_F16 && ddt == D_F32) return f16_to_f32_n((const uint16_t*)s, (float*)d, n);
  if (sdt == D_I32 && ddt == D_I8) {  // clamp
    blocks(n, [&](int64_t i0, int64_t i1) { for (int64_t i = i0; i < i1; i++) { const int32_t v = ((const int32_t*)s)[i]; ((int8_t*)d)[i] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v); } });
    return;
  }
  if (sdt == D_I8 && ddt == D_I32) {
    blocks(n, [&](int64_t i0, int64_t i1) { for (int64_t i = i0; i < i1; i++) ((int32_t*)d)[i] = ((const int8_t*)s)[i]; });
    return;
  }
  // everything else goes through float32 (i32 -> f32 rounds to nearest even)
  blocks(n, [&](int64_t i0, int64_t i1) { for (int64_t i = i0; i < i1; i++) store_f(d, ddt, i, load_f(s, sdt, i)); });
}

// ---- unary --------------------------------------------------------------------------------------------------
static inline __m256 vgelu(__m256 x) { return _mm256_mul_ps(x, vnormcdf(x)); }
// gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
static inline __m256 vgelu_tanh_s(__m256 x) {
  __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  __m256 u2 = _mm256_mul_ps(_mm256_fmadd_ps(x3, v8(kKappa), x), v8(2.0f * kSqrt2OverPi));
  return vsigmoid(u2);
}

void unary(int op, const float* x, float* o, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) {
    const float* xs = x + i0;
    float* os = o + i0;
    const int64_t m = i1 - i0;
    if (mlp_act(op) && use_avx512()) return act_f32_avx512(op, xs, os, m);
    switch (op) {
      case U_NEG: for (int64_t i = 0; i < m; i++) os[i] = -xs[i]; break;
      case U_EXP: vmap(xs, os, m, vexp); break;
      case U_LOG: for (int64_t i = 0; i < m; i++) os[i] = std::log(xs[i]); break;
      case U_SQRT: for (int64_t i = 0; i < m; i++) os[i] = std::sqrt(xs[i]); break;
      case U_RSQRT: for (int64_t i = 0; i < m; i++) os[i] = 1.0f / std::sqrt(xs[i]); break;
      case U_TANH: vmap(xs, os, m, vtanh); break;
      case U_SIGMOID: vmap(xs, os, m, vsigmoid); break;
      case U_RELU: for (int64_t i = 0; i < m; i++) os[i] = (xs[i] > 0.0f || xs[i] != xs[i]) ? xs[i] : 0.0f; break;
      case U_GELU: vmap(xs, os, m, vgelu); break;
      case U_GELU_TANH: vmap(xs, os, m, [](__m256 v) { return _mm256_mul_ps(v, vgelu_tanh_s(v)); }); break;
      case U_SILU: vmap(xs, os, m, [](__m256 v) { return _mm256_mul_ps(v, vsigmoid(v)); }); break;
      case U_ABS: for (int64_t i = 0; i < m; i++) os[i] = std::fabs(xs[i]); break;
      case U_SQUARE: for (int64_t i = 0; i < m; i++) os[i] = xs[i] * xs[i]; break;
      case U_RECIPROCAL: for (int64_t i = 0; i < m; i++) os[i] = 1.0f / xs[i]; break;
      case U_SIGN:
        for (int64_t i = 0; i < m; i++) { float v = xs[i]; os[i] = v > 0.0f ? 1.0f : v < 0.0f ? -1.0f : v; }
        break;
    }
  }, op == U_GELU || op == U_GELU_TANH ? 4 : 1);
}

// unary's values rounded to bf16 (f32_to_bf16's rule): the same bits as unary then cast, without the f32 buffer
void unary_bf16(int op, const float* x, uint16_t* o, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) {
    alignas(32) float t[1024];
    for (int64_t j = i0; j < i1; j += 1024) {
      const int64_t m = std::min<int64_t>(1024, i1 - j);
      unary(op, x + j, t, m);  // serial: below the parallel threshold
      f32_to_bf16_row(t, o + j, m);
    }
  }, op == U_GELU || op == U_GELU_TANH ? 4 : 1);
}

// The activations' derivatives from their costly part, shared by vderiv and vact_grad: gelu's from e =
// vnormcdf_tail_exp(x) and Phi(x); silu's and gelu_tanh's from their sigmoid s.
static inline __m256 dgelu(__m256 x, __m256 e, __m256 phi) {  // Phi(x) + x phi(x)
  return _mm256_fmadd_ps(_mm256_mul_ps(x, e), v8(kInvSqrt2Pi), phi);
}
static inline __m256 dsilu(__m256 x, __m256 s) {  // s (1 + x (1 - s))
  return _mm256_mul_ps(s, _mm256_fmadd_ps(x, _mm256_sub_ps(v8(1.0f), s), v8(1.0f)));
}
static inline __m256 dgelu_tanh(__m256 x, __m256 s) {  // s + 2 x s (1 - s) sqrt(2/pi) (1 + 3k x^2), s = sigmoid(2u)
  __m256 du = _mm256_mul_ps(v8(kSqrt2OverPi), _mm256_fmadd_ps(_mm256_mul_ps(x, x), v8(3.0f * kKappa), v8(1.0f)));
  __m256 t2 = _mm256_mul_ps(_mm256_mul_ps(v8(2.0f), x), _mm256_mul_ps(s, _mm256_sub_ps(v8(1.0f), s)));
  return _mm256_fmadd_ps(t2, du, s);
}

// f'(x) for the activations whose gradient unary_backward computes from x (tanh, sigmoid, gelu, gelu_tanh, silu)
static inline __m256 vderiv(int op, __m256 xv) {
  if (op == U_TANH) {  // 1 - tanh^2 = 4e / (1 + e)^2, e = exp(-2|x|): no cancellation for large |x|
    __m256 e = vexp(_mm256_mul_ps(v8(-2.0f), vabs(xv)));
    __m256 q = _mm256_add_ps(v8(1.0f), e);
    return _mm256_div_ps(_mm256_mul_ps(v8(4.0f), e), _mm256_mul_ps(q, q));
  } else if (op == U_SIGMOID) {  // s (1 - s) = e / (1 + e)^2, e = exp(-|x|)
    __m256 e = vexp(_mm256_sub_ps(v8(0.0f), vabs(xv)));
    __m256 q = _mm256_add_ps(v8(1.0f), e);
    return _mm256_div_ps(e, _mm256_mul_ps(q, q));
  } else if (op == U_GELU) {
    const __m256 e = vnormcdf_tail_exp(xv);
    return dgelu(xv, e, vnormcdf_e(xv, e));
  } else if (op == U_SILU) {
    return dsilu(xv, vsigmoid(xv));
  } else {
    return dgelu_tanh(xv, vgelu_tanh_s(xv));
  }
}

void unary_backward(int op, const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) {
    const float *xs = x + i0, *ys = y + i0, *gs = dy + i0;
    float* ds = dx + i0;
    const int64_t m = i1 - i0;
    switch (op) {
      case U_NEG: for (int64_t i = 0; i < m; i++) ds[i] = -gs[i]; break;
      case U_EXP: for (int64_t i = 0; i < m; i++) ds[i] = gs[i] * ys[i]; break;
      case U_LOG: for (int64_t i = 0; i < m; i++) ds[i] = gs[i] / xs[i]; break;
      case U_SQRT: for (int64_t i = 0; i < m; i++) ds[i] = gs[i] * 0.5f / ys[i]; break;
      case U_RSQRT: for (int64_t i = 0; i < m; i++) ds[i] = gs[i] * -0.5f * ys[i] * ys[i] * ys[i]; break;
      case U_RELU: for (int64_t i = 0; i < m; i++) ds[i] = xs[i] > 0.0f ? gs[i] : 0.0f; break;
      case U_ABS:
        for (int64_t i = 0; i < m; i++) ds[i] = xs[i] > 0.0f ? gs[i] : xs[i] < 0.0f ? -gs[i] : 0.0f;
        break;
      case U_SQUARE: for (int64_t i = 0; i < m; i++) ds[i] = gs[i] * 2.0f * xs[i]; break;
      case U_RECIPROCAL: for (int64_t i = 0; i < m; i++) ds[i] = -gs[i] * ys[i] * ys[i]; break;
      case U_SIGN: for (int64_t i = 0; i < m; i++) ds[i] = 0.0f; break;
      default: {
        // tanh, sigmoid, gelu, gelu_tanh, silu (from x): vectorised through a small stack buffer
        alignas(32) float t[8];
        for (int64_t i = 0; i < m; i += 8) {
          const int64_t k = std::min<int64_t>(8, m - i);
          __m256 xv;
          if (k == 8) xv = _mm256_loadu_ps(xs + i);
          else { for (int j = 0; j < 8; j++) t[j] = j < k ? xs[i + j] : 0.0f; xv = _mm256_load_ps(t); }
          const __m256 d = vderiv(op, xv);
          if (k == 8) _mm256_storeu_ps(ds + i, _mm256_mul_ps(d, _mm256_loadu_ps(gs + i)));
          else { _mm256_store_ps(t, d); for (int j = 0; j < k; j++) ds[i + j] = gs[i + j] * t[j]; }
        }
      }
    }
  }, op == U_GELU || op == U_GELU_TANH || op == U_SILU || op == U_TANH || op == U_SIGMOID ? 4 : 1);
}

// f(x) and f'(x) together for gelu, gelu_tanh, silu, sharing their costly part (Phi, the sigmoid); y has unary's bits
// (vnormcdf_e and vnormcdf agree), d vderiv's.
static inline void vact_grad(int op, __m256 xv, float* y, float* d) {
  if (op == U_GELU) {
    const __m256 e = vnormcdf_tail_exp(xv);
    const __m256 phi = vnormcdf_e(xv, e);
    _mm256_store_ps(y, _mm256_mul_ps(xv, phi));
    _mm256_store_ps(d, dgelu(xv, e, phi));
  } else if (op == U_SILU) {
    const __m256 s = vsigmoid(xv);
    _mm256_store_ps(y, _mm256_mul_ps(xv, s));
    _mm256_store_ps(d, dsilu(xv, s));
  } else {  // gelu_tanh
    const __m256 s = vgelu_tanh_s(xv);
    _mm256_store_ps(y, _mm256_mul_ps(xv, s));
    _mm256_store_ps(d, dgelu_tanh(xv, s));
  }
}

// An activation's value and derivative at x, both rounded to bf16 (f32_to_bf16's rule), in one pass: y has the bits
// of unary_bf16; d replaces x for the backward pass (mul_bf16), half x's bytes, and no function evaluated again there.
// gelu, gelu_tanh, silu, relu (d 1 or 0).
// x f32, or bf16 (x16: an activation whose product wrote it in bf16), widened a block at a time.
// f(x) and f'(x) rounded to bf16 for m values of f32 x (one thread's block): the arithmetic of unary_bf16_grad
static void act_grad_rows(int op, const float* xs, uint16_t* y, uint16_t* d, int64_t m) {
  alignas(64) float t[1024], u[1024];
  for (int64_t j = 0; j < m; j += 1024) {
    const int64_t c = std::min<int64_t>(1024, m - j);
    int64_t i = 0;
    if (op == U_RELU) {  // unary's relu (NaN kept), and its derivative as unary_backward takes it (x > 0)
      for (; i < c; i++) {
        const float v = xs[j + i];
        t[i] = (v > 0.0f || v != v) ? v : 0.0f;
        u[i] = v > 0.0f ? 1.0f : 0.0f;
      }
    } else if (use_avx512()) {  // gelu, gelu_tanh, silu
      act_grad_avx512(op, xs + j, t, u, c);
      i = c;
    }
    for (; i + 8 <= c; i += 8) vact_grad(op, _mm256_loadu_ps(xs + j + i), t + i, u + i);
    if (i < c) {
      alignas(32) float r[8], ry[8], rd[8];
      for (int q = 0; q < 8; q++) r[q] = i + q < c ? xs[j + i + q] : 0.0f;
      vact_grad(op, _mm256_load_ps(r), ry, rd);
      for (int64_t q = i; q < c; q++) { t[q] = ry[q - i]; u[q] = rd[q - i]; }
    }
    f32_to_bf16_row(t, y + j, c);
    f32_to_bf16_row(u, d + j, c);
  }
}

// A bf16 x has 65,536 values: f(x) and f'(x) rounded to bf16 for every one of them (y | d << 16), made once per
// activation by the same arithmetic as the values themselves (act_grad_rows), so that looking them up gives the same
// bits. The MLP's first product writes x in bf16 (matmulToBf16), and the activation was bound by its arithmetic (erf
// or the sigmoid's division): 2048 x 1024 gelu values and derivatives took 2.5 ms on an Emerald Rapids (2 threads,
// AVX-512), their lookups 0.67 ms (scripts/bench-activations.ts).
static const uint32_t* act_table(int op) {
  static std::once_flag once[U_COUNT];
  static std::vector<uint32_t> tables[U_COUNT];
  std::call_once(once[op], [op] {
    std::vector<float> xs(65536);
    std::vector<uint16_t> y(65536), d(65536);
    for (uint32_t h = 0; h < 65536; h++) xs[h] = bf16_to_f32((uint16_t)h);
    act_grad_rows(op, xs.data(), y.data(), d.data(), 65536);
    tables[op].resize(65536);
    for (uint32_t h = 0; h < 65536; h++) tables[op][h] = (uint32_t)y[h] | (uint32_t)d[h] << 16;
  });
  return tables[op].data();
}

void unary_bf16_grad(int op, const float* x, const uint16_t* x16, uint16_t* y, uint16_t* d, int64_t n) {
  if (x16) {
    const uint32_t* tab = act_table(op);
    blocks(n, [&](int64_t i0, int64_t i1) {
      int64_t i = i0;
      for (; i + 8 <= i1; i += 8) {
        const __m256i v = _mm256_i32gather_epi32((const int*)tab, _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(x16 + i))), 4);
        // the low halves of the 8 words, then the high halves, packed to 16 bits (packus keeps 128-bit lanes apart)
        const __m256i lo = _mm256_and_si256(v, _mm256_set1_epi32(0xffff)), hi = _mm256_srli_epi32(v, 16);
        const __m256i both = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);  // lo0-7 hi0-7
        _mm_storeu_si128((__m128i*)(y + i), _mm256_castsi256_si128(both));
        _mm_storeu_si128((__m128i*)(d + i), _mm256_extracti128_si256(both, 1));
      }
      for (; i < i1; i++) {
        const uint32_t v = tab[x16[i]];
        y[i] = (uint16_t)v;
        d[i] = (uint16_t)(v >> 16);
      }
    }, 2);
    return;
  }
  blocks(n, [&](int64_t i0, int64_t i1) { act_grad_rows(op, x + i0, y + i0, d + i0, i1 - i0); }, 4);
}

// out = g * d, d bf16 (widened exactly): the backward pass of unary_bf16_grad. g f32 or bf16 (g16: the gradient of a
// bf16 activation, from a product that wrote it in bf16); out f32, or bf16 (out16: the product rounded, for a bf16 x).
void mul_bf16(const float* g, const uint16_t* g16, const uint16_t* d, float* out, uint16_t* out16, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
      const __m256 v = _mm256_mul_ps(g16 ? widen_bf16_x8(g16 + i) : _mm256_loadu_ps(g + i), widen_bf16_x8(d + i));
      if (out16) {
        const __m256i r = f32_to_bf16_x8(v);  // 8 values in the low halves of 32-bit lanes
        _mm_storeu_si128((__m128i*)(out16 + i), _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
      } else {
        _mm256_storeu_ps(out + i, v);
      }
    }
    for (; i < i1; i++) {
      const float v = (g16 ? bf16_to_f32(g16[i]) : g[i]) * bf16_to_f32(d[i]);
      if (out16) out16[i] = f32_to_bf16(v);
      else out[i] = v;
    }
  });
}

// out[c] = sum over r of src[r][c], a bf16 (rows, cols) matrix summed in f32 row after row (a Linear's bias gradient
// from its bf16 output gradient): the same bits for any thread count. Each thread takes a band of columns (the whole
// row on one thread); 64 columns at a time are summed in registers down a block of rows, then stored, so that the
// running sums make one round trip through memory per block instead of one per row (2048 x 1024 on an Emerald Rapids,
// 2 threads, called from Node: 0.50 ms with the sums in L1 row after row, 0.21 ms so).
static void sum_rows_band(const uint16_t* src, int64_t rows, int64_t ld, int64_t w, float* acc) {
  constexpr int64_t kRows = 16;
  for (int64_t c = 0; c < w; c++) acc[c] = 0.0f;
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    const int64_t r1 = std::min(rows, r0 + kRows);
    int64_t c = 0;
    for (; c + 64 <= w; c += 64) {
      __m256 a[8];
      for (int j = 0; j < 8; j++) a[j] = _mm256_loadu_ps(acc + c + 8 * j);
      for (int64_t r = r0; r < r1; r++) {
        const uint16_t* s = src + r * ld + c;
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) a[j] = _mm256_add_ps(a[j], widen_bf16_x8(s + 8 * j));
      }
      for (int j = 0; j < 8; j++) _mm256_storeu_ps(acc + c + 8 * j, a[j]);
    }
    for (int64_t r = r0; r < r1; r++) {
      const uint16_t* s = src + r * ld;
      int64_t k = c;
      for (; k + 8 <= w; k += 8) _mm256_storeu_ps(acc + k, _mm256_add_ps(_mm256_loadu_ps(acc + k), widen_bf16_x8(s + k)));
      for (; k < w; k++) acc[k] += bf16_to_f32(s[k]);
    }
  }
}
void sum_rows_bf16(const uint16_t* src, int64_t rows, int64_t cols, float* out) {
  const int64_t nt = par(rows * cols) ? std::min<int64_t>(num_threads(), (cols + 63) / 64) : 1;
  const int64_t band = (cols + nt * 64 - 1) / (nt * 64) * 64;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t b = 0; b < nt; b++) {
    const int64_t c0 = std::min(cols, b * band), w = std::min(cols, c0 + band) - c0;
    sum_rows_band(src + c0, rows, cols, w, out + c0);
  }
}

void axpby(float alpha, const float* x, float beta, const float* y, float* o, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) { for (int64_t i = i0; i < i1; i++) o[i] = alpha * x[i] + beta * y[i]; });
}
void affine(const float* x, float scale, float shift, float* o, int64_t n) {
  blocks(n, [&](int64_t i0, int64_t i1) { for (int64_t i = i0; i < i1; i++) o[i] = x[i] * scale + shift; });
}

// ---- dropout: rng.ts hashUniform, bit for bit --------------------------------------------------------------
static inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
  return x;
}
void dropout_mask(uint32_t seed, double p, float* mask, int64_t n) {
  const uint32_t key = mix32(seed + 0x9e3779b9u);
  const float scale = (float)(1.0 / (1.0 - p));
  // u = k / 2^24 >= p  <=>  k >= ceil(p * 2^24) for the integer k = hash >> 8 (exact in double): an integer
  // compare that vectorises, identical to the float64 comparison of rng.ts.
  const double t = std::ceil(p * 16777216.0);
  const int64_t thr = t != t ? 16777217 : t <= 0.0 ? 0 : t > 16777216.0 ? 16777217 : (int64_t)t;  // NaN p: none kept
  const uint32_t th = (uint32_t)thr;
  blocks(n, [&](int64_t i0, int64_t i1) {
    const uint32_t b = (uint32_t)i0;
    const int64_t m = i1 - i0;
    float* o = mask + i0;
    for (int64_t j = 0; j < m; j++) {
      const uint32_t k = mix32((b + (uint32_t)j) ^ key) >> 8;
      o[j] = k >= th ? scale : 0.0f;
    }
  });
}

}  // namespace ag
