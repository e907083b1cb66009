// reduce (sum/max/min over the middle axis of (outer, n, inner)), argmax, sumSquares.
#include <algorithm>
#include <limits>
#include <vector>
#include "common.h"
#include "vecmath.h"

namespace ag {

namespace {
inline float nanmax(float acc, float v) { return (v > acc || v != v) ? v : acc; }
inline float nanmin(float acc, float v) { return (v < acc || v != v) ? v : acc; }

// One output row of `inner` values: reduce x[0..n) (stride `inner`) into o (inner values).
void reduce_block(int op, const float* x, int64_t n, int64_t inner, float* o) {
  if (inner == 1) {
    if (op == R_SUM) {
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; i++) s += (double)x[i];
      o[0] = (float)s;
    } else {
      float m = n > 0 ? x[0] : (op == R_MAX ? -INFINITY : INFINITY);
      bool nan = false;
      if (op == R_MAX) {
#pragma omp simd reduction(max : m) reduction(| : nan)
        for (int64_t i = 0; i < n; i++) { m = std::max(m, x[i]); nan |= x[i] != x[i]; }
      } else {
#pragma omp simd reduction(min : m) reduction(| : nan)
        for (int64_t i = 0; i < n; i++) { m = std::min(m, x[i]); nan |= x[i] != x[i]; }
      }
      o[0] = nan ? std::numeric_limits<float>::quiet_NaN() : m;
    }
    return;
  }
  if (op == R_SUM) {
    // column sums in double, a strip of 256 columns at a time
    double acc[256];
    for (int64_t j0 = 0; j0 < inner; j0 += 256) {
      const int64_t w = std::min<int64_t>(256, inner - j0);
      for (int64_t j = 0; j < w; j++) acc[j] = 0;
      for (int64_t i = 0; i < n; i++) {
        const float* r = x + i * inner + j0;
#pragma omp simd
        for (int64_t j = 0; j < w; j++) acc[j] += (double)r[j];
      }
      for (int64_t j = 0; j < w; j++) o[j0 + j] = (float)acc[j];
    }
  } else {
    const float init = op == R_MAX ? -INFINITY : INFINITY;
    for (int64_t j = 0; j < inner; j++) o[j] = init;
    for (int64_t i = 0; i < n; i++) {
      const float* r = x + i * inner;
      if (op == R_MAX) for (int64_t j = 0; j < inner; j++) o[j] = nanmax(o[j], r[j]);
      else for (int64_t j = 0; j < inner; j++) o[j] = nanmin(o[j], r[j]);
    }
  }
}
// Column sums of a tall (n, inner) matrix (a Linear layer's bias gradient), in double over deterministic row chunks
// (sum_chunk_rows; within a chunk, float over blocks of 16 rows): every thread streams whole rows (splitting columns left one thread idle at inner <= 256
// and read 1 KiB per row per strip). With d16, x is also written to it rounded to bf16 as it is read (cast_column_sum).
constexpr int64_t kColRows = 128;
void column_sum(const float* x, int64_t n, int64_t inner, float* o, uint16_t* d16 = nullptr) {
  const int64_t rows = sum_chunk_rows(n, kColRows);
  const int64_t nchunk = (n + rows - 1) / rows;
  std::vector<double> part((size_t)(nchunk * inner));
#pragma omp parallel for schedule(static) if (par(n * inner))
  for (int64_t c = 0; c < nchunk; c++) {
    double* acc = part.data() + c * inner;
    const int64_t i1 = std::min(n, (c + 1) * rows);
    for (int64_t j = 0; j < inner; j++) acc[j] = 0;
    // blocks of 16 rows (in L1), each strip of 64 columns summed down the block in eight float registers and then
    // added to the chunk's double sums: a double load, add and store per element had bound this loop (2048 x 256:
    // 0.14 ms on 2 threads)
    const int64_t wide = inner / 64 * 64;
    for (int64_t i = c * rows; i < i1; i += 16) {
      const int64_t ie = std::min(i1, i + 16);
      for (int64_t j0 = 0; j0 < wide; j0 += 64) {
        __m256 s[8];
        for (int k = 0; k < 8; k++) s[k] = _mm256_setzero_ps();
        for (int64_t q = i; q < ie; q++) {
          const float* r = x + q * inner + j0;
          if (d16) {
            uint16_t* w = d16 + q * inner + j0;
            for (int k = 0; k < 8; k += 2) {  // the sums and the rounding from one load (cast's rounding: f32_to_bf16_x8)
              const __m256 lo = _mm256_loadu_ps(r + 8 * k), hi = _mm256_loadu_ps(r + 8 * k + 8);
              s[k] = _mm256_add_ps(s[k], lo);
              s[k + 1] = _mm256_add_ps(s[k + 1], hi);
              const __m256i p = _mm256_packus_epi32(f32_to_bf16_x8(lo), f32_to_bf16_x8(hi));  // 128-bit lanes kept apart
              _mm256_storeu_si256((__m256i*)(w + 8 * k), _mm256_permute4x64_epi64(p, 0xD8));
            }
          } else {
            for (int k = 0; k < 8; k++) s[k] = _mm256_add_ps(s[k], _mm256_loadu_ps(r + 8 * k));
          }
        }
        alignas(32) float t[64];
        for (int k = 0; k < 8; k++) _mm256_store_ps(t + 8 * k, s[k]);
        for (int64_t j = 0; j < 64; j++) acc[j0 + j] += t[j];
      }
      for (int64_t q = i; q < ie; q++) {
        const float* r = x + q * inner;
        for (int64_t j = wide; j < inner; j++) acc[j] += (double)r[j];
        if (d16) for (int64_t j = wide; j < inner; j++) d16[q * inner + j] = f32_to_bf16(r[j]);
      }
    }
  }
  std::vector<double> tot((size_t)inner, 0.0);
  for (int64_t c = 0; c < nchunk; c++) {
    const double* acc = part.data() + c * inner;
#pragma omp simd
    for (int64_t j = 0; j < inner; j++) tot[j] += acc[j];
  }
  for (int64_t j = 0; j < inner; j++) o[j] = (float)tot[j];
}
}  // namespace

// A Linear layer's f32 output gradient x (n, inner) rounded to bf16 into d16 (its products' operand, as cast) and its
// column sums into o (the bias gradient, as reduce's sum over n), in one pass over x where reduce takes column_sum;
// elsewhere cast and reduce. The bits of the two calls either way.
void cast_column_sum(const float* x, int64_t n, int64_t inner, float* o, uint16_t* d16) {
  if (n >= 2 * kColRows && inner >= 16) return column_sum(x, n, inner, o, d16);
  cast(x, D_F32, d16, D_BF16, n * inner);
  reduce(R_SUM, x, 1, n, inner, o);
}

void reduce(int op, const float* x, int64_t outer, int64_t n, int64_t inner, float* o) {
  const int64_t total = outer * n * inner;
  if (outer == 1 && inner == 1 && par(n)) {
    // one long row: per-thread partials
    const int nt = std::min(num_threads(), 256);
    float part[256];
    const int64_t chunk = (n + nt - 1) / nt;
#pragma omp parallel for num_threads(nt)
    for (int t = 0; t < nt; t++) {
      const int64_t i0 = std::min(n, t * chunk), i1 = std::min(n, (t + 1) * chunk);
      if (i1 > i0) reduce_block(op, x + i0, i1 - i0, 1, part + t);
      else part[t] = op == R_SUM ? 0.0f : op == R_MAX ? -INFINITY : INFINITY;
    }
    // re-reduce partials (sum in double: partials are float sums of double accumulators)
    if (op == R_SUM) {
      double s = 0;
      for (int t = 0; t < nt; t++) s += part[t];
      o[0] = (float)s;
    } else reduce_block(op, part, nt, 1, o);
    return;
  }
  if (outer == 1 && op == R_SUM && inner >= 16 && n >= 2 * kColRows) {
    column_sum(x, n, inner, o);
    return;
  }
  if (outer == 1 && par(total) && inner >= 64) {  // column reduce: split columns
    const int64_t cw = 256, nc = (inner + cw - 1) / cw;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nc; c++) {
      const int64_t j0 = c * cw, w = std::min(cw, inner - j0);
      // strided view of a column strip: reduce_block handles row stride `inner` via a local copy loop
      if (op == R_SUM) {
        double acc[256];
        for (int64_t j = 0; j < w; j++) acc[j] = 0;
        for (int64_t i = 0; i < n; i++) {
          const float* r = x + i * inner + j0;
#pragma omp simd
          for (int64_t j = 0; j < w; j++) acc[j] += (double)r[j];
        }
        for (int64_t j = 0; j < w; j++) o[j0 + j] = (float)acc[j];
      } else {
        for (int64_t j = 0; j < w; j++) o[j0 + j] = op == R_MAX ? -INFINITY : INFINITY;
        for (int64_t i = 0; i < n; i++) {
          const float* r = x + i * inner + j0;
          for (int64_t j = 0; j < w; j++) o[j0 + j] = op == R_MAX ? nanmax(o[j0 + j], r[j]) : nanmin(o[j0 + j], r[j]);
        }
      }
    }
    return;
  }
  if (par(total) && outer > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < outer; r++) reduce_block(op, x + r * n * inner, n, inner, o + r * inner);
  } else {
    for (int64_t r = 0; r < outer; r++) reduce_block(op, x + r * n * inner, n, inner, o + r * inner);
  }
}

void argmax(const float* x, int64_t outer, int64_t n, int64_t inner, int32_t* out) {
  auto one = [&](int64_t r) {
    const float* base = x + r * n * inner;
    for (int64_t j = 0; j < inner; j++) {
      // first maximum; a NaN counts as the maximum (first NaN wins), like torch.argmax
      int64_t best = 0;
      float bv = n > 0 ? base[j] : 0.0f;
      if (bv == bv) {
        for (int64_t i = 1; i < n; i++) {
          const float v = base[i * inner + j];
          if (v != v) { best = i; break; }
          if (v > bv) { bv = v; best = i; }
        }
      }
      out[r * inner + j] = (int32_t)best;
    }
  };
  if (par(outer * n * inner) && outer > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < outer; r++) one(r);
  } else for (int64_t r = 0; r < outer; r++) one(r);
}

double sum_squares(const float* x, int64_t n) {
  double s = 0;
  if (par(n)) {
#pragma omp parallel for simd reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
  }
  return s;
}

}  // namespace ag
