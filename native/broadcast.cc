// binary ops and where() over broadcast (stride-0) views of up to any rank: dimensions are collapsed first,
// then the fast paths (contiguous, scalar operand, row broadcast) or a general strided loop run.
#include <algorithm>
#include <limits>
#include "common.h"

namespace ag {

namespace {
constexpr int kMaxOps = 3;

// Collapsed iteration space: shape[nd] and per-operand strides, innermost last.
struct Space {
  int nd = 0;
  int64_t shape[16];
  int64_t st[kMaxOps][16];
  int64_t total = 1;
};

Space collapse(int nops, const int64_t* const* strides, const int64_t* shape, int ndim) {
  Space s;
  for (int d = 0; d < ndim; d++) {
    s.total *= shape[d];
    if (shape[d] == 1) continue;
    if (s.nd > 0) {
      bool merge = true;
      for (int k = 0; k < nops; k++)
        if (strides[k][d] * shape[d] != s.st[k][s.nd - 1]) { merge = false; break; }
      if (merge) {
        s.shape[s.nd - 1] *= shape[d];
        for (int k = 0; k < nops; k++) s.st[k][s.nd - 1] = strides[k][d];
        continue;
      }
    }
    s.shape[s.nd] = shape[d];
    for (int k = 0; k < nops; k++) s.st[k][s.nd] = strides[k][d];
    s.nd++;
  }
  if (s.nd == 0) { s.nd = 1; s.shape[0] = 1; for (int k = 0; k < nops; k++) s.st[k][0] = 0; }
  return s;
}

// Offsets of operand k at the start of row r (all dims but the last).
inline void row_offsets(const Space& s, int nops, int64_t r, int64_t* off) {
  for (int k = 0; k < nops; k++) off[k] = 0;
  for (int d = s.nd - 2; d >= 0; d--) {
    const int64_t i = r % s.shape[d];
    r /= s.shape[d];
    for (int k = 0; k < nops; k++) off[k] += i * s.st[k][d];
  }
}

inline float jsmax(float a, float b) {
  if (a != a || b != b) return std::numeric_limits<float>::quiet_NaN();
  if (a > b) return a;
  if (b > a) return b;
  return std::signbit(a) ? b : a;  // equal: +0 wins over -0
}
inline float jsmin(float a, float b) {
  if (a != a || b != b) return std::numeric_limits<float>::quiet_NaN();
  if (a < b) return a;
  if (b < a) return b;
  return std::signbit(a) ? a : b;  // equal: -0 wins over +0
}
inline float jspow(float a, float b) {  // Math.pow semantics
  if (b != b) return std::numeric_limits<float>::quiet_NaN();
  if (std::isinf(b) && std::fabs(a) == 1.0f) return std::numeric_limits<float>::quiet_NaN();
  return (float)std::pow((double)a, (double)b);
}

template <int OP>
inline float bop(float a, float b) {
  if constexpr (OP == B_ADD) return a + b;
  if constexpr (OP == B_SUB) return a - b;
  if constexpr (OP == B_MUL) return a * b;
  if constexpr (OP == B_DIV) return a / b;
  if constexpr (OP == B_POW) return jspow(a, b);
  if constexpr (OP == B_MAX) return jsmax(a, b);
  if constexpr (OP == B_MIN) return jsmin(a, b);
  if constexpr (OP == B_EQ) return a == b ? 1.0f : 0.0f;
  if constexpr (OP == B_GT) return a > b ? 1.0f : 0.0f;
  if constexpr (OP == B_GE) return a >= b ? 1.0f : 0.0f;
  if constexpr (OP == B_LT) return a < b ? 1.0f : 0.0f;
  if constexpr (OP == B_LE) return a <= b ? 1.0f : 0.0f;
  return 0.0f;
}

// One row of `len` outputs, with each input's inner stride.
template <int OP>
inline void brow(const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t len) {
  if (sa == 1 && sb == 1) { for (int64_t j = 0; j < len; j++) o[j] = bop<OP>(a[j], b[j]); }
  else if (sa == 1 && sb == 0) { const float bv = b[0]; for (int64_t j = 0; j < len; j++) o[j] = bop<OP>(a[j], bv); }
  else if (sa == 0 && sb == 1) { const float av = a[0]; for (int64_t j = 0; j < len; j++) o[j] = bop<OP>(av, b[j]); }
  else { for (int64_t j = 0; j < len; j++) o[j] = bop<OP>(a[j * sa], b[j * sb]); }
}

template <int OP>
void binary_t(const float* a, const int64_t* as, const float* b, const int64_t* bs, const int64_t* shape, int ndim, float* o) {
  const int64_t* sts[2] = {as, bs};
  const Space s = collapse(2, sts, shape, ndim);
  if (s.total == 0) return;
  const int64_t inner = s.shape[s.nd - 1];
  const int64_t sa = s.st[0][s.nd - 1], sb = s.st[1][s.nd - 1];
  const int64_t rows = s.total / inner;
  if (rows == 1) {  // fast paths (a) contiguous and (b) scalar operand: one long row, split in blocks
    const int64_t B = 8192, nb = (inner + B - 1) / B;
    auto run = [&](int64_t blk) {
      const int64_t j0 = blk * B, len = std::min(B, inner - j0);
      brow<OP>(a + j0 * sa, sa, b + j0 * sb, sb, o + j0, len);
    };
    if (par(inner)) {
#pragma omp parallel for schedule(static)
      for (int64_t k = 0; k < nb; k++) run(k);
    } else for (int64_t k = 0; k < nb; k++) run(k);
    return;
  }
  // (c) row broadcast and (d) general: rows of the innermost dimension
  auto run_rows = [&](int64_t r0, int64_t r1) {
    int64_t off[2];
    for (int64_t r = r0; r < r1; r++) {
      if (s.nd == 2) { off[0] = r * s.st[0][0]; off[1] = r * s.st[1][0]; }
      else row_offsets(s, 2, r, off);
      brow<OP>(a + off[0], sa, b + off[1], sb, o + r * inner, inner);
    }
  };
  if (par(s.total) && rows > 1) {
    const int64_t chunk = std::max<int64_t>(1, 4096 / inner);
    const int64_t nc = (rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nc; c++) run_rows(c * chunk, std::min(rows, (c + 1) * chunk));
  } else run_rows(0, rows);
}
}  // namespace

void binary(int op, const float* a, const int64_t* as, const float* b, const int64_t* bs, const int64_t* shape, int nd, float* o) {
  switch (op) {
    case B_ADD: return binary_t<B_ADD>(a, as, b, bs, shape, nd, o);
    case B_SUB: return binary_t<B_SUB>(a, as, b, bs, shape, nd, o);
    case B_MUL: return binary_t<B_MUL>(a, as, b, bs, shape, nd, o);
    case B_DIV: return binary_t<B_DIV>(a, as, b, bs, shape, nd, o);
    case B_POW: return binary_t<B_POW>(a, as, b, bs, shape, nd, o);
    case B_MAX: return binary_t<B_MAX>(a, as, b, bs, shape, nd, o);
    case B_MIN: return binary_t<B_MIN>(a, as, b, bs, shape, nd, o);
    case B_EQ: return binary_t<B_EQ>(a, as, b, bs, shape, nd, o);
    case B_GT: return binary_t<B_GT>(a, as, b, bs, shape, nd, o);
    case B_GE: return binary_t<B_GE>(a, as, b, bs, shape, nd, o);
    case B_LT: return binary_t<B_LT>(a, as, b, bs, shape, nd, o);
    case B_LE: return binary_t<B_LE>(a, as, b, bs, shape, nd, o);
  }
}

void where(const float* c, const int64_t* cs, const float* a, const int64_t* as, const float* b, const int64_t* bs,
           const int64_t* shape, int nd, float* o) {
  const int64_t* sts[3] = {cs, as, bs};
  const Space s = collapse(3, sts, shape, nd);
  if (s.total == 0) return;
  const int64_t inner = s.shape[s.nd - 1];
  const int64_t sc = s.st[0][s.nd - 1], sa = s.st[1][s.nd - 1], sb = s.st[2][s.nd - 1];
  const int64_t rows = s.total / inner;
  auto run_rows = [&](int64_t r0, int64_t r1) {
    int64_t off[3];
    for (int64_t r = r0; r < r1; r++) {
      row_offsets(s, 3, r, off);
      const float *cp = c + off[0], *ap = a + off[1], *bp = b + off[2];
      float* op = o + r * inner;
      if (sc == 1 && sa == 1 && sb == 1) {
        for (int64_t j = 0; j < inner; j++) op[j] = cp[j] != 0.0f ? ap[j] : bp[j];
      } else {
        for (int64_t j = 0; j < inner; j++) op[j] = cp[j * sc] != 0.0f ? ap[j * sa] : bp[j * sb];
      }
    }
  };
  if (rows == 1 && par(inner)) {
    const int64_t B = 8192, nb = (inner + B - 1) / B;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nb; k++) {
      const int64_t j0 = k * B, len = std::min(B, inner - j0);
      const float *cp = c + j0 * sc, *ap = a + j0 * sa, *bp = b + j0 * sb;
      for (int64_t j = 0; j < len; j++) o[j0 + j] = cp[j * sc] != 0.0f ? ap[j * sa] : bp[j * sb];
    }
  } else if (par(s.total) && rows > 1) {
    const int64_t chunk = std::max<int64_t>(1, 4096 / inner);
    const int64_t nc = (rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nc; k++) run_rows(k * chunk, std::min(rows, (k + 1) * chunk));
  } else run_rows(0, rows);
}

}  // namespace ag
