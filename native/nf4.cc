// NF4 weights (src/backend/nf4.ts, src/peft/nf4.ts): bitsandbytes' 4-bit NormalFloat, an absmax per 64 elements of
// storage order, two codes a byte (high nibble first). The widening that the low-precision products call per block of
// stored rows (matmul.cc matmul_lowp), and the quantisation (the addon's quantizeNf4; the TypeScript is its reference).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include "common.h"

namespace ag {

// NF4 (src/backend/nf4.ts): bitsandbytes' 16 levels; element e's value is kNf4[code(e)] * absmax[e / 64].
static const float kNf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                               -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                               0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                               0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
struct Nf4Pairs {  // the two levels of each byte (high nibble first), so a byte widens with one table load
  float v[256][2];
  Nf4Pairs() {
    for (int b = 0; b < 256; b++) v[b][0] = kNf4[b >> 4], v[b][1] = kNf4[b & 15];
  }
};

// dst[i] = value of element e0 + i for i < n, blocks of 64 split over the threads (each block one scale).
void widen_nf4(const uint8_t* q, const float* absmax, int64_t e0, int64_t n, float* dst) {
  static const Nf4Pairs tab;
  const int64_t e1 = e0 + n, b0 = e0 / 64, b1 = (e1 + 63) / 64;
#pragma omp parallel for schedule(static) if (par(n))
  for (int64_t blk = b0; blk < b1; blk++) {
    const int64_t s = std::max(e0, blk * 64), t = std::min(e1, blk * 64 + 64);
    const float sc = absmax[blk];
    float* d = dst + (s - e0);
    int64_t e = s;
    if (e & 1) *d++ = kNf4[q[e >> 1] & 15] * sc, e++;  // an odd start: the low nibble of its byte
    for (; e + 2 <= t; e += 2, d += 2) {
      const float* pr = tab.v[q[e >> 1]];
      d[0] = pr[0] * sc;
      d[1] = pr[1] * sc;
    }
    if (e < t) *d = kNf4[q[e >> 1] >> 4] * sc;
  }
}

// NF4 quantisation (src/peft/nf4.ts quantizeNf4, bitsandbytes' arithmetic): per block of 64, absmax = max |w|, each
// element's code = the number of level midpoints below w * (1 / absmax) (strict, ties to the lower level), 7 (0.0)
// in a block of zeros; two codes a byte, high nibble first. Blocks split over the threads (each writes its own 32
// bytes). Returns -1, or the index of a non-finite element (nothing is then meaningful).
int64_t quantize_nf4(const float* w, int64_t n, uint8_t* codes, float* absmax) {
  float mids[15];
  for (int i = 0; i < 15; i++) mids[i] = (float)(((double)kNf4[i] + (double)kNf4[i + 1]) / 2);
  const int64_t nb = (n + 63) / 64;
  int64_t bad = -1;
#pragma omp parallel for schedule(static) if (par(n))
  for (int64_t blk = 0; blk < nb; blk++) {
    const int64_t s = blk * 64, t = std::min(n, s + 64);
    float mx = 0.0f;
    bool finite = true;
    for (int64_t e = s; e < t; e++) {
      finite &= std::isfinite(w[e]);
      mx = std::max(mx, std::fabs(w[e]));
    }
    if (!finite) {
      for (int64_t e = s; e < t; e++) {
        if (!std::isfinite(w[e])) {
#pragma omp critical(nf4_bad)
          if (bad < 0 || e < bad) bad = e;
          break;
        }
      }
      continue;
    }
    absmax[blk] = mx;
    const float inv = 1.0f / mx;
    uint8_t c[64];
    for (int64_t e = s; e < t; e++) {
      const float x = w[e] * inv;
      int k = 0;
      for (int i = 0; i < 15; i++) k += x > mids[i];
      c[e - s] = mx == 0.0f ? 7 : (uint8_t)k;
    }
    for (int64_t e = s; e < t; e += 2) codes[e >> 1] = (uint8_t)((c[e - s] << 4) | (e + 1 < t ? c[e + 1 - s] : 0));
  }
  return bad;
}

}  // namespace ag
