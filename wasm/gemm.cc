// Single-precision GEMM for wasm SIMD: the Goto/BLIS scheme. op(B) is packed into KC x NR column panels and
// op(A) into MR x KC row panels (transposes and bf16/int8 widening happen in packing; f32 operands are packed 4
// values at a time), and a register-tiled MR x NR micro-kernel (MR = 4 rows, NR = 8 columns = two f32x4 vectors:
// 8 accumulators, 2 loads of B and one broadcast of A per row per k) runs over the packed panels. wasm has no FMA
// in its base SIMD set, so each k step costs MR*NR/4 multiplies and as many adds. Threads split a product's rows
// (or columns) into parts; with rows split, op(B) is packed once, by all threads, before the parts run.
#include "common.h"

namespace ag {
namespace {

#ifndef AG_MR
#define AG_MR 4
#define AG_NR 8
#endif
#ifndef AG_UNROLL
#define AG_UNROLL 1
#endif
constexpr int MR = AG_MR, NR = AG_NR;
#ifndef AG_KC
#define AG_KC 256
#endif
#ifndef AG_MCT
#define AG_MCT 12
#endif
constexpr int KC = AG_KC, MC = MR * AG_MCT, NC = 1024;

// packed A: ceil(mc/MR) panels of kc x MR; packed B: ceil(nc/NR) panels of kc x NR (zero-padded edges).
template <class Get>
void pack_a(const Get& get, int mc, int kc, float* pa) {
  for (int i0 = 0; i0 < mc; i0 += MR) {
    const int mr = min_(MR, mc - i0);
    for (int k = 0; k < kc; k++) {
      for (int r = 0; r < mr; r++) pa[r] = get(i0 + r, k);
      for (int r = mr; r < MR; r++) pa[r] = 0.f;
      pa += MR;
    }
  }
}

template <class Get>
void pack_b(const Get& get, int kc, int nc, float* pb) {
  for (int j0 = 0; j0 < nc; j0 += NR) {
    const int nr = min_(NR, nc - j0);
    if (nr == NR) {
      for (int k = 0; k < kc; k++) {
        for (int c = 0; c < NR; c++) pb[c] = get(k, j0 + c);
        pb += NR;
      }
    } else {
      for (int k = 0; k < kc; k++) {
        for (int c = 0; c < nr; c++) pb[c] = get(k, j0 + c);
        for (int c = nr; c < NR; c++) pb[c] = 0.f;
        pb += NR;
      }
    }
  }
}

// The operands' elements: op(A)(i, k) of A stored M x K with leading dimension ld (or K x M when transposed), and
// op(B)(k, j) of B stored K x N (or N x K); bf16 bits widened, an int8 value times its stored row's scale.
template <class T> inline float widen(T x) {
  if constexpr (sizeof(T) == 2) return bf16_to_f32(x); else return (float)x;
}
template <class TA, bool T> struct GetA {
  const TA* p;
  int ld;
  float operator()(int i, int k) const { return widen(T ? p[(size_t)k * ld + i] : p[(size_t)i * ld + k]); }
};
template <class TB, bool T> struct GetB {
  const TB* p;
  int ld;
  const float* sc;  // int8: the scales of the stored rows (indexed by j when transposed, else by k), or null
  float operator()(int k, int j) const {
    const TB x = T ? p[(size_t)j * ld + k] : p[(size_t)k * ld + j];
    if constexpr (sizeof(TB) == 1) return sc ? sc[T ? j : k] * (float)x : (float)x;
    else return widen(x);
  }
};

// An NF4 B (src/backend/nf4.ts): element e = its index in storage order (from `base`, the offset of this getter's
// first column); the code is a nibble of byte e / 2 (high first), the value its level times the absmax of e / 64.
constexpr float kNf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                            -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                            0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                            0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
template <bool T> struct GetBNf4 {
  const uint8_t* q;
  const float* absmax;
  size_t base;
  int ld;
  float operator()(int k, int j) const {
    const size_t e = base + (T ? (size_t)j * ld + k : (size_t)k * ld + j);
    const int byte = q[e >> 1];
    return kNf4[(e & 1) ? byte & 15 : byte >> 4] * absmax[e >> 6];
  }
};

// f32 operands packed 4 values at a time (the same values as pack_a / pack_b give): a stored-transposed A and a
// plain B are copied a vector at a time, the other two layouts through 4x4 transposes.
inline void transpose4(v128_t r0, v128_t r1, v128_t r2, v128_t r3, float* d, int stride) {
  const v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5);
  const v128_t t2 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7), t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
  wasm_v128_store(d, wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5));
  wasm_v128_store(d + stride, wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
  wasm_v128_store(d + 2 * stride, wasm_i32x4_shuffle(t2, t3, 0, 1, 4, 5));
  wasm_v128_store(d + 3 * stride, wasm_i32x4_shuffle(t2, t3, 2, 3, 6, 7));
}

template <bool T>
void pack_a_f32(const GetA<float, T>& g, int i0, int k0, int mc, int kc, float* pa) {
  const int ld = g.ld;
  for (int ib = 0; ib < mc; ib += MR, pa += (size_t)MR * kc) {
    const int mr = min_(MR, mc - ib), i = i0 + ib;
    if (MR != 4 || mr != 4) {
      pack_a([&](int r, int k) { return g(i + r, k0 + k); }, mr, kc, pa);
    } else if (T) {  // A stored K x M: the 4 rows' values at one k are adjacent
      const float* s = g.p + (size_t)k0 * ld + i;
      for (int k = 0; k < kc; k++) wasm_v128_store(pa + 4 * k, wasm_v128_load(s + (size_t)k * ld));
    } else {
      const float* r0 = g.p + (size_t)i * ld + k0;
      const float *r1 = r0 + ld, *r2 = r1 + ld, *r3 = r2 + ld;
      int k = 0;
      for (; k + 4 <= kc; k += 4)
        transpose4(wasm_v128_load(r0 + k), wasm_v128_load(r1 + k), wasm_v128_load(r2 + k), wasm_v128_load(r3 + k), pa + 4 * k, 4);
      for (; k < kc; k++) {
        pa[4 * k] = r0[k];
        pa[4 * k + 1] = r1[k];
        pa[4 * k + 2] = r2[k];
        pa[4 * k + 3] = r3[k];
      }
    }
  }
}

template <bool T>
void pack_b_f32(const GetB<float, T>& g, int k0, int j0, int kc, int nc, float* pb) {
  const int ld = g.ld;
  for (int jb = 0; jb < nc; jb += NR, pb += (size_t)NR * kc) {
    const int nr = min_(NR, nc - jb), j = j0 + jb;
    if (NR != 8 || nr != 8) {
      pack_b([&](int k, int c) { return g(k0 + k, j + c); }, kc, nr, pb);
    } else if (!T) {  // B stored K x N: the 8 columns at one k are adjacent
      const float* s = g.p + (size_t)k0 * ld + j;
      for (int k = 0; k < kc; k++) {
        wasm_v128_store(pb + 8 * k, wasm_v128_load(s + (size_t)k * ld));
        wasm_v128_store(pb + 8 * k + 4, wasm_v128_load(s + (size_t)k * ld + 4));
      }
    } else {
      const float* r[8];
      for (int c = 0; c < 8; c++) r[c] = g.p + (size_t)(j + c) * ld + k0;
      int k = 0;
      for (; k + 4 <= kc; k += 4) {
        transpose4(wasm_v128_load(r[0] + k), wasm_v128_load(r[1] + k), wasm_v128_load(r[2] + k), wasm_v128_load(r[3] + k), pb + 8 * k, 8);
        transpose4(wasm_v128_load(r[4] + k), wasm_v128_load(r[5] + k), wasm_v128_load(r[6] + k), wasm_v128_load(r[7] + k), pb + 8 * k + 4, 8);
      }
      for (; k < kc; k++)
        for (int c = 0; c < 8; c++) pb[8 * k + c] = r[c][k];
    }
  }
}

// acc(MR x NR) = pa . pb over kc; then C = alpha * acc + beta * C (beta == 0: C is not read). The loops over
// rows and vectors have constant bounds and unroll into MR * NR/4 independent accumulators held in locals.
// The k loop is not unrolled here: V8's optimizing compiler issues every load of a loop body ahead of its
// arithmetic, so two k steps at once (12 loaded vectors + 8 accumulators) exceed x64's 15 usable xmm registers
// and V8 spills accumulators to the stack each iteration; one step (6 + 8 + a product) fits, and V8 unrolls the
// loop itself. Measured single-threaded: ~38 GFLOP/s against ~27 unrolled twice.
constexpr int NV = NR / 4;
__attribute__((always_inline)) inline void micro(int kc, const float* pa, const float* pb, float alpha, float beta,
                                                 float* C, int ldc, int mr, int nr) {
  v128_t acc[MR][NV];
#pragma clang loop unroll(full)
  for (int r = 0; r < MR; r++)
#pragma clang loop unroll(full)
    for (int v = 0; v < NV; v++) acc[r][v] = wasm_f32x4_splat(0.f);
#pragma clang loop unroll_count(AG_UNROLL)
  for (int k = 0; k < kc; k++) {
    v128_t b[NV];
#pragma clang loop unroll(full)
    for (int v = 0; v < NV; v++) b[v] = wasm_v128_load(pb + 4 * v);
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
      const v128_t a = wasm_v128_load32_splat(pa + r);
#pragma clang loop unroll(full)
      for (int v = 0; v < NV; v++) acc[r][v] = wasm_f32x4_add(acc[r][v], wasm_f32x4_mul(a, b[v]));
    }
    pa += MR;
    pb += NR;
  }
  const v128_t va = wasm_f32x4_splat(alpha);
  if (mr == MR && nr == NR) {
    const v128_t vb = wasm_f32x4_splat(beta);
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
      float* c = C + r * ldc;
#pragma clang loop unroll(full)
      for (int v = 0; v < NV; v++) {
        v128_t x = wasm_f32x4_mul(acc[r][v], va);
        if (beta != 0.f) x = wasm_f32x4_add(x, wasm_f32x4_mul(vb, wasm_v128_load(c + 4 * v)));
        wasm_v128_store(c + 4 * v, x);
      }
    }
    return;
  }
  float t[MR][NR] __attribute__((aligned(16)));
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) wasm_v128_store(&t[r][4 * v], wasm_f32x4_mul(acc[r][v], va));
  for (int r = 0; r < mr; r++)
    for (int c = 0; c < nr; c++) C[r * ldc + c] = beta == 0.f ? t[r][c] : t[r][c] + beta * C[r * ldc + c];
}

struct Buffers {
  float* pa;
  float* pb;
};
Buffers g_buf[kMaxThreads];

Buffers& buffers(int tid) {
  Buffers& b = g_buf[tid];
  if (!b.pa) {  // first use on the main thread: allocated by ag_gemm_init for every thread
    b.pa = (float*)alloc_permanent(sizeof(float) * MC * KC);
    b.pb = (float*)alloc_permanent(sizeof(float) * KC * (NC + NR));
  }
  return b;
}

// The packing of one operand block, behind a function pointer so that the blocked loop and its micro-kernel are
// compiled once, whatever the operands' layouts and dtypes (only the packing loops are instantiated per layout).
struct Packers {
  void (*pack_a)(const void* get, int i0, int k0, int mc, int kc, float* pa);
  const void* ga;
  void (*pack_b)(const void* get, int k0, int j0, int kc, int nc, float* pb);
  const void* gb;
};
template <class G> struct IsF32Get { static constexpr bool value = false; };
template <bool T> struct IsF32Get<GetA<float, T>> { static constexpr bool value = true; };
template <bool T> struct IsF32Get<GetB<float, T>> { static constexpr bool value = true; };
template <class G>
void pack_a_of(const void* g, int i0, int k0, int mc, int kc, float* pa) {
  const G& get = *(const G*)g;
  if constexpr (IsF32Get<G>::value) pack_a_f32(get, i0, k0, mc, kc, pa);
  else pack_a([&](int i, int k) { return get(i0 + i, k0 + k); }, mc, kc, pa);
}
template <class G>
void pack_b_of(const void* g, int k0, int j0, int kc, int nc, float* pb) {
  const G& get = *(const G*)g;
  if constexpr (IsF32Get<G>::value) pack_b_f32(get, k0, j0, kc, nc, pb);
  else pack_b([&](int k, int j) { return get(k0 + k, j0 + j); }, kc, nc, pb);
}

// pre: op(B) packed beforehand (prepack_b), or null to pack it block by block here.
__attribute__((noinline)) void gemm_core(int tid, int M, int N, int K, float alpha, const Packers& pk, float beta, float* C,
                                         int ldc, const float* pre) {
  Buffers& buf = buffers(tid);
  if (K == 0) {
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  const size_t npad = (size_t)(N + NR - 1) / NR * NR;
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = min_(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = min_(KC, K - pc);
      const float bet = pc == 0 ? beta : 1.f;
      const float* pbk = buf.pb;
      if (pre) pbk = pre + (size_t)pc * npad + (size_t)jc * kc;
      else pk.pack_b(pk.gb, pc, jc, kc, nc, buf.pb);
      for (int ic = 0; ic < M; ic += MC) {
        const int mc = min_(MC, M - ic);
        pk.pack_a(pk.ga, ic, pc, mc, kc, buf.pa);
        for (int jr = 0; jr < nc; jr += NR) {
          const int nr = min_(NR, nc - jr);
          const float* pb = pbk + (size_t)jr * kc;
          for (int ir = 0; ir < mc; ir += MR) {
            const int mr = min_(MR, mc - ir);
            micro(kc, buf.pa + (size_t)ir * kc, pb, alpha, bet, C + (size_t)(ic + ir) * ldc + jc + jr, ldc, mr, nr);
          }
        }
      }
    }
  }
}

// Packs panels [p0, p1) of op(B) (K x N) whole: K-block pc's panel p at pre + pc * npad + p * NR * kc, as
// gemm_core reads it (npad = N rounded up to NR).
template <class GB>
void prepack_b(const GB& gb, int N, int K, int p0, int p1, float* pre) {
  const size_t npad = (size_t)(N + NR - 1) / NR * NR;
  for (int pc = 0; pc < K; pc += KC) {
    const int kc = min_(KC, K - pc);
    for (int p = p0; p < p1; p++) {
      const int j0 = p * NR;
      pack_b_of<GB>(&gb, pc, j0, kc, min_(NR, N - j0), pre + (size_t)pc * npad + (size_t)j0 * kc);
    }
  }
}

}  // namespace

// The blocked product on getters for op(A)(i, k) and op(B)(k, j).
template <class GA, class GB>
void gemm_blocked(int tid, int M, int N, int K, float alpha, const GA& ga, const GB& gb, float beta, float* C, int ldc,
                  const float* pre = nullptr) {
  const Packers pk{pack_a_of<GA>, &ga, pack_b_of<GB>, &gb};
  gemm_core(tid, M, N, K, alpha, pk, beta, C, ldc, pre);
}

void sgemm(int tid, bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
           float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  auto run = [&](const auto& ga) {
    if (tb) gemm_blocked(tid, M, N, K, alpha, ga, GetB<float, true>{B, ldb, nullptr}, beta, C, ldc);
    else gemm_blocked(tid, M, N, K, alpha, ga, GetB<float, false>{B, ldb, nullptr}, beta, C, ldc);
  };
  if (ta) run(GetA<float, true>{A, lda});
  else run(GetA<float, false>{A, lda});
}

// ---- the Backend's matmul: batched, f32 or bf16 operands, and f32 A times a bf16 / int8 B with row scales ----

namespace {
enum BKind { BK_F32 = 0, BK_BF16 = 1, BK_I8 = 2, BK_NF4 = 3 };
struct Nf4Tag {};
template <class T> constexpr bool kIsNf4 = false;
template <> constexpr bool kIsNf4<Nf4Tag> = true;
struct MatmulTask {
  const void* a;
  const void* b;
  float* out;
  int aBf16, bKind;
  const float* scales;
  int batch, M, N, K, ta, tb, strideA, strideB;
  float alpha, beta;
  const float* bias;  // (N) or null: every row of out starts as it, the product accumulates (beta 1)
  int parts;  // per batch item, the rows (splitM) or the columns are cut into this many parts
  int splitM;
  Counter items;     // batch * parts work items
  const float* pre;  // splitM with one op(B) for every item: op(B) packed once for all parts (prepack_task)
  Counter panels;    // prepack_task's work items: ranges of panels of op(B)
};

// Calls f(getter of op(B)'s columns from j0 on) for batch item bi.
template <class TB, class F>
void with_b(const MatmulTask& t, int bi, int j0, const F& f) {
  if constexpr (kIsNf4<TB>) {  // one stored matrix (no batch stride); scales = absmax per 64
    const uint8_t* q = (const uint8_t*)t.b;
    if (t.tb) f(GetBNf4<true>{q, t.scales, (size_t)j0 * t.K, t.K});
    else f(GetBNf4<false>{q, t.scales, (size_t)j0, t.N});
    return;
  }
  else {
  const TB* B = (const TB*)t.b + (size_t)bi * t.strideB;
  if (t.tb) f(GetB<TB, true>{B + (size_t)j0 * t.K, t.K, t.scales ? t.scales + j0 : nullptr});
  else f(GetB<TB, false>{B + j0, t.N, t.scales});
  }
}

// One batch item's rows [i0, i1) x columns [j0, j1) on thread tid's buffers.
template <class TA, class TB>
void part(int tid, const MatmulTask& t, int bi, int i0, int i1, int j0, int j1) {
  const int M = t.M, N = t.N, K = t.K;
  const TA* A = (const TA*)t.a + (size_t)bi * t.strideA;
  float* C = t.out + (size_t)bi * M * N + (size_t)i0 * N + j0;
  float beta = t.beta;
  if (t.bias) {
    for (int i = 0; i < i1 - i0; i++) __builtin_memcpy(C + (size_t)i * N, t.bias + j0, (size_t)(j1 - j0) * 4);
    beta = 1.f;
  }
  with_b<TB>(t, bi, j0, [&](const auto& gb) {
    if (t.ta) gemm_blocked(tid, i1 - i0, j1 - j0, K, t.alpha, GetA<TA, true>{A + i0, M}, gb, beta, C, N, t.pre);
    else gemm_blocked(tid, i1 - i0, j1 - j0, K, t.alpha, GetA<TA, false>{A + (size_t)i0 * K, K}, gb, beta, C, N, t.pre);
  });
}

void dispatch(int tid, const MatmulTask& t, int bi, int i0, int i1, int j0, int j1) {
  if (t.aBf16) part<uint16_t, uint16_t>(tid, t, bi, i0, i1, j0, j1);
  else if (t.bKind == BK_BF16) part<float, uint16_t>(tid, t, bi, i0, i1, j0, j1);
  else if (t.bKind == BK_I8) part<float, int8_t>(tid, t, bi, i0, i1, j0, j1);
  else if (t.bKind == BK_NF4) part<float, Nf4Tag>(tid, t, bi, i0, i1, j0, j1);
  else part<float, float>(tid, t, bi, i0, i1, j0, j1);
}

// Work item w of batch * parts: batch item w / parts, part w % parts (a range of rows or of columns, multiples of
// the micro-tile), taken from the shared counter.
void matmul_task(void* ctx, int tid, int) {
  MatmulTask& t = *(MatmulTask*)ctx;
  for (int w; (w = t.items.take()) >= 0;) {
    const int bi = w / t.parts, p = w % t.parts;
    if (t.splitM) {
      const int step = ((t.M + t.parts - 1) / t.parts + MR - 1) / MR * MR;
      const int i0 = p * step, i1 = min_(t.M, i0 + step);
      if (i0 < i1) dispatch(tid, t, bi, i0, i1, 0, t.N);
    } else {
      const int step = ((t.N + t.parts - 1) / t.parts + NR - 1) / NR * NR;
      const int j0 = p * step, j1 = min_(t.N, j0 + step);
      if (j0 < j1) dispatch(tid, t, bi, 0, t.M, j0, j1);
    }
  }
}

constexpr int kPrepackPanels = 4;  // panels of op(B) per prepack work item
template <class TB>
void prepack_item(const MatmulTask& t, float* pre, int w) {
  const int npan = (t.N + NR - 1) / NR, p0 = w * kPrepackPanels, p1 = min_(npan, p0 + kPrepackPanels);
  with_b<TB>(t, 0, 0, [&](const auto& gb) { prepack_b(gb, t.N, t.K, p0, p1, pre); });
}
void prepack_task(void* ctx, int, int) {
  MatmulTask& t = *(MatmulTask*)ctx;
  float* pre = (float*)t.pre;
  for (int w; (w = t.panels.take()) >= 0;) {
    if (t.aBf16 || t.bKind == BK_BF16) prepack_item<uint16_t>(t, pre, w);
    else if (t.bKind == BK_I8) prepack_item<int8_t>(t, pre, w);
    else if (t.bKind == BK_NF4) prepack_item<Nf4Tag>(t, pre, w);
    else prepack_item<float>(t, pre, w);
  }
}
}  // namespace

}  // namespace ag

using namespace ag;

// Allocates every thread's packing buffers (call once, before any operands are placed).
EXPORT(ag_gemm_init) void ag_gemm_init(int threads) {
  for (int t = 0; t < threads && t < kMaxThreads; t++) buffers(t);
}

// out = alpha * op(a) @ op(b) + beta * out, batched (see MatmulArgs / MatmulLowpArgs in src/backend/backend.ts).
// aBf16: a (and b, when bKind is 1) hold bf16 bits; bKind 0 f32, 1 bf16, 2 int8 (times scales[stored row]), 3 NF4
// (packed codes, scales = the absmax of every 64 elements).
// bias: null, or (N) added to every row (then beta is 0): out starts as the bias and the product accumulates onto it.
EXPORT(ag_matmul) void ag_matmul(const void* a, const void* b, float* out, int aBf16, int bKind, const float* scales,
                                 int batch, int M, int N, int K, int ta, int tb, int strideA, int strideB, float alpha,
                                 float beta, const float* bias) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  MatmulTask t{a, b, out, aBf16, bKind, scales, batch, M, N, K, ta, tb, strideA, strideB, alpha, beta, bias, 1, 1, {0, 0}, nullptr, {0, 0}};
  const int nt = threads_for((double)batch * M * N * (K + 1) / 16);
  if (nt > 1 && batch < nt * 4) {
    // cut each item along the longer of M and N into 4 parts per thread
    t.splitM = M >= N;
    const int tiles = t.splitM ? (M + MR - 1) / MR : (N + NR - 1) / NR;
    t.parts = max_(1, min_(tiles / 8, nt * 4));
  }
  t.items.n = batch * t.parts;
  if (t.parts > 1 && t.splitM && K > 0 && (batch == 1 || strideB == 0)) {
    // the parts would each pack all of op(B): the threads pack it once, together, first
    const int npan = (N + NR - 1) / NR;
    t.pre = (const float*)alloc_bytes((size_t)K * npan * NR * 4);
    if (t.pre) {
      t.panels.n = (npan + kPrepackPanels - 1) / kPrepackPanels;
      parallel(prepack_task, &t, nt);
    }
  }
  parallel(matmul_task, &t, nt);
}
