// Fused attention with bf16 products, for bf16 autocast (as PyTorch's autocast runs attention's products in bf16).
//
// The same scheme as attention.cc (masks, per-row softmax statistics, P rebuilt in the backward pass from them, so
// nothing Tq x Tk is held between the passes), but the products run batched over every (batch, head) at once through
// matmul_bf16 (oneDNN's bf16 kernels where the CPU has them; widened to f32 sgemm elsewhere), not per head in f32:
// - q, k, v (f32 views at their strides) are packed once into dense bf16 (B, H, T, D); the backward pass keeps these
//   (half the bytes of the f32 projection it would hold otherwise);
// - S = scale Q K^T in f32, each row's softmax in f32 (attention.h's softmax_at: the same statistics), P rounded to
//   bf16; O = P V in f32, written at the output's strides;
// - backward: S and P again (the same product and statistics: the same bits), dO packed to bf16, dV = P^T dO,
//   dP = dO V^T, dS = P (dP - rowsum(dP P)) scale in f32 rounded to bf16, dQ = dS K, dK = dS^T Q, each written at
//   the strides of q, k, v.
// Grouped-query heads (Hkv < H) are not handled here (the caller uses attention.cc for them).
// Scratch: S (f32) and P, dS (bf16), 8 bytes a score, plus one f32 and one bf16 (B, H, T, D) buffer, kept per thread
// between calls. The (batch, head) blocks run in chunks whose scores fit kScoreBudget (whole batch rows where one
// fits, else heads of one row; `for_chunks`), so the scratch stays bounded at long sequences: all of B*H*Tq*Tk at
// once would be 800 MB at GPT-2 small's 8 x 1,024 tokens. The workloads' shapes fit one chunk (GPT-2's 8 x 128
// tokens: 12.6 MB).
#include <atomic>
#include <vector>
#include "attention.h"

namespace ag {
using namespace attn;
namespace {

// The rows of a (B, H, T, D) view at strides st, one (batch, head) block of T rows per iteration (no divisions per row)
template <class RowF>
void for_blocks(int64_t B, int64_t H, int64_t T, int64_t D, RowF rowf) {
#pragma omp parallel for schedule(static) if (par(B * H * T * D))
  for (int64_t bh = 0; bh < B * H; bh++) {
    const int64_t b = bh / H, h = bh % H;
    for (int64_t t = 0; t < T; t++) rowf(b, h, t, bh * T + t);
  }
}

// A (B, H, T, D) f32 view at strides st, packed into dense bf16 (B, H, T, D)
void pack(const float* src, const int64_t* st, int64_t B, int64_t H, int64_t T, int64_t D, uint16_t* dst) {
  for_blocks(B, H, T, D, [&](int64_t b, int64_t h, int64_t t, int64_t r) {
    f32_to_bf16_row(src + b * st[0] + h * st[1] + t * st[2], dst + r * D, D);
  });
}

// q, k and v packed as `pack` does, in one parallel loop (one fork/join instead of three)
void pack_qkv(const Shape& p, const float* q, const float* k, const float* v, uint16_t* ql, uint16_t* kl, uint16_t* vl) {
  const int64_t BH = p.B * p.H;
#pragma omp parallel for schedule(static) if (par(BH * (p.Tq * p.D + p.Tk * (p.D + p.Dv))))
  for (int64_t i = 0; i < 3 * BH; i++) {
    const int w = (int)(i / BH);
    const int64_t bh = i % BH, b = bh / p.H, h = bh % p.H, T = w == 0 ? p.Tq : p.Tk, D = w == 2 ? p.Dv : p.D;
    const int64_t* st = w == 0 ? p.qs : w == 1 ? p.ks : p.vs;
    const float* src = (w == 0 ? q : w == 1 ? k : v) + b * st[0] + h * st[1];
    uint16_t* dst = (w == 0 ? ql : w == 1 ? kl : vl) + bh * T * D;
    for (int64_t t = 0; t < T; t++) f32_to_bf16_row(src + t * st[2], dst + t * D, D);
  }
}

// Dense f32 (B, H, T, D) written into a view at strides st
void scatter(const float* src, int64_t B, int64_t H, int64_t T, int64_t D, float* dst, const int64_t* st) {
  for_blocks(B, H, T, D, [&](int64_t b, int64_t h, int64_t t, int64_t r) {
    float* o = dst + b * st[0] + h * st[1] + t * st[2];
    const float* s = src + r * D;
    for (int64_t j = 0; j < D; j++) o[j] = s[j];
  });
}

// batch products of dense matrices: (M, K) @ (K, N), either stored transposed
MatmulP mm(int64_t batch, int64_t M, int64_t N, int64_t K, bool transA, bool transB, float alpha) {
  MatmulP p;
  p.batch = batch; p.M = M; p.N = N; p.K = K;
  p.strideA = M * K; p.strideB = K * N;
  p.transA = transA; p.transB = transB;
  p.alpha = alpha; p.beta = 0.0f;
  return p;
}

// A batched product whose (B, H, M, N) result goes to a view at strides st: written there by oneDNN directly where it
// can, else densely into G and scattered
void product_to(const uint16_t* a, const uint16_t* b, const MatmulP& m, int64_t B, int64_t H, float* G, float* dst,
                const int64_t* st) {
  if (matmul_bf16_out_strided(a, b, dst, m, B, H, st)) return;
  matmul_bf16(a, b, G, m);
  scatter(G, B, H, m.M, m.N, dst, st);
}

// S = scale Q K^T, then each row's softmax (writing its statistics) or, with `rebuild`, the row rebuilt from them;
// P gets the rows rounded to bf16
void probs(const Shape& p, const uint16_t* ql, const uint16_t* kl, float* S, uint16_t* P, float* stats, bool rebuild) {
  const int64_t rows = p.B * p.H * p.Tq;
  matmul_bf16(ql, kl, S, mm(p.B * p.H, p.Tq, p.Tk, p.D, false, true, p.scale));
#pragma omp parallel for schedule(static) if (par(rows * p.Tk))
  for (int64_t bh = 0; bh < p.B * p.H; bh++) {
    const int64_t b = bh / p.H;
    const float* km = p.keymask ? p.keymask + b * p.Tk : nullptr;
    const int32_t* fk = p.firstkey ? p.firstkey + b * p.Tq : nullptr;
    for (int64_t i = 0, r = bh * p.Tq; i < p.Tq; i++, r++) {
      const int64_t vis = visible_keys(p, i);
      float* row = S + r * p.Tk;
      if (rebuild) rebuild_at(row, p.Tk, vis, first_key(fk, i, vis), km, stats + r * 2);
      else softmax_at(row, p.Tk, vis, first_key(fk, i, vis), km, stats + r * 2);
      f32_to_bf16_row(row, P + r * p.Tk, p.Tk);
    }
  }
}

// Per-thread scratch, kept between calls (grow-only): fresh buffers of a few MB each call came back from the OS as
// zeroed pages (glibc returns the heap top promptly), and their page faults cost more than the products.
struct Scratch {
  std::vector<float> S, G;
  std::vector<uint16_t> P, dS, dO;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

void forward(const Shape& p, const float* q, const float* k, const float* v, float* out, float* stats, uint16_t* ql,
             uint16_t* kl, uint16_t* vl) {
  const int64_t BH = p.B * p.H;
  pack_qkv(p, q, k, v, ql, kl, vl);
  Scratch& sc = scratch();
  float* S = sized(sc.S, BH * p.Tq * p.Tk);
  uint16_t* P = sized(sc.P, BH * p.Tq * p.Tk);
  probs(p, ql, kl, S, P, stats, false);
  product_to(P, vl, mm(BH, p.Tq, p.Dv, p.Tk, false, false, 1.0f), p.B, p.H, sized(sc.G, BH * p.Tq * p.Dv), out, p.os);
}

void backward(const Shape& p, const uint16_t* ql, const uint16_t* kl, const uint16_t* vl, const float* stats,
              const float* dout, const int64_t* dos, float* dq, float* dk, float* dv) {
  const int64_t BH = p.B * p.H, rows = BH * p.Tq;
  Scratch& sc = scratch();
  float* S = sized(sc.S, rows * p.Tk);
  uint16_t* P = sized(sc.P, rows * p.Tk);
  uint16_t* dS = sized(sc.dS, rows * p.Tk);
  uint16_t* dO = sized(sc.dO, BH * p.Tq * p.Dv);
  float* G = sized(sc.G, BH * std::max(p.Tq, p.Tk) * std::max(p.D, p.Dv));
  probs(p, ql, kl, S, P, const_cast<float*>(stats), true);  // rebuild reads the statistics only
  pack(dout, dos, p.B, p.H, p.Tq, p.Dv, dO);
  // dV = P^T dO
  product_to(P, dO, mm(BH, p.Tk, p.Dv, p.Tq, true, false, 1.0f), p.B, p.H, G, dv, p.vs);
  // dP = dO V^T (into S), then dS = P (dP - rowsum(dP P)) scale
  matmul_bf16(dO, vl, S, mm(BH, p.Tq, p.Tk, p.Dv, false, true, 1.0f));
#pragma omp parallel if (par(rows * p.Tk))
  {
    std::vector<float> pf((size_t)p.Tk);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      float* d = S + r * p.Tk;
      const uint16_t* pr = P + r * p.Tk;
      for (int64_t j = 0; j < p.Tk; j++) pf[j] = bf16_to_f32(pr[j]);
      // rowsum(dP P) in double (a fixed order: the same bits on every run)
      const float c = (float)dot_d(d, pf.data(), p.Tk);
      for (int64_t j = 0; j < p.Tk; j++) d[j] = pf[j] * (d[j] - c) * p.scale;
      f32_to_bf16_row(d, dS + r * p.Tk, p.Tk);
    }
  }
  // dQ = dS K
  product_to(dS, kl, mm(BH, p.Tq, p.D, p.Tk, false, false, 1.0f), p.B, p.H, G, dq, p.qs);
  // dK = dS^T Q
  product_to(dS, ql, mm(BH, p.Tk, p.D, p.Tq, true, false, 1.0f), p.B, p.H, G, dk, p.ks);
}

// The scores one chunk of (batch, head) blocks may hold in scratch (S, P, dS: 8 bytes each); tests set it lower
// (attentionBf16Budget) to run the chunked paths on small shapes.
constexpr int64_t kScoreBudget = 4 << 20;  // 32 MiB of scratch
std::atomic<int64_t> score_budget{kScoreBudget};

// Runs f(sub, b0, h0) over chunks of the (batch, head) blocks: sub is p restricted to batch rows [b0, b0 + sub.B) and
// heads [h0, h0 + sub.H) (its masks from row b0 on); whole rows where one row's scores fit the budget, else heads of
// one row. Every block's products, softmax and packing are its own, so the chunks compute what one call does, with
// the same bits on every run of a shape and budget; a chunk's batch count may take another product kernel than one
// call's (one matrix against several), so the last bits may differ from one call's.
template <class F>
void for_chunks(const Shape& p, F f) {
  const int64_t per = std::max<int64_t>(1, score_budget.load(std::memory_order_relaxed) / (p.Tq * p.Tk));
  const int64_t nb = per >= p.H ? per / p.H : 1, nh = per >= p.H ? p.H : per;  // batch rows, heads a chunk
  Shape sub = p;
  for (int64_t b0 = 0; b0 < p.B; b0 += nb) {
    sub.B = std::min(nb, p.B - b0);
    sub.keymask = p.keymask ? p.keymask + b0 * p.Tk : nullptr;
    sub.firstkey = p.firstkey ? p.firstkey + b0 * p.Tq : nullptr;
    for (int64_t h0 = 0; h0 < p.H; h0 += nh) {
      sub.H = sub.Hkv = std::min(nh, p.H - h0);
      f(sub, b0, h0);
    }
  }
}

// Offsets of block (b0, h0): in a view at strides st, and in a dense (B, H, T, D) buffer
inline int64_t at(const int64_t* st, int64_t b0, int64_t h0) { return b0 * st[0] + h0 * st[1]; }
inline int64_t dense(const Shape& p, int64_t b0, int64_t h0, int64_t TD) { return (b0 * p.H + h0) * TD; }

uint16_t* u16(const Args& a, size_t i, size_t* n) { return (uint16_t*)a.arr(i, napi_uint16_array, n); }
// argument i is a Uint16Array (bf16; the tiles' bf16 out, dout and gradients)
bool is_u16(const Napi::CallbackInfo& info, size_t i) {
  return info[i].IsTypedArray() && info[i].As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
}

}  // namespace

// attentionBf16(shape, q, k, v, keyMask|null, firstKey|null, out, stats, ql, kl, vl): as attention (q, k, v f32, or bf16
// on the tiles), and the packed bf16 q, k, v ((B, H, T, D) dense) for the backward pass
KERNEL(JsAttentionBf16) {
  Args a(info, "attentionBf16", 11);
  Shape s = read_shape(a, 0);
  size_t nq, nk, nv, nm, nf = 0, no, np, nql, nkl, nvl;
  // bf16 q, k, v (Uint16Arrays, all three): the tiles read them (a projection written in bf16)
  const bool in16 = is_u16(info, 1);
  const auto input = [&](size_t i, size_t* n) { return in16 ? (const void*)u16(a, i, n) : (const void*)a.f32(i, n); };
  const void* q = input(1, &nq);
  const void* k = input(2, &nk);
  const void* v = input(3, &nv);
  s.keymask = a.f32(4, &nm, true);
  s.firstkey = (a.info[5].IsNull() || a.info[5].IsUndefined()) ? nullptr : a.i32(5, &nf);
  // a bf16 output (Uint16Array): the tiles write it (the projection after attention reads bf16)
  const bool o16 = is_u16(info, 6);
  void* out = o16 ? (void*)u16(a, 6, &no) : (void*)a.f32(6, &no);
  float* stats = a.f32(7, &np);
  uint16_t* ql = u16(a, 8, &nql);
  uint16_t* kl = u16(a, 9, &nkl);
  uint16_t* vl = u16(a, 10, &nvl);
  a.need(s.H == s.Hkv, "grouped-query heads (Hkv < H) are not supported");
  a.need(!s.firstkey || (int64_t)nf >= s.B * s.Tq, "firstKey must hold B*Tq elements");
  a.need(extent(s.qs, s.B, s.H, s.Tq, s.D) <= (int64_t)nq, "q is smaller than its strides reach");
  a.need(extent(s.ks, s.B, s.Hkv, s.Tk, s.D) <= (int64_t)nk, "k is smaller than its strides reach");
  a.need(extent(s.vs, s.B, s.Hkv, s.Tk, s.Dv) <= (int64_t)nv, "v is smaller than its strides reach");
  a.need(extent(s.os, s.B, s.H, s.Tq, s.Dv) <= (int64_t)no, "out is smaller than its strides reach");
  a.need((int64_t)np >= s.B * s.H * s.Tq * 2, "stats must hold B*H*Tq*2 elements");
  a.need(!s.keymask || (int64_t)nm >= s.B * s.Tk, "keyMask must hold B*Tk elements");
  a.need((int64_t)nql >= s.B * s.H * s.Tq * s.D && (int64_t)nkl >= s.B * s.H * s.Tk * s.D &&
         (int64_t)nvl >= s.B * s.H * s.Tk * s.Dv, "ql, kl, vl must hold B*H*Tq*D, B*H*Tk*D and B*H*Tk*Dv elements");
  a.need((!o16 && !in16) || amx_attention_takes(s), "bf16 q, k, v and a bf16 out are taken on AMX tiles only (attentionBf16Tiles)");
  if (amx_attention_takes(s)) {
    amx_attention_forward(s, q, k, v, in16, out, o16, stats, ql, kl, vl);
    return info.Env().Undefined();
  }
  const float *qf = (const float*)q, *kf = (const float*)k, *vf = (const float*)v;
  for_chunks(s, [&](const Shape& c, int64_t b0, int64_t h0) {
    forward(c, qf + at(s.qs, b0, h0), kf + at(s.ks, b0, h0), vf + at(s.vs, b0, h0), (float*)out + at(s.os, b0, h0),
            stats + dense(s, b0, h0, s.Tq * 2), ql + dense(s, b0, h0, s.Tq * s.D), kl + dense(s, b0, h0, s.Tk * s.D),
            vl + dense(s, b0, h0, s.Tk * s.Dv));
  });
  UNDEF;
}

// attentionBf16Backward(shape, ql, kl, vl, keyMask|null, firstKey|null, stats, dout, doutStrides, dq, dk, dv): dq, dk,
// dv written at shape's q, k, v strides; Float32Arrays, or (on the AMX tiles) Uint16Arrays of bf16
KERNEL(JsAttentionBf16Backward) {
  Args a(info, "attentionBf16Backward", 12);
  Shape s = read_shape(a, 0);
  size_t nql, nkl, nvl, nm, nf = 0, np, nd, ndq, ndk, ndv;
  const uint16_t* ql = u16(a, 1, &nql);
  const uint16_t* kl = u16(a, 2, &nkl);
  const uint16_t* vl = u16(a, 3, &nvl);
  s.keymask = a.f32(4, &nm, true);
  s.firstkey = (a.info[5].IsNull() || a.info[5].IsUndefined()) ? nullptr : a.i32(5, &nf);
  const float* stats = a.f32(6, &np);
  const bool d16 = is_u16(info, 7);
  const void* dout = d16 ? (const void*)u16(a, 7, &nd) : (const void*)a.f32(7, &nd);
  auto dos = a.ints(8, true);
  // bf16 gradients (Uint16Arrays, all three): the tiles write them (the fused qkv's, read by bf16 products)
  const bool g16 = is_u16(info, 9);
  const auto grad = [&](size_t i, size_t* n) { return g16 ? (void*)u16(a, i, n) : (void*)a.f32(i, n); };
  void* dq = grad(9, &ndq);
  void* dk = grad(10, &ndk);
  void* dv = grad(11, &ndv);
  a.need((!g16 && !d16) || amx_attention_takes(s), "bf16 dout, dq, dk, dv are taken on AMX tiles only (attentionBf16Tiles)");
  a.need(s.H == s.Hkv, "grouped-query heads (Hkv < H) are not supported");
  a.need(!s.firstkey || (int64_t)nf >= s.B * s.Tq, "firstKey must hold B*Tq elements");
  a.need(dos.size() == 3, "doutStrides must be 3 strides");
  a.need((int64_t)nql >= s.B * s.H * s.Tq * s.D && (int64_t)nkl >= s.B * s.H * s.Tk * s.D &&
         (int64_t)nvl >= s.B * s.H * s.Tk * s.Dv, "ql, kl, vl must hold B*H*Tq*D, B*H*Tk*D and B*H*Tk*Dv elements");
  a.need(extent(s.qs, s.B, s.H, s.Tq, s.D) <= (int64_t)ndq, "dq is smaller than its strides reach");
  a.need(extent(s.ks, s.B, s.Hkv, s.Tk, s.D) <= (int64_t)ndk, "dk is smaller than its strides reach");
  a.need(extent(s.vs, s.B, s.Hkv, s.Tk, s.Dv) <= (int64_t)ndv, "dv is smaller than its strides reach");
  a.need(extent(dos.data(), s.B, s.H, s.Tq, s.Dv) <= (int64_t)nd, "dout is smaller than its strides reach");
  a.need((int64_t)np >= s.B * s.H * s.Tq * 2, "stats must hold B*H*Tq*2 elements");
  a.need(!s.keymask || (int64_t)nm >= s.B * s.Tk, "keyMask must hold B*Tk elements");
  if (amx_attention_takes(s)) {
    amx_attention_backward(s, ql, kl, vl, stats, dout, d16, dos.data(), dq, dk, dv, g16);
    return info.Env().Undefined();
  }
  for_chunks(s, [&](const Shape& c, int64_t b0, int64_t h0) {
    backward(c, ql + dense(s, b0, h0, s.Tq * s.D), kl + dense(s, b0, h0, s.Tk * s.D), vl + dense(s, b0, h0, s.Tk * s.Dv),
             stats + dense(s, b0, h0, s.Tq * 2), (const float*)dout + at(dos.data(), b0, h0), dos.data(), (float*)dq + at(s.qs, b0, h0),
             (float*)dk + at(s.ks, b0, h0), (float*)dv + at(s.vs, b0, h0));
  });
  UNDEF;
}

// attentionBf16Budget(scores): the scores a chunk may hold (see for_chunks); 0 restores the default. For tests.
KERNEL(JsAttentionBf16Budget) {
  Args a(info, "attentionBf16Budget", 1);
  const int64_t n = a.integer(0);
  score_budget.store(n == 0 ? kScoreBudget : n, std::memory_order_relaxed);
  UNDEF;
}

// attentionBf16Tiles(on|undefined[, Tq, Tk, D, Dv]): with a boolean, AMX tiles on or off for the bf16 kernel (tests, A/B
// runs); returns whether they run (see attention_amx.cc), with sizes: for a shape of those sizes (H = Hkv)
KERNEL(JsAttentionBf16Tiles) {
  if (info.Length() > 0 && info[0].IsBoolean()) amx_attention_enable(info[0].As<Napi::Boolean>().Value());
  if (info.Length() < 5) return Napi::Boolean::New(info.Env(), amx_attention_available());
  Args a(info, "attentionBf16Tiles", 5);
  Shape s{};
  s.B = s.H = s.Hkv = 1;
  s.Tq = a.integer(1); s.Tk = a.integer(2); s.D = a.integer(3); s.Dv = a.integer(4);
  return Napi::Boolean::New(info.Env(), amx_attention_takes(s));
}

void register_attention_bf16(Napi::Env env, Napi::Object exports) {
  exports.Set("attentionBf16Tiles", Napi::Function::New(env, JsAttentionBf16Tiles, "attentionBf16Tiles"));
  exports.Set("attentionBf16Budget", Napi::Function::New(env, JsAttentionBf16Budget, "attentionBf16Budget"));
  exports.Set("attentionBf16", Napi::Function::New(env, JsAttentionBf16, "attentionBf16"));
  exports.Set("attentionBf16Backward", Napi::Function::New(env, JsAttentionBf16Backward, "attentionBf16Backward"));
}

}  // namespace ag
