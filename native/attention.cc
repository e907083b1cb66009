// Fused scaled-dot-product attention, forward and backward, over strided q/k/v/out views.
//
// Each (batch, head) is one independent problem: S = scale * Q K^T (Tq x Tk), P = softmax(S + masks), O = P V.
// q, k, v and out are addressed through (batch, head, position) strides with a contiguous feature dim, so a
// fused qkv projection (B, T, 3, H, hs) or a (B, T, H, hs) projection is read in place: no head-split copies.
// The loop runs over (batch, kv-head) pairs in parallel (grouped-query heads that share a kv head run in the same
// iteration, so dK/dV accumulate without races). The per-head products run through small_gemm.h's register tiles,
// not BLAS (whose packing and dispatch cost as much as these products' arithmetic: 1.4-1.6x the time at 32 x 32 x
// 64, single-threaded, hot): K and V are transposed once per kv head where a product needs them as rows of K^T or
// V^T, and each block of rows computes only the keys it can see (Reach: the causal triangle, a packed row's
// document), with the same bits as the whole product. P itself is not kept: the forward pass stores each row's
// max and 1/sum (B, H, Tq, 2), and the backward pass recomputes S = scale Q K^T and rebuilds P bit for bit (one
// more small product per head; for GPT-2 small at 8 x 128 tokens, 6.3 MB less held per block).
// Masking: causal (query i, the (Tk-Tq+i)-th position, sees keys j <= Tk-Tq+i), a (B, Tk) key mask, 1 = masked,
// and a (B, Tq) first allowed key per query (packed rows: query i sees keys j >= firstKey[b, i], its document's
// start; the keys before it get P = 0 and the row's softmax runs over [firstKey, visible) only).
// A query row whose keys are all masked gets P = 0 (output 0) rather than NaN.
// The row helpers and the shape are in attention.h; attention_bf16.cc runs the same scheme with bf16 products.
#include <cblas.h>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <vector>
#include "attention.h"
#include "small_gemm.h"

namespace ag {
using namespace attn;
namespace {

// The transposed products' key blocks: past 512 x 512 keys (1 MiB of P) they run through BLAS on blocks of kBlasKeys
// keys (at_b), below through the 6-row tiles
constexpr int64_t kBlasKeys = 128;
inline bool transposed_by_blas(int64_t rows, int64_t lda) { return rows * lda * (int64_t)sizeof(float) > (1 << 20); }
inline int64_t key_block(const Shape& p) { return transposed_by_blas(p.Tq, p.Tk) ? kBlasKeys : sg::kMR; }

// Which keys a block of query rows can see, and which queries can see a block of keys, in one batch row: the causal
// triangle and, with packed rows, each query's first key (its document's start). The products compute no more (the
// rest of P and dS is zero), so a packed row of short documents costs about its documents' squares, not its own.
struct Reach {
  const Shape& p;
  const int64_t width;                  // the transposed products' key blocks (key_block)
  const int32_t* fk = nullptr;
  std::vector<int64_t> lo, suffix_min;  // per query: its first visible key; the least of those from it on
  std::vector<int64_t> z0, z1;          // per query: the keys of its rows of P and dS that products read (span)
  Reach(const Shape& s, int64_t w) : p(s), width(w), z0((size_t)s.Tq), z1((size_t)s.Tq) {
    if (s.firstkey) { lo.resize((size_t)s.Tq); suffix_min.resize((size_t)s.Tq); }
  }
  void set_row(const int32_t* first) {
    fk = first;
    bool ordered = true;  // lo does not decrease (documents one after another)
    if (fk) {
      for (int64_t i = 0; i < p.Tq; i++) lo[i] = first_key(fk, i, visible_keys(p, i));
      int64_t m = INT64_MAX;
      for (int64_t i = p.Tq - 1; i >= 0; i--) {
        if (lo[i] > m) ordered = false;
        suffix_min[i] = m = std::min(m, lo[i]);
      }
    }
    // The keys [z0, z1) of row i of P and dS that the products read, around the ones it sees, [lo, vis): its row
    // block's (the forward pass's P V, dS K) and, for the transposed products (P^T dO, dS^T Q), every block of
    // `width` keys that holds one it sees (their tiles read a block of keys for each query that sees any of them; with
    // documents one after another, exactly the queries whose [lo, vis) meets the block). These are zeroed outside
    // [lo, vis); the rest of the row is never read, so it is neither computed nor written: a packed row's stores are
    // about its documents' squares, not its own. Documents out of order: the whole row.
    for (int64_t i0 = 0; i0 < p.Tq; i0 += sg::kMR) {
      const int64_t i1 = std::min(p.Tq, i0 + sg::kMR);
      int64_t c0 = 0, c1 = p.Tk;
      keys(i0, i1, &c0, &c1);
      for (int64_t i = i0; i < i1; i++) {
        const int64_t vis = visible_keys(p, i), l = fk ? lo[i] : 0;
        z0[i] = ordered ? std::min(c0, l / width * width) : 0;
        z1[i] = ordered ? std::min(p.Tk, std::max(c1, (vis + width - 1) / width * width)) : p.Tk;
      }
    }
  }
  // keys [c0, c1) that rows [i0, i1) see
  void keys(int64_t i0, int64_t i1, int64_t* c0, int64_t* c1) const {
    *c1 = visible_keys(p, i1 - 1);
    if (fk) *c0 = *std::min_element(lo.begin() + i0, lo.begin() + i1);
  }
  // queries [k0, k1) that may see any of keys [j0, j1)
  void queries(int64_t j0, int64_t j1, int64_t* k0, int64_t* k1) const {
    *k0 = p.causal ? std::max<int64_t>(0, j0 - (p.Tk - p.Tq)) : 0;
    // past the last query whose first key is at most j1 - 1 (suffix_min does not decrease)
    if (fk) *k1 = std::upper_bound(suffix_min.begin(), suffix_min.end(), j1 - 1) - suffix_min.begin();
  }
};

// S = scale Q K^T (kt: K transposed, D x Tk) into P (Tq x Tk), each row block's columns over the keys it sees
void scores(const Shape& p, const Reach& r, const float* Q, const float* kt, float* P) {
  sg::gemm(p.Tq, p.Tk, p.D, p.scale, Q, p.qs[2], 1, kt, p.Tk, P, p.Tk, false,
           [&](int64_t i0, int64_t i1, int64_t* c0, int64_t* c1) { r.keys(i0, i1, c0, c1); }, sg::all_terms);
}

// C (+)= A^T B for dV = P^T dO and dK = dS^T Q, A being (rows x m, row stride lda) and zero wherever `terms` skips:
// the small tiles while A spans up to 1 MiB (512 x 512 keys), OpenBLAS's sgemm beyond, on blocks of 128 keys and the
// queries that see them (reading a long transposed operand a term at a time misses the TLB, BLAS packs it: the tiles
// ran at 0.4-0.7x BLAS's speed at 1024-2048 keys). Neither product is recomputed, so the two need not give the same
// bits.
template <class Terms>
void at_b(int64_t m, int64_t n, int64_t rows, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
          int64_t ldc, bool accumulate, Terms terms) {
  if (!transposed_by_blas(rows, lda)) {
    sg::gemm(m, n, rows, 1.f, A, 1, lda, B, ldb, C, ldc, accumulate, sg::all_cols, terms);
    return;
  }
  for (int64_t j0 = 0; j0 < m; j0 += kBlasKeys) {
    const int64_t j1 = std::min(m, j0 + kBlasKeys);
    int64_t k0 = 0, k1 = rows;
    terms(j0, j1, &k0, &k1);
    k0 = std::max<int64_t>(k0, 0);
    k1 = std::min(k1, rows);
    if (k1 <= k0) {
      if (!accumulate)
        for (int64_t j = j0; j < j1; j++) std::fill(C + j * ldc, C + j * ldc + n, 0.f);
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(j1 - j0), (int)n, (int)(k1 - k0), 1.f, A + k0 * lda + j0,
                (int)lda, B + k0 * ldb, (int)ldb, accumulate ? 1.f : 0.f, C + j0 * ldc, (int)ldc);
  }
}

// Tests: P and dS filled with NaN before each head (attentionPoison), so that reading what was not written shows
std::atomic<bool> poison{false};
void poison_fill(float* a, int64_t n) {
  if (poison.load(std::memory_order_relaxed)) std::fill(a, a + n, std::numeric_limits<float>::quiet_NaN());
}

// Each thread's P, dS and transposed K and V, kept between calls (grow-only; see sized)
struct Scratch {
  std::vector<float> P, dS, kt, vt;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

void forward(const Shape& p, const float* q, const float* k, const float* v, float* out, float* stats) {
  const int64_t groups = p.H / p.Hkv;
  const int64_t pairs = p.B * p.Hkv;
  const bool parallel = pairs > 1 && p.Tq * p.Tk * (p.D + p.Dv) * p.B * p.H > (1 << 16);
#pragma omp parallel if (parallel)
  {
  Scratch& sc = scratch();
  float* P = sized(sc.P, p.Tq * p.Tk);
  float* kt = sized(sc.kt, p.D * p.Tk);
  Reach reach(p, key_block(p));
#pragma omp for schedule(dynamic, 1)
  for (int64_t bk = 0; bk < pairs; bk++) {
    const int64_t b = bk / p.Hkv, hk = bk % p.Hkv;
    const float* K = k + b * p.ks[0] + hk * p.ks[1];
    const float* V = v + b * p.vs[0] + hk * p.vs[1];
    const float* km = p.keymask ? p.keymask + b * p.Tk : nullptr;
    const int32_t* fk = p.firstkey ? p.firstkey + b * p.Tq : nullptr;
    sg::transpose(K, p.ks[2], p.Tk, p.D, kt, p.Tk);
    reach.set_row(fk);
    for (int64_t g = 0; g < groups; g++) {
      const int64_t h = hk * groups + g;
      const float* Q = q + b * p.qs[0] + h * p.qs[1];
      float* st = stats + (b * p.H + h) * p.Tq * 2;
      float* O = out + b * p.os[0] + h * p.os[1];
      poison_fill(P, p.Tq * p.Tk);
      scores(p, reach, Q, kt, P);
      for (int64_t i = 0; i < p.Tq; i++) {
        const int64_t vis = visible_keys(p, i);
        softmax_span(P + i * p.Tk, reach.z0[i], reach.z1[i], vis, first_key(fk, i, vis), km, st + i * 2);
      }
      // O = P V over the keys the block's rows see (P is 0 elsewhere)
      sg::gemm(p.Tq, p.Dv, p.Tk, 1.f, P, p.Tk, 1, V, p.vs[2], O, p.os[2], false, sg::all_cols,
               [&](int64_t i0, int64_t i1, int64_t* k0, int64_t* k1) { reach.keys(i0, i1, k0, k1); });
    }
  }
  }
}

// dq, dk, dv use the strides of q, k, v. dk/dv are overwritten (zeroed, then accumulated over the group).
void backward(const Shape& p, const float* q, const float* k, const float* v, const float* stats, const float* dout,
              const int64_t* dos, float* dq, float* dk, float* dv) {
  const int64_t groups = p.H / p.Hkv;
  const int64_t pairs = p.B * p.Hkv;
  const bool parallel = pairs > 1 && p.Tq * p.Tk * (p.D + p.Dv) * p.B * p.H > (1 << 16);
#pragma omp parallel if (parallel)
  {
    Scratch& sc = scratch();
    float* P = sized(sc.P, p.Tq * p.Tk);
    float* dS = sized(sc.dS, p.Tq * p.Tk);
    float* kt = sized(sc.kt, p.D * p.Tk);
    float* vt = sized(sc.vt, p.Dv * p.Tk);
    Reach reach(p, key_block(p));
#pragma omp for schedule(dynamic, 1)
    for (int64_t bk = 0; bk < pairs; bk++) {
      const int64_t b = bk / p.Hkv, hk = bk % p.Hkv;
      const float* K = k + b * p.ks[0] + hk * p.ks[1];
      const float* V = v + b * p.vs[0] + hk * p.vs[1];
      float* dK = dk + b * p.ks[0] + hk * p.ks[1];
      float* dV = dv + b * p.vs[0] + hk * p.vs[1];
      const float* km = p.keymask ? p.keymask + b * p.Tk : nullptr;
      const int32_t* fk = p.firstkey ? p.firstkey + b * p.Tq : nullptr;
      sg::transpose(K, p.ks[2], p.Tk, p.D, kt, p.Tk);
      sg::transpose(V, p.vs[2], p.Tk, p.Dv, vt, p.Tk);
      reach.set_row(fk);
      // a block of rows' keys (columns of dP, terms of dS K); a block of keys' queries (terms of P^T dO, dS^T Q)
      const auto keys = [&](int64_t i0, int64_t i1, int64_t* c0, int64_t* c1) { reach.keys(i0, i1, c0, c1); };
      const auto seen_by = [&](int64_t j0, int64_t j1, int64_t* k0, int64_t* k1) { reach.queries(j0, j1, k0, k1); };
      for (int64_t g = 0; g < groups; g++) {
        const int64_t h = hk * groups + g;
        const float* Q = q + b * p.qs[0] + h * p.qs[1];
        const float* st = stats + (b * p.H + h) * p.Tq * 2;
        // P again: the forward pass's product and row statistics give the same values bit for bit
        poison_fill(P, p.Tq * p.Tk);
        poison_fill(dS, p.Tq * p.Tk);
        scores(p, reach, Q, kt, P);
        for (int64_t i = 0; i < p.Tq; i++) {
          const int64_t vis = visible_keys(p, i);
          rebuild_span(P + i * p.Tk, reach.z0[i], reach.z1[i], vis, first_key(fk, i, vis), km, st + i * 2);
        }
        const float* dO = dout + b * dos[0] + h * dos[1];
        float* dQ = dq + b * p.qs[0] + h * p.qs[1];
        const bool acc = g > 0;
        // dV (+)= P^T dO
        at_b(p.Tk, p.Dv, p.Tq, P, p.Tk, dO, dos[2], dV, p.vs[2], acc, seen_by);
        // dP = dO V^T, then dS = P * (dP - rowsum(dP * P)) * scale over the keys a row sees, 0 elsewhere
        sg::gemm(p.Tq, p.Tk, p.Dv, 1.f, dO, dos[2], 1, vt, p.Tk, dS, p.Tk, false, keys, sg::all_terms);
        for (int64_t i = 0; i < p.Tq; i++) {
          const int64_t vis = visible_keys(p, i), lo = first_key(fk, i, vis), z0 = reach.z0[i], z1 = reach.z1[i];
          float* r = dS + i * p.Tk;
          const float* pr = P + i * p.Tk;
          const float d = (float)dot_d(r + lo, pr + lo, vis - lo);
          std::fill(r + z0, r + lo, 0.f);
          for (int64_t j = lo; j < vis; j++) r[j] = pr[j] * (r[j] - d) * p.scale;
          std::fill(r + vis, r + z1, 0.f);
        }
        // dQ = dS K ; dK (+)= dS^T Q
        sg::gemm(p.Tq, p.D, p.Tk, 1.f, dS, p.Tk, 1, K, p.ks[2], dQ, p.qs[2], false, sg::all_cols, keys);
        at_b(p.Tk, p.D, p.Tq, dS, p.Tk, Q, p.qs[2], dK, p.ks[2], acc, seen_by);
      }
    }
  }
}

}  // namespace

// attention(shape, q, k, v, keyMask|null, firstKey|null, out, stats)
KERNEL(JsAttention) {
  Args a(info, "attention", 8);
  Shape s = read_shape(a, 0);
  size_t nq, nk, nv, nm, nf = 0, no, np;
  const float* q = a.f32(1, &nq);
  const float* k = a.f32(2, &nk);
  const float* v = a.f32(3, &nv);
  s.keymask = a.f32(4, &nm, true);
  s.firstkey = (a.info[5].IsNull() || a.info[5].IsUndefined()) ? nullptr : a.i32(5, &nf);
  float* out = a.f32(6, &no);
  float* stats = a.f32(7, &np);
  a.need(!s.firstkey || (int64_t)nf >= s.B * s.Tq, "firstKey must hold B*Tq elements");
  a.need(extent(s.qs, s.B, s.H, s.Tq, s.D) <= (int64_t)nq, "q is smaller than its strides reach");
  a.need(extent(s.ks, s.B, s.Hkv, s.Tk, s.D) <= (int64_t)nk, "k is smaller than its strides reach");
  a.need(extent(s.vs, s.B, s.Hkv, s.Tk, s.Dv) <= (int64_t)nv, "v is smaller than its strides reach");
  a.need(extent(s.os, s.B, s.H, s.Tq, s.Dv) <= (int64_t)no, "out is smaller than its strides reach");
  a.need((int64_t)np >= s.B * s.H * s.Tq * 2, "stats must hold B*H*Tq*2 elements");
  a.need(!s.keymask || (int64_t)nm >= s.B * s.Tk, "keyMask must hold B*Tk elements");
  forward(s, q, k, v, out, stats);
  UNDEF;
}

// attentionBackward(shape, q, k, v, keyMask|null, firstKey|null, stats, dout, doutStrides, dq, dk, dv)
KERNEL(JsAttentionBackward) {
  Args a(info, "attentionBackward", 12);
  Shape s = read_shape(a, 0);
  size_t nq, nk, nv, nm, nf = 0, np, nd, ndq, ndk, ndv;
  const float* q = a.f32(1, &nq);
  const float* k = a.f32(2, &nk);
  const float* v = a.f32(3, &nv);
  s.keymask = a.f32(4, &nm, true);
  s.firstkey = (a.info[5].IsNull() || a.info[5].IsUndefined()) ? nullptr : a.i32(5, &nf);
  const float* stats = a.f32(6, &np);
  const float* dout = a.f32(7, &nd);
  auto dos = a.ints(8, true);
  float* dq = a.f32(9, &ndq);
  float* dk = a.f32(10, &ndk);
  float* dv = a.f32(11, &ndv);
  a.need(!s.firstkey || (int64_t)nf >= s.B * s.Tq, "firstKey must hold B*Tq elements");
  a.need(dos.size() == 3, "doutStrides must be 3 strides");
  a.need(extent(s.qs, s.B, s.H, s.Tq, s.D) <= (int64_t)std::min(nq, ndq), "q/dq are smaller than their strides reach");
  a.need(extent(s.ks, s.B, s.Hkv, s.Tk, s.D) <= (int64_t)std::min(nk, ndk), "k/dk are smaller than their strides reach");
  a.need(extent(s.vs, s.B, s.Hkv, s.Tk, s.Dv) <= (int64_t)std::min(nv, ndv), "v/dv are smaller than their strides reach");
  a.need(extent(dos.data(), s.B, s.H, s.Tq, s.Dv) <= (int64_t)nd, "dout is smaller than its strides reach");
  a.need((int64_t)np >= s.B * s.H * s.Tq * 2, "stats must hold B*H*Tq*2 elements");
  a.need(!s.keymask || (int64_t)nm >= s.B * s.Tk, "keyMask must hold B*Tk elements");
  backward(s, q, k, v, stats, dout, dos.data(), dq, dk, dv);
  UNDEF;
}

// attentionPoison(on): see poison
KERNEL(JsAttentionPoison) {
  Args a(info, "attentionPoison", 1);
  if (!a.info[0].IsBoolean()) a.type_err(0, "a boolean");
  poison.store(a.info[0].As<Napi::Boolean>().Value());
  UNDEF;
}

void register_attention(Napi::Env env, Napi::Object exports) {
  exports.Set("attentionPoison", Napi::Function::New(env, JsAttentionPoison, "attentionPoison"));
  exports.Set("attention", Napi::Function::New(env, JsAttention, "attention"));
  exports.Set("attentionBackward", Napi::Function::New(env, JsAttentionBackward, "attentionBackward"));
}

}  // namespace ag
