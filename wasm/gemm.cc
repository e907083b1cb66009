// Single-precision GEMM for wasm SIMD: the Goto/BLIS scheme. op(B) is packed into KC x NR column panels and
// op(A) into MR x KC row panels (transposes and bf16/int8 widening happen in packing), and a register-tiled
// MR x NR micro-kernel (MR = 6 rows, NR = 8 columns = two f32x4 vectors: 12 accumulators, 2 loads of B and one
// broadcast of A per row per k) runs over the packed panels. wasm has no FMA in its base SIMD set, so each k
// step costs MR*NR/4 multiplies and as many adds.
#include "common.h"

namespace ag {
namespace {

#ifndef AG_MR
#define AG_MR 4
#define AG_NR 8
#endif
#ifndef AG_UNROLL
#define AG_UNROLL 2
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

// acc(MR x NR) = pa . pb over kc; then C = alpha * acc + beta * C (beta == 0: C is not read). The loops over
// rows and vectors have constant bounds and unroll into MR * NR/4 independent accumulators held in locals.
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
template <class G>
void pack_a_of(const void* g, int i0, int k0, int mc, int kc, float* pa) {
  const G& get = *(const G*)g;
  pack_a([&](int i, int k) { return get(i0 + i, k0 + k); }, mc, kc, pa);
}
template <class G>
void pack_b_of(const void* g, int k0, int j0, int kc, int nc, float* pb) {
  const G& get = *(const G*)g;
  pack_b([&](int k, int j) { return get(k0 + k, j0 + j); }, kc, nc, pb);
}

__attribute__((noinline)) void gemm_core(int tid, int M, int N, int K, float alpha, const Packers& pk, float beta, float* C,
                                         int ldc) {
  Buffers& buf = buffers(tid);
  if (K == 0) {
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = min_(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = min_(KC, K - pc);
      const float bet = pc == 0 ? beta : 1.f;
      pk.pack_b(pk.gb, pc, jc, kc, nc, buf.pb);
      for (int ic = 0; ic < M; ic += MC) {
        const int mc = min_(MC, M - ic);
        pk.pack_a(pk.ga, ic, pc, mc, kc, buf.pa);
        for (int jr = 0; jr < nc; jr += NR) {
          const int nr = min_(NR, nc - jr);
          const float* pb = buf.pb + (size_t)jr * kc;
          for (int ir = 0; ir < mc; ir += MR) {
            const int mr = min_(MR, mc - ir);
            micro(kc, buf.pa + (size_t)ir * kc, pb, alpha, bet, C + (size_t)(ic + ir) * ldc + jc + jr, ldc, mr, nr);
          }
        }
      }
    }
  }
}

}  // namespace

// The blocked product on getters for op(A)(i, k) and op(B)(k, j).
template <class GA, class GB>
void gemm_blocked(int tid, int M, int N, int K, float alpha, const GA& ga, const GB& gb, float beta, float* C, int ldc) {
  const Packers pk{pack_a_of<GA>, &ga, pack_b_of<GB>, &gb};
  gemm_core(tid, M, N, K, alpha, pk, beta, C, ldc);
}

void sgemm(int tid, bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
           float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  auto run = [&](const auto& ga) {
    if (tb) gemm_blocked(tid, M, N, K, alpha, ga, [=](int k, int j) { return B[(size_t)j * ldb + k]; }, beta, C, ldc);
    else gemm_blocked(tid, M, N, K, alpha, ga, [=](int k, int j) { return B[(size_t)k * ldb + j]; }, beta, C, ldc);
  };
  if (ta) run([=](int i, int k) { return A[(size_t)k * lda + i]; });
  else run([=](int i, int k) { return A[(size_t)i * lda + k]; });
}

// ---- the Backend's matmul: batched, f32 or bf16 operands, and f32 A times a bf16 / int8 B with row scales ----

namespace {
enum BKind { BK_F32 = 0, BK_BF16 = 1, BK_I8 = 2 };
struct MatmulTask {
  const void* a;
  const void* b;
  float* out;
  int aBf16, bKind;
  const float* scales;
  int batch, M, N, K, ta, tb, strideA, strideB;
  float alpha, beta;
  int parts;  // per batch item, the rows (splitM) or the columns are cut into this many parts
  int splitM;
  Counter items;  // batch * parts work items
};

// One batch item's rows [i0, i1) x columns [j0, j1) on thread tid's buffers.
template <class TA, class TB>
void part(int tid, const MatmulTask& t, int bi, int i0, int i1, int j0, int j1) {
  const int M = t.M, N = t.N, K = t.K;
  const TA* A = (const TA*)t.a + (size_t)bi * t.strideA;
  const TB* B = (const TB*)t.b + (size_t)bi * t.strideB;
  const float* sc = t.scales;
  float* C = t.out + (size_t)bi * M * N + (size_t)i0 * N + j0;
  auto wa = [](TA x) -> float {
    if constexpr (sizeof(TA) == 2) return bf16_to_f32(x); else return x;
  };
  // b's stored rows: K x N, or N x K when transposed; an int8 value times its stored row's scale
  auto wb = [&](TB x, int row) -> float {
    if constexpr (sizeof(TB) == 2) return bf16_to_f32(x);
    else if constexpr (sizeof(TB) == 1) return sc ? sc[row] * (float)x : (float)x;
    else return x;
  };
  auto run = [&](const auto& ga) {
    if (t.tb) gemm_blocked(tid, i1 - i0, j1 - j0, K, t.alpha, ga, [&](int k, int j) { return wb(B[(size_t)(j0 + j) * K + k], j0 + j); }, t.beta, C, N);
    else gemm_blocked(tid, i1 - i0, j1 - j0, K, t.alpha, ga, [&](int k, int j) { return wb(B[(size_t)k * N + j0 + j], k); }, t.beta, C, N);
  };
  if (t.ta) run([&](int i, int k) { return wa(A[(size_t)k * M + i0 + i]); });
  else run([&](int i, int k) { return wa(A[(size_t)(i0 + i) * K + k]); });
}

void dispatch(int tid, const MatmulTask& t, int bi, int i0, int i1, int j0, int j1) {
  if (t.aBf16) part<uint16_t, uint16_t>(tid, t, bi, i0, i1, j0, j1);
  else if (t.bKind == BK_BF16) part<float, uint16_t>(tid, t, bi, i0, i1, j0, j1);
  else if (t.bKind == BK_I8) part<float, int8_t>(tid, t, bi, i0, i1, j0, j1);
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
}  // namespace

}  // namespace ag

using namespace ag;

// Allocates every thread's packing buffers (call once, before any operands are placed).
EXPORT(ag_gemm_init) void ag_gemm_init(int threads) {
  for (int t = 0; t < threads && t < kMaxThreads; t++) buffers(t);
}

// out = alpha * op(a) @ op(b) + beta * out, batched (see MatmulArgs / MatmulLowpArgs in src/backend/backend.ts).
// aBf16: a (and b, when bKind is 1) hold bf16 bits; bKind 0 f32, 1 bf16, 2 int8 (times scales[stored row]).
EXPORT(ag_matmul) void ag_matmul(const void* a, const void* b, float* out, int aBf16, int bKind, const float* scales,
                                 int batch, int M, int N, int K, int ta, int tb, int strideA, int strideB, float alpha,
                                 float beta) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  MatmulTask t{a, b, out, aBf16, bKind, scales, batch, M, N, K, ta, tb, strideA, strideB, alpha, beta, 1, 1, {0, 0}};
  const int nt = threads_for((double)batch * M * N * (K + 1) / 16);
  if (nt > 1 && batch < nt * 4) {
    // cut each item along the longer of M and N into 4 parts per thread (each packs the whole of the other operand:
    // with at least 8 micro-tiles a part, that is under 1/32 of the part's work)
    t.splitM = M >= N;
    const int tiles = t.splitM ? (M + MR - 1) / MR : (N + NR - 1) / NR;
    t.parts = max_(1, min_(tiles / 8, nt * 4));
  }
  t.items.n = batch * t.parts;
  parallel(matmul_task, &t, nt);
}
