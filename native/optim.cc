// Optimizer updates (in place), PyTorch semantics, evaluated per element in double.
#include <algorithm>
#include "common.h"

namespace ag {

void adamw(float* p, const float* g, float* m, float* v, int64_t n, double lr, double b1, double b2, double eps,
           double wd, double step, double gs) {
  const double bc1 = 1.0 - std::pow(b1, step), bc2 = 1.0 - std::pow(b2, step);
  const double decay = lr * wd;
  // PyTorch's form: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), the bias corrections folded into two scalars:
  // one square root and one division an element (double division and square root are most of this kernel's time)
  const double step_size = lr / bc1, inv_sqrt_bc2 = 1.0 / std::sqrt(bc2);
  auto body = [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
      const double gi = (double)g[i] * gs;
      double pi = p[i];
      pi -= decay * pi;
      const double mi = (float)(b1 * m[i] + (1.0 - b1) * gi);  // the stored float32 moments are used below
      const double vi = (float)(b2 * v[i] + (1.0 - b2) * gi * gi);
      pi -= step_size * (mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps));
      m[i] = (float)mi;
      v[i] = (float)vi;
      p[i] = (float)pi;
    }
  };
  if (par(n * 4)) {
    const int64_t B = 4096, nb = (n + B - 1) / B;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nb; k++) body(k * B, std::min(n, (k + 1) * B));
  } else body(0, n);
}

void sgd(float* p, const float* g, float* buf, int64_t n, double lr, double mom, double damp, bool nesterov, double wd,
         bool first, double gs) {
  auto body = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      double gi = (double)g[i] * gs;
      if (wd != 0.0) gi += wd * (double)p[i];
      if (mom != 0.0) {
        const double b = (float)(first ? gi : mom * (double)buf[i] + (1.0 - damp) * gi);  // stored float32 buffer
        buf[i] = (float)b;
        gi = nesterov ? gi + mom * b : b;
      }
      p[i] = (float)((double)p[i] - lr * gi);
    }
  };
  if (par(n * 2)) {
    const int64_t B = 4096, nb = (n + B - 1) / B;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nb; k++) body(k * B, std::min(n, (k + 1) * B));
  } else body(0, n);
}

}  // namespace ag
