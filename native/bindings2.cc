// N-API bindings: matmul, neural-network row kernels, dropout, optimizers, library info and threads.
#include <dnnl.hpp>
#include <ctime>
#include "args.h"

namespace ag {
namespace {

KERNEL(Matmul) {
  Args a(info, "matmul", 14);
  const bool bf = a.flag(3);
  size_t na, nb, no;
  void* x = a.arr(0, bf ? napi_uint16_array : napi_float32_array, &na);
  void* y = a.arr(1, bf ? napi_uint16_array : napi_float32_array, &nb);
  // out: a Float32Array, or with bf16 operands a Uint16Array (the product rounded to bf16; beta = 0)
  int oes = 0;
  void* o = a.arr(2, -1, &no, false, &oes);
  a.need(oes == 4 || (oes == 2 && bf), "out must be a Float32Array (or a Uint16Array with bf16 operands)");
  MatmulP p;
  p.batch = a.integer(4); p.M = a.integer(5); p.N = a.integer(6); p.K = a.integer(7);
  p.transA = a.flag(8); p.transB = a.flag(9);
  p.strideA = a.integer(10); p.strideB = a.integer(11);
  p.alpha = (float)a.num(12); p.beta = (float)a.num(13);
  size_t nbias = 0;
  if (info.Length() > 14) p.bias = a.f32(14, &nbias, true);  // optional (N) bias, only with beta = 0
  a.need(!p.bias || ((int64_t)nbias >= p.N && p.beta == 0.0f), "bias needs N elements and beta = 0");
  a.need(oes == 4 || p.beta == 0.0f, "a bf16 out needs beta = 0");
  a.need(p.M < (1LL << 31) && p.N < (1LL << 31) && p.K < (1LL << 31), "dimensions must be below 2^31");
  a.need((int64_t)no >= p.batch * p.M * p.N, "out is smaller than batch*M*N");
  if (p.batch > 0 && p.K > 0) {
    a.need((int64_t)na >= (p.batch - 1) * p.strideA + p.M * p.K, "a is smaller than its (batch, M, K) view");
    a.need((int64_t)nb >= (p.batch - 1) * p.strideB + p.K * p.N, "b is smaller than its (batch, K, N) view");
  }
  try {
    if (oes == 2) matmul_bf16_to_bf16((const uint16_t*)x, (const uint16_t*)y, (uint16_t*)o, p);
    else if (bf) matmul_bf16((const uint16_t*)x, (const uint16_t*)y, (float*)o, p);
    else matmul_f32((const float*)x, (const float*)y, (float*)o, p);
  } catch (const dnnl::error& e) {
    throw Napi::Error::New(info.Env(), std::string("matmul: oneDNN error: ") + e.what());
  }
  UNDEF;
}

// matmulLowp(a f32, b Uint16Array(bf16)|Int8Array(int8, or packed NF4 codes), out, kind (0 bf16, 1 int8, 2 nf4),
// scales|null, batch, M, N, K, transA, transB, strideA, alpha, beta): f32 activations times one low-precision weight,
// widened block by block (matmul.cc). int8: scales per stored row; nf4: absmax per 64 elements (required).
KERNEL(MatmulLowp) {
  Args a(info, "matmulLowp", 14);
  const int64_t kind = a.integer(3);
  a.need(kind <= 2, "kind must be 0 (bf16), 1 (int8) or 2 (nf4)");
  size_t na, nb, no, ns;
  const float* x = a.f32(0, &na);
  const void* w = a.arr(1, kind == 0 ? napi_uint16_array : napi_int8_array, &nb);
  float* o = a.f32(2, &no);
  const float* sc = a.f32(4, &ns, true);
  MatmulP p;
  p.batch = a.integer(5); p.M = a.integer(6); p.N = a.integer(7); p.K = a.integer(8);
  p.transA = a.flag(9); p.transB = a.flag(10);
  p.strideA = a.integer(11); p.strideB = 0;
  p.alpha = (float)a.num(12); p.beta = (float)a.num(13);
  size_t nbias = 0;
  if (info.Length() > 14) p.bias = a.f32(14, &nbias, true);  // optional (N) bias, only with beta = 0
  a.need(!p.bias || ((int64_t)nbias >= p.N && p.beta == 0.0f), "bias needs N elements and beta = 0");
  a.need(p.M < (1LL << 31) && p.N < (1LL << 31) && p.K < (1LL << 31), "dimensions must be below 2^31");
  a.need((int64_t)no >= p.batch * p.M * p.N, "out is smaller than batch*M*N");
  if (p.batch > 0 && p.K > 0) {
    a.need((int64_t)na >= (p.batch - 1) * p.strideA + p.M * p.K, "a is smaller than its (batch, M, K) view");
    if (kind == 2) {
      a.need((int64_t)nb >= (p.K * p.N + 1) / 2, "nf4 b holds fewer than K*N codes");
      a.need(sc && (int64_t)ns >= (p.K * p.N + 63) / 64, "nf4 needs an absmax for every 64 elements of b");
    } else {
      a.need((int64_t)nb >= p.K * p.N, "b is smaller than its (K, N) view");
      if (sc) a.need((int64_t)ns >= (p.transB ? p.N : p.K), "scales has fewer entries than b has stored rows");
    }
  }
  matmul_lowp(x, w, kind == 0 ? LowpKind::bf16 : kind == 1 ? LowpKind::i8 : LowpKind::nf4, sc, o, p);
  UNDEF;
}

// quantizeNf4(w f32, codes Int8Array (ceil(n / 2)), absmax f32 (ceil(n / 64))): -1, or the index of a non-finite weight.
KERNEL(QuantizeNf4) {
  Args a(info, "quantizeNf4", 3);
  size_t n, nc, na;
  const float* w = a.f32(0, &n);
  uint8_t* codes = (uint8_t*)a.arr(1, napi_int8_array, &nc);
  float* absmax = a.f32(2, &na);
  a.need((int64_t)nc >= ((int64_t)n + 1) / 2, "codes holds fewer than ceil(n / 2) bytes");
  a.need((int64_t)na >= ((int64_t)n + 63) / 64, "absmax holds fewer than ceil(n / 64) values");
  return Napi::Number::New(info.Env(), (double)quantize_nf4(w, (int64_t)n, codes, absmax));
}

KERNEL(Softmax) {
  Args a(info, "softmax", 5);
  size_t nx, no;
  float* x = a.f32(0, &nx);
  int64_t rows = a.integer(1), cols = a.integer(2);
  float* o = a.f32(3, &no);
  a.need((int64_t)nx >= rows * cols && (int64_t)no >= rows * cols, "buffers are smaller than rows*cols");
  if (cols > 0) softmax(x, rows, cols, o, a.flag(4));
  UNDEF;
}

KERNEL(SoftmaxBackward) {
  Args a(info, "softmaxBackward", 6);
  size_t ny, ng, nd;
  float *y = a.f32(0, &ny), *g = a.f32(1, &ng);
  int64_t rows = a.integer(2), cols = a.integer(3);
  float* d = a.f32(4, &nd);
  const int64_t n = rows * cols;
  a.need((int64_t)ny >= n && (int64_t)ng >= n && (int64_t)nd >= n, "buffers are smaller than rows*cols");
  if (cols > 0) softmax_backward(y, g, rows, cols, d, a.flag(5));
  UNDEF;
}

KERNEL(LayerNorm) {
  Args a(info, "layerNorm", 9);
  size_t nx, ng, nb, no, nm, nr;
  float *x = a.f32(0, &nx), *g = a.f32(1, &ng, true), *b = a.f32(2, &nb, true);
  int64_t rows = a.integer(3), cols = a.integer(4);
  float eps = (float)a.num(5);
  float *o = a.f32(6, &no), *m = a.f32(7, &nm), *r = a.f32(8, &nr);
  a.need((int64_t)nx >= rows * cols && (int64_t)no >= rows * cols, "x/out are smaller than rows*cols");
  a.need((!g || (int64_t)ng >= cols) && (!b || (int64_t)nb >= cols), "gamma/beta are shorter than cols");
  a.need((int64_t)nm >= rows && (int64_t)nr >= rows, "mean/rstd are shorter than rows");
  if (cols > 0) layer_norm(x, g, b, rows, cols, eps, o, m, r);
  UNDEF;
}

KERNEL(LayerNormBackward) {
  Args a(info, "layerNormBackward", 10);
  size_t ny, nx, ng, nm, nr, nd, ndg, ndb;
  float *dy = a.f32(0, &ny), *x = a.f32(1, &nx), *g = a.f32(2, &ng, true), *m = a.f32(3, &nm), *r = a.f32(4, &nr);
  int64_t rows = a.integer(5), cols = a.integer(6);
  float *dx = a.f32(7, &nd), *dg = a.f32(8, &ndg, true), *db = a.f32(9, &ndb, true);
  const int64_t n = rows * cols;
  a.need((int64_t)ny >= n && (int64_t)nx >= n && (int64_t)nd >= n, "dy/x/dx are smaller than rows*cols");
  a.need((!g || (int64_t)ng >= cols) && (!dg || (int64_t)ndg >= cols) && (!db || (int64_t)ndb >= cols),
         "gamma/dgamma/dbeta are shorter than cols");
  a.need((int64_t)nm >= rows && (int64_t)nr >= rows, "mean/rstd are shorter than rows");
  if (cols > 0) layer_norm_backward(dy, x, g, m, r, rows, cols, dx, dg, db);
  UNDEF;
}

KERNEL(LayerNormBackwardFromOutput) {
  Args a(info, "layerNormBackwardFromOutput", 10);
  size_t ny, nyy, ng, nb, nr, nd, ndg, ndb;
  float *dy = a.f32(0, &ny), *y = a.f32(1, &nyy), *g = a.f32(2, &ng), *b = a.f32(3, &nb, true), *r = a.f32(4, &nr);
  int64_t rows = a.integer(5), cols = a.integer(6);
  float *dx = a.f32(7, &nd), *dg = a.f32(8, &ndg, true), *db = a.f32(9, &ndb, true);
  const int64_t n = rows * cols;
  a.need((int64_t)ny >= n && (int64_t)nyy >= n && (int64_t)nd >= n, "dy/y/dx are smaller than rows*cols");
  a.need((int64_t)ng >= cols && (!b || (int64_t)nb >= cols) && (!dg || (int64_t)ndg >= cols) && (!db || (int64_t)ndb >= cols),
         "gamma/beta/dgamma/dbeta are shorter than cols");
  a.need((int64_t)nr >= rows, "rstd is shorter than rows");
  if (cols > 0) layer_norm_backward_y(dy, y, g, b, r, rows, cols, dx, dg, db);
  UNDEF;
}

KERNEL(RmsNorm) {
  Args a(info, "rmsNorm", 7);
  size_t nx, ng, no, nr;
  float *x = a.f32(0, &nx), *g = a.f32(1, &ng, true);
  int64_t rows = a.integer(2), cols = a.integer(3);
  float eps = (float)a.num(4);
  float *o = a.f32(5, &no), *r = a.f32(6, &nr);
  a.need((int64_t)nx >= rows * cols && (int64_t)no >= rows * cols, "x/out are smaller than rows*cols");
  a.need(!g || (int64_t)ng >= cols, "gamma is shorter than cols");
  a.need((int64_t)nr >= rows, "rstd is shorter than rows");
  if (cols > 0) rms_norm(x, g, rows, cols, eps, o, r);
  UNDEF;
}

KERNEL(RmsNormBackward) {
  Args a(info, "rmsNormBackward", 8);
  size_t ny, nx, ng, nr, nd, ndg;
  float *dy = a.f32(0, &ny), *x = a.f32(1, &nx), *g = a.f32(2, &ng, true), *r = a.f32(3, &nr);
  int64_t rows = a.integer(4), cols = a.integer(5);
  float *dx = a.f32(6, &nd), *dg = a.f32(7, &ndg, true);
  const int64_t n = rows * cols;
  a.need((int64_t)ny >= n && (int64_t)nx >= n && (int64_t)nd >= n, "dy/x/dx are smaller than rows*cols");
  a.need((!g || (int64_t)ng >= cols) && (!dg || (int64_t)ndg >= cols), "gamma/dgamma are shorter than cols");
  a.need((int64_t)nr >= rows, "rstd is shorter than rows");
  if (cols > 0) rms_norm_backward(dy, x, g, r, rows, cols, dx, dg);
  UNDEF;
}

KERNEL(RmsNormBackwardFromOutput) {
  Args a(info, "rmsNormBackwardFromOutput", 8);
  size_t ny, nyy, ng, nr, nd, ndg;
  float *dy = a.f32(0, &ny), *y = a.f32(1, &nyy), *g = a.f32(2, &ng), *r = a.f32(3, &nr);
  int64_t rows = a.integer(4), cols = a.integer(5);
  float *dx = a.f32(6, &nd), *dg = a.f32(7, &ndg, true);
  const int64_t n = rows * cols;
  a.need((int64_t)ny >= n && (int64_t)nyy >= n && (int64_t)nd >= n, "dy/y/dx are smaller than rows*cols");
  a.need((int64_t)ng >= cols && (!dg || (int64_t)ndg >= cols), "gamma/dgamma are shorter than cols");
  a.need((int64_t)nr >= rows, "rstd is shorter than rows");
  if (cols > 0) rms_norm_backward_y(dy, y, g, r, rows, cols, dx, dg);
  UNDEF;
}

void check_indices(const Args& a, const int32_t* idx, size_t n, size_t tableRows) {
  for (size_t i = 0; i < n; i++)
    if (idx[i] < 0 || (size_t)idx[i] >= tableRows)
      a.need(false, "index " + std::to_string(idx[i]) + " at " + std::to_string(i) + " is outside [0, " +
                        std::to_string(tableRows) + ")");
}

KERNEL(Gather) {
  Args a(info, "gather", 4);
  size_t nt, ni, no;
  float* t = a.f32(0, &nt);
  int32_t* idx = a.i32(1, &ni);
  int64_t cols = a.integer(2);
  float* o = a.f32(3, &no);
  a.need((int64_t)no >= (int64_t)ni * cols, "out is smaller than idx.length*cols");
  if (cols == 0 || ni == 0) UNDEF;
  check_indices(a, idx, ni, nt / cols);
  gather(t, idx, ni, cols, o);
  UNDEF;
}

KERNEL(ScatterAdd) {
  Args a(info, "scatterAdd", 4);
  size_t ns, ni, nt;
  float* s = a.f32(0, &ns);
  int32_t* idx = a.i32(1, &ni);
  int64_t cols = a.integer(2);
  float* t = a.f32(3, &nt);
  a.need((int64_t)ns >= (int64_t)ni * cols, "src is smaller than idx.length*cols");
  if (cols == 0 || ni == 0) UNDEF;
  check_indices(a, idx, ni, nt / cols);
  scatter_add(s, idx, ni, cols, t);
  UNDEF;
}

void check_targets(const Args& a, const int32_t* t, int64_t rows, int64_t cols, int32_t ignore) {
  for (int64_t r = 0; r < rows; r++)
    if (t[r] != ignore && (t[r] < 0 || t[r] >= cols))
      a.need(false, "target " + std::to_string(t[r]) + " at row " + std::to_string(r) + " is outside [0, " +
                        std::to_string(cols) + ")");
}

// What every cross-entropy kernel takes: the targets (argument ti, an Int32Array of at least rows) and, from argument
// di, rows, cols and the ignored target; `rows_of` and `matrix` check the other arguments' lengths.
struct CeRows {
  const Args& a;
  int32_t* t;
  int64_t rows, cols;
  int32_t ignore;
  CeRows(const Args& args, size_t ti, size_t di) : a(args) {
    size_t nt;
    t = a.i32(ti, &nt);
    rows = a.integer(di);
    cols = a.integer(di + 1);
    ignore = (int32_t)a.integer(di + 2, INT32_MIN);
    a.need((int64_t)nt >= rows, "targets are shorter than rows");
  }
  // an f32 argument of at least rows (per-row values) or rows * cols (matrix) elements
  float* rows_of(size_t i, const char* what, bool matrix = false) const {
    size_t n;
    float* p = a.f32(i, &n);
    a.need((int64_t)n >= (matrix ? rows * cols : rows), std::string(what) + (matrix ? " is smaller than rows*cols" : " is shorter than rows"));
    return p;
  }
  // whether there is anything to compute, the targets checked first
  bool any() const {
    if (cols == 0) return false;
    check_targets(a, t, rows, cols, ignore);
    return true;
  }
};

KERNEL(CrossEntropy) {
  Args a(info, "crossEntropy", 8);
  const CeRows c(a, 1, 2);
  const float ls = (float)a.num(5);
  float *x = c.rows_of(0, "logits", true), *l = c.rows_of(6, "loss"), *lp = c.rows_of(7, "logp", true);
  if (c.any()) cross_entropy(x, c.t, c.rows, c.cols, c.ignore, ls, l, lp);
  UNDEF;
}

KERNEL(CrossEntropyBackward) {
  Args a(info, "crossEntropyBackward", 8);
  const CeRows c(a, 1, 2);
  const float ls = (float)a.num(5);
  float *lp = c.rows_of(0, "logp", true), *g = c.rows_of(6, "dloss"), *d = c.rows_of(7, "dlogits", true);
  if (c.any()) cross_entropy_backward(lp, c.t, c.rows, c.cols, c.ignore, ls, g, d);
  UNDEF;
}

// crossEntropyGradBf16(logits (overwritten), targets, rows, cols, ignore, ls, dloss, loss, dlogits Uint16Array | null:
// the gradient rounded to bf16 in logits' own f32 storage)
KERNEL(CrossEntropyGradBf16) {
  Args a(info, "crossEntropyGradBf16", 9);
  const CeRows c(a, 1, 2);
  const float ls = (float)a.num(5);
  float *x = c.rows_of(0, "logits", true), *g = c.rows_of(6, "dloss"), *l = c.rows_of(7, "loss");
  size_t nd;
  uint16_t* d = (uint16_t*)a.arr(8, napi_uint16_array, &nd, true);
  a.need(!d || (int64_t)nd >= c.rows * c.cols, "dlogits is smaller than rows*cols");
  if (c.any()) cross_entropy_grad_bf16(x, c.t, c.rows, c.cols, c.ignore, ls, g, l, d);
  UNDEF;
}

// crossEntropyLse(logits, targets, rows, cols, ignore, loss, lse): crossEntropy without label smoothing and without
// the log-probabilities, each row's log-sum-exp instead (nn.cc cross_entropy_lse)
KERNEL(CrossEntropyLse) {
  Args a(info, "crossEntropyLse", 7);
  const CeRows c(a, 1, 2);
  float *x = c.rows_of(0, "logits", true), *l = c.rows_of(5, "loss"), *e = c.rows_of(6, "lse");
  if (c.any()) cross_entropy_lse(x, c.t, c.rows, c.cols, c.ignore, l, e);
  UNDEF;
}

// crossEntropyBackwardLse(logits, lse, targets, rows, cols, ignore, dloss, dlogits (may be logits))
KERNEL(CrossEntropyBackwardLse) {
  Args a(info, "crossEntropyBackwardLse", 8);
  const CeRows c(a, 2, 3);
  float *x = c.rows_of(0, "logits", true), *e = c.rows_of(1, "lse"), *g = c.rows_of(6, "dloss"), *d = c.rows_of(7, "dlogits", true);
  if (c.any()) cross_entropy_backward_lse(x, e, c.t, c.rows, c.cols, c.ignore, g, d);
  UNDEF;
}

KERNEL(Rope) {
  Args a(info, "rope", 9);
  size_t nx, nc, ns, no;
  float *x = a.f32(0, &nx), *c = a.f32(1, &nc), *s = a.f32(2, &ns);
  int64_t rows = a.integer(3), T = a.integer(4), D = a.integer(5), rot = a.integer(6);
  bool inv = a.flag(7);
  float* o = a.f32(8, &no);
  a.need(rot % 2 == 0 && rot <= D, "rotDim must be even and <= D");
  a.need((int64_t)nx >= rows * T * D && (int64_t)no >= rows * T * D, "x/out are smaller than rows*T*D");
  a.need((int64_t)nc >= T * (rot / 2) && (int64_t)ns >= T * (rot / 2), "cos/sin are smaller than T*rotDim/2");
  if (D > 0) rope(x, c, s, rows, T, D, rot, inv, o);
  UNDEF;
}

KERNEL(DropoutMask) {
  Args a(info, "dropoutMask", 3);
  double seed = a.num(0);
  double p = a.num(1);
  size_t n;
  float* m = a.f32(2, &n);
  a.need(std::isfinite(seed), "seed must be finite");
  const uint32_t s = (uint32_t)(uint64_t)(int64_t)std::fmod(std::trunc(seed), 4294967296.0);
  dropout_mask(s, p, m, n);
  UNDEF;
}

KERNEL(AdamW) {
  Args a(info, "adamw", 11);
  size_t np, ng, nm, nv;
  float *p = a.f32(0, &np), *g = a.f32(1, &ng), *m = a.f32(2, &nm), *v = a.f32(3, &nv);
  a.need(ng >= np && nm >= np && nv >= np, "grad/m/v are shorter than param");
  // optional: a Uint16Array that gets the updated param's bf16 copy (the cast's bits), as long as param
  size_t n16 = 0;
  uint16_t* out16 = info.Length() > 11 ? (uint16_t*)a.arr(11, napi_uint16_array, &n16, true) : nullptr;
  a.need(!out16 || n16 == np, "the bf16 copy's length is not param's");
  adamw(p, g, m, v, np, a.num(4), a.num(5), a.num(6), a.num(7), a.num(8), a.num(9), a.num(10), out16);
  UNDEF;
}

// adamw8bit(p, g, state1 u8, state2 u8, absmax1, absmax2, map1 (256), map2 (256), lr, b1, b2, eps, wd, corr1, corr2, gs)
KERNEL(AdamW8bit) {
  Args a(info, "adamw8bit", 16);
  size_t np, ng, n1, n2, na1, na2, nm1, nm2;
  float *p = a.f32(0, &np), *g = a.f32(1, &ng);
  uint8_t* c1 = (uint8_t*)a.arr(2, napi_uint8_array, &n1);
  uint8_t* c2 = (uint8_t*)a.arr(3, napi_uint8_array, &n2);
  float *a1 = a.f32(4, &na1), *a2 = a.f32(5, &na2);
  const float *m1 = a.f32(6, &nm1), *m2 = a.f32(7, &nm2);
  a.need(ng >= np && n1 >= np && n2 >= np, "grad/state1/state2 are shorter than param");
  a.need((int64_t)na1 >= ((int64_t)np + 255) / 256 && (int64_t)na2 >= ((int64_t)np + 255) / 256, "absmax1/absmax2 hold fewer than one value per 256 elements");
  a.need(nm1 == 256 && nm2 == 256, "map1/map2 are not 256 values");
  adamw8bit(p, g, c1, c2, a1, a2, m1, m2, (int64_t)np, a.num(8), a.num(9), a.num(10), a.num(11), a.num(12), a.num(13), a.num(14), a.num(15));
  UNDEF;
}

KERNEL(Sgd) {
  Args a(info, "sgd", 10);
  size_t np, ng, nb;
  float *p = a.f32(0, &np), *g = a.f32(1, &ng), *b = a.f32(2, &nb);
  double mom = a.num(4);
  a.need(ng >= np && (mom == 0.0 || nb >= np), "grad/buf are shorter than param");
  size_t n16 = 0;  // optional, as adamw's
  uint16_t* out16 = info.Length() > 10 ? (uint16_t*)a.arr(10, napi_uint16_array, &n16, true) : nullptr;
  a.need(!out16 || n16 == np, "the bf16 copy's length is not param's");
  sgd(p, g, b, np, a.num(3), mom, a.num(5), a.flag(6), a.num(7), a.flag(8), a.num(9), out16);
  UNDEF;
}

KERNEL(Info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const dnnl_version_t* v = dnnl_version();
  o.Set("blasConfig", blas_config());
  o.Set("blasCore", blas_core());
  o.Set("onednnVersion", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
  o.Set("onednnIsa", onednn_isa());
  o.Set("bf16Path", bf16_path());
  o.Set("threads", num_threads());
  return o;
}

// The calling thread's own CPU time in ms (the profiling scripts' kernel timer: leaves out V8's collector threads)
KERNEL(ThreadCpuMs) {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return Napi::Number::New(info.Env(), ts.tv_sec * 1e3 + ts.tv_nsec / 1e6);
}

KERNEL(SetNumThreads) {
  Args a(info, "setNumThreads", 1);
  set_num_threads((int)a.integer(0));
  UNDEF;
}

}  // namespace

void register_more(Napi::Env env, Napi::Object exports) {
  auto fn = [&](const char* name, Napi::Value (*f)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, f, name));
  };
  fn("matmul", Matmul);
  fn("matmulLowp", MatmulLowp);
  fn("quantizeNf4", QuantizeNf4);
  fn("softmax", Softmax);
  fn("softmaxBackward", SoftmaxBackward);
  fn("layerNorm", LayerNorm);
  fn("layerNormBackward", LayerNormBackward);
  fn("layerNormBackwardFromOutput", LayerNormBackwardFromOutput);
  fn("rmsNorm", RmsNorm);
  fn("rmsNormBackward", RmsNormBackward);
  fn("rmsNormBackwardFromOutput", RmsNormBackwardFromOutput);
  fn("gather", Gather);
  fn("scatterAdd", ScatterAdd);
  fn("crossEntropy", CrossEntropy);
  fn("crossEntropyBackward", CrossEntropyBackward);
  fn("crossEntropyGradBf16", CrossEntropyGradBf16);
  fn("crossEntropyLse", CrossEntropyLse);
  fn("crossEntropyBackwardLse", CrossEntropyBackwardLse);
  fn("rope", Rope);
  fn("dropoutMask", DropoutMask);
  fn("adamw", AdamW);
  fn("adamw8bit", AdamW8bit);
  fn("sgd", Sgd);
  fn("info", Info);
  fn("setNumThreads", SetNumThreads);
  fn("threadCpuMs", ThreadCpuMs);
}

}  // namespace ag
