// Optimizer updates (in place), PyTorch semantics, each element in float32 as PyTorch updates a float32 parameter.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include "common.h"
#include "vecmath.h"

namespace ag {

void adamw(float* p, const float* g, float* m, float* v, int64_t n, double lr, double b1, double b2, double eps,
           double wd, double step, double gs, uint16_t* out16) {
  const double bc1 = 1.0 - std::pow(b1, step), bc2 = 1.0 - std::pow(b2, step);
  const double decay = lr * wd;
  // PyTorch's form: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), the bias corrections folded into two scalars
  // (in double), each element in float32 as PyTorch computes a float32 parameter's update: one square root and one
  // division an element, eight to a vector. In double (four to a vector) they were most of this kernel's time: cls-full's
  // 5.3M parameters 6.4 ms a step on two threads, bound by the divider rather than memory.
  const float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / std::sqrt(bc2));
  const float fb1 = (float)b1, fb2 = (float)b2, f1b1 = (float)(1.0 - b1), f1b2 = (float)(1.0 - b2);
  const float fdecay = (float)decay, feps = (float)eps, fgs = (float)gs;
  auto body = [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
      const float gi = g[i] * fgs;
      float pi = p[i];
      pi -= fdecay * pi;
      const float mi = fb1 * m[i] + f1b1 * gi;
      const float vi = fb2 * v[i] + f1b2 * gi * gi;
      pi -= step_size * (mi / (std::sqrt(vi) * inv_sqrt_bc2 + feps));
      m[i] = mi;
      v[i] = vi;
      p[i] = pi;
    }
    if (out16) f32_to_bf16_row(p + i0, out16 + i0, i1 - i0);  // the block's new values, in L1: the cast's bits
  };
  if (par(n * 4)) {
    const int64_t B = 4096, nb = (n + B - 1) / B;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nb; k++) body(k * B, std::min(n, (k + 1) * B));
  } else body(0, n);
}

// The code of the value in sorted map (256) nearest x, ties to the lower (src/optim/adamw8bit.ts nearestCode): the
// binary search's bracket lo (map[lo] <= x < map[lo + 1], clamped to 0..254), then the nearer of the two.
static inline uint8_t nearer(const float* map, int lo, float x) {
  return (uint8_t)((double)x - map[lo] <= (double)map[lo + 1] - x ? lo : lo + 1);
}

static inline uint8_t nearest_code_search(const float* map, float x) {
  int lo = 0, hi = 255;
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (map[mid] <= x) lo = mid;
    else hi = mid;
  }
  return nearer(map, lo, x);
}

// The code of x from a table over |x|'s float bits (8 exponent bits and the top 8 of the mantissa: 256 cells an
// octave, over [2^-32, 2)), a cell for each sign: the code of the cell's first float, and the largest float at or
// below the one midpoint of the map inside the cell (+inf where there is none), past which the code is one more.
// The nearest code is a step function of x that steps at midpoints, and a cell is narrower than the maps' gaps, so it
// holds one step at most; build() checks that for every cell, and a cell that held more would be searched instead.
// The same codes as nearest_code_search (ties to the lower code: x at a midpoint stays below it).
struct CodeTable {
  static constexpr int kLowExp = 127 - 32, kCells = 33 * 256;
  const float* map = nullptr;
  uint8_t base[2 * kCells];  // the positive cells, then the negative ones
  float step[2 * kCells];
  bool searched[2 * kCells];
  bool any_searched = false;
  static float from_bits(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  }
  void build(const float* m) {
    map = m;
    any_searched = false;
    for (int c = 0; c < kCells; c++) {
      const uint32_t first = ((uint32_t)(c + kLowExp * 256)) << 15, last = first + (1u << 15) - 1;
      for (int sign = 0; sign < 2; sign++) {
        // the cell's floats in increasing order: [first, last] positive, [-last, -first] negative
        const float lo = sign ? -from_bits(last) : from_bits(first), hi = sign ? -from_bits(first) : from_bits(last);
        const int k = sign * kCells + c;
        const int c0 = nearest_code_search(m, lo), c1 = nearest_code_search(m, hi);
        base[k] = (uint8_t)c0;
        searched[k] = c1 > c0 + 1;
        any_searched |= searched[k];
        if (c1 == c0) {
          step[k] = INFINITY;
        } else {
          const double mid = ((double)m[c0] + (double)m[c0 + 1]) / 2;  // x <= mid keeps c0
          float t = (float)mid;
          if ((double)t > mid) t = std::nextafter(t, -INFINITY);
          step[k] = t;
        }
      }
    }
  }
  uint8_t code(float x) const {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    const int cell = (int)((bits & 0x7fffffffu) >> 15) - kLowExp * 256;
    if (x != x || cell < 0 || cell >= kCells) return nearest_code_search(map, x);  // NaN, tiny (0), |x| >= 2
    const int k = cell + (int)(bits >> 31) * kCells;
    if (any_searched && searched[k]) return nearest_code_search(map, x);
    return (uint8_t)(base[k] + (x > step[k]));
  }
};

// One table per map, built on first use (the maps are the optimizer's two constants; a different map rebuilds).
static const CodeTable& code_table(const float* map, int which) {
  static CodeTable tables[2];
  static float built[2][256];
  static bool ready[2] = {false, false};
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (!ready[which] || std::memcmp(built[which], map, sizeof(built[which])) != 0) {
    std::memcpy(built[which], map, sizeof(built[which]));
    tables[which].build(built[which]);
    ready[which] = true;
  }
  return tables[which];
}

// AdamW with 8-bit block-quantised moments (bitsandbytes' AdamW8bit: blocks of 256, one absmax each; the moments'
// maps are its signed and unsigned dynamic maps), in float arithmetic as bitsandbytes' CPU path computes it. The
// arithmetic is src/optim/adamw8bit.ts's, operation for operation with no contraction into FMAs, so the two give the
// same bits; blocks run in parallel.
__attribute__((optimize("fp-contract=off")))
void adamw8bit(float* p, const float* g, uint8_t* c1, uint8_t* c2, float* a1, float* a2, const float* map1, const float* map2,
               int64_t n, double lr, double b1, double b2, double eps, double wd, double corr1, double corr2, double gs) {
  const int64_t B = 256, nb = (n + B - 1) / B;
  const float beta1 = (float)b1, beta2 = (float)b2, one_b1 = (float)(1.0 - b1), one_b2 = (float)(1.0 - b2);
  const float step_size = (float)(-lr / corr1), decay = (float)(1.0 - lr * wd), c2f = (float)corr2, epsf = (float)eps, gsf = (float)gs;
  const bool decays = wd > 0;
  const CodeTable &t1 = code_table(map1, 0), &t2 = code_table(map2, 1);
#pragma omp parallel for schedule(static) if (par(n * 8))
  for (int64_t b = 0; b < nb; b++) {
    float m[256], v[256];
    const int64_t s = b * B, len = std::min(B, n - s);
    const float s1 = a1[b], s2 = a2[b];
    for (int64_t j = 0; j < len; j++) {  // the stored moments widened (two table reads an element)
      m[j] = map1[c1[s + j]] * s1;
      v[j] = map2[c2[s + j]] * s2;
    }
    float mx1 = 0.0f, mx2 = 0.0f;
    float* pp = p + s;
    const float* gg = g + s;
#pragma omp simd reduction(max : mx1, mx2)
    for (int64_t j = 0; j < len; j++) {
      const float gi = gg[j] * gsf;
      const float mi = beta1 * m[j] + one_b1 * gi;
      const float vi = beta2 * v[j] + one_b2 * (gi * gi);
      const float denom = std::sqrt(vi) / c2f + epsf;
      const float pi = decays ? pp[j] * decay : pp[j];
      pp[j] = pi + step_size * (mi / denom);
      m[j] = mi;
      v[j] = vi;
      mx1 = std::max(mx1, std::fabs(mi));
      mx2 = std::max(mx2, vi);
    }
    a1[b] = mx1;
    a2[b] = mx2;
    const float inv1 = mx1 > 0.0f ? 1.0f / mx1 : 0.0f, inv2 = mx2 > 0.0f ? 1.0f / mx2 : 0.0f;
    for (int64_t j = 0; j < len; j++) {
      c1[s + j] = t1.code(m[j] * inv1);
      c2[s + j] = t2.code(v[j] * inv2);
    }
  }
}

// PyTorch's SGD on a float32 parameter, each element in float32 as its update computes it: d = g (+ wd * p), the
// momentum buffer b = mom * b + (1 - damp) * d (d itself on the first step), d = b (or d + mom * b, Nesterov), then
// p -= lr * d. In double (the old form, four to a vector) the conversions were most of this kernel's time.
void sgd(float* p, const float* g, float* buf, int64_t n, double lr, double mom, double damp, bool nesterov, double wd,
         bool first, double gs, uint16_t* out16) {
  const float flr = (float)lr, fmom = (float)mom, fdamp1 = (float)(1.0 - damp), fwd = (float)wd, fgs = (float)gs;
  const bool decays = wd != 0.0;
  auto body = [&](int64_t i0, int64_t i1) {
    if (mom == 0.0) {
#pragma omp simd
      for (int64_t i = i0; i < i1; i++) {
        const float pi = p[i];
        const float di = decays ? g[i] * fgs + fwd * pi : g[i] * fgs;
        p[i] = pi - flr * di;
      }
    } else {
#pragma omp simd
      for (int64_t i = i0; i < i1; i++) {
        const float pi = p[i];
        const float di = decays ? g[i] * fgs + fwd * pi : g[i] * fgs;
        const float b = first ? di : fmom * buf[i] + fdamp1 * di;
        buf[i] = b;
        p[i] = pi - flr * (nesterov ? di + fmom * b : b);
      }
    }
    if (out16) f32_to_bf16_row(p + i0, out16 + i0, i1 - i0);  // the block's new values, in L1: the cast's bits
  };
  if (par(n * 2)) {
    const int64_t B = 4096, nb = (n + B - 1) / B;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nb; k++) body(k * B, std::min(n, (k + 1) * B));
  } else body(0, n);
}

}  // namespace ag
