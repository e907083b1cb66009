// bf16 attention on AMX tiles, one (batch, head) at a time: the bf16 kernel's arithmetic (attention_bf16.cc: S = scale
// Q K^T in f32 from bf16 q and k, each row's softmax in f32 with the same statistics, P rounded to bf16, O = P V in
// f32; backward: dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dP P)) scale rounded to bf16, dQ = dS K, dK = dS^T Q),
// but where that kernel runs every product batched through oneDNN over whole Tq x Tk squares, this one runs each
// head's products on the tile registers directly and computes only the keys each block of 32 queries can see (the
// causal triangle, a packed row's documents), as the f32 kernel does. At short sequences and under causal masks the
// batched products do not pay (attention-bf16.ts: the bf16 kernel took only unmasked rows of 64 tokens and more);
// these do: the scores of a 32 x 32 x 64 head are eight tile instructions. The output, and the gradients dq, dk, dv,
// may be written in bf16 (the fused qkv op's, read by bf16 products), and dout read in bf16.
//
// Layout: every operand is padded to whole tiles (rows and keys to 32, features to 32) with zeros, per thread in
// scratch kept between calls. A tile product reads A as bf16 rows and B in the VNNI layout (pairs along the reduced
// dimension, one 32-bit word per column): K's rows as they are give Q K^T's B (words transposed), V's rows interleaved
// in pairs give P V's B. The backward products that reduce over queries take, per head, whichever layout transposes
// less: dK = dS^T Q, dV = P^T dO (the seen blocks of dS and P transposed, Q and dO interleaved in row pairs, rows of
// dk, dv written as they are), or dK^T = Q^T dS, dV^T = dO^T P (dS and P interleaved in row pairs, Q^T and dO^T
// transposed, the results transposed into dk, dv).
//
// Tiles belong to the calling thread: each parallel region loads its configuration first and releases the tiles at
// its end (oneDNN configures its own before each of its products). Used only where oneDNN reports AMX (so
// ONEDNN_MAX_CPU_ISA below it keeps the batched kernel) and Linux grants the process the tile state.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>
#include "attention.h"
#include "common.h"
#include "vecmath512.h"

namespace ag {
using namespace attn;

bool onednn_amx();  // matmul.cc

namespace {

constexpr int64_t kBlk = 32;  // query blocks, key blocks and feature padding: two tiles of 16 rows or 16 words
constexpr int64_t kMaxScores = 1 << 20;  // per head (4 MiB of f32 scores per thread); longer sequences: the batched kernel
constexpr int64_t kMaxFeatures = 256;

inline int64_t up(int64_t n) { return (n + kBlk - 1) / kBlk * kBlk; }

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

bool tiles_granted() {
  static const bool yes = [] {
    // ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA (Linux 5.16+); oneDNN asks the same when it finds AMX
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  }();
  return yes;
}

std::atomic<bool> tiles_on{true};

#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl")

void load_tiles() {
  static const TileConfig cfg = [] {
    TileConfig c;
    for (int t = 0; t < 8; t++) { c.colsb[t] = 64; c.rows[t] = 16; }
    return c;
  }();
  _tile_loadconfig(&cfg);
}

// C (32 x 32 f32, rows ldc floats apart) = the sum over the k-steps s that steps(f) gives of A[0..32)[32s..32s+32)
// B[16s..16s+16)[0..32): A bf16 rows lda elements apart, B VNNI words in rows ldb words apart.
template <class Steps>
inline void tile_product(const uint16_t* A, int64_t lda, const uint32_t* B, int64_t ldb, float* C, int64_t ldc, Steps steps) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  steps([&](int64_t s) {
    const uint16_t* a = A + kBlk * s;
    const uint32_t* b = B + 16 * s * ldb;
    _tile_loadd(4, a, lda * 2);
    _tile_loadd(5, a + 16 * lda, lda * 2);
    _tile_loadd(6, b, ldb * 4);
    _tile_loadd(7, b + 16, ldb * 4);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  });
  _tile_stored(0, C, ldc * 4);
  _tile_stored(1, C + 16, ldc * 4);
  _tile_stored(2, C + 16 * ldc, ldc * 4);
  _tile_stored(3, C + 16 * ldc + 16, ldc * 4);
}
inline auto range(int64_t s0, int64_t s1) {
  return [=](auto f) { for (int64_t s = s0; s < s1; s++) f(s); };
}

// 16 x 16 32-bit words transposed in registers: r[c] becomes column c of the rows r held
inline void transpose16(__m512i* r) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // u[4g + c]: in its 128-bit lane L, column 4L + c of rows 4g..4g+3
  __m512i u[16];
  for (int g = 0; g < 4; g++) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int c = 0; c < 4; c++) {
    const __m512i x0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), y0 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
    const __m512i x1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD), y1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_i32x4(x0, y0, 0x88);       // lane 0 of each row group: column c
    r[8 + c] = _mm512_shuffle_i32x4(x0, y0, 0xDD);   // lane 2: column 8 + c
    r[4 + c] = _mm512_shuffle_i32x4(x1, y1, 0x88);   // lane 1: column 4 + c
    r[12 + c] = _mm512_shuffle_i32x4(x1, y1, 0xDD);  // lane 3: column 12 + c
  }
}

// dst (C x R words, rows ld apart) = src (R x C words, rows ls apart) transposed; R, C multiples of 16
void transpose_words(const uint32_t* src, int64_t R, int64_t C, int64_t ls, uint32_t* dst, int64_t ld) {
  __m512i r[16];
  for (int64_t i = 0; i < R; i += 16)
    for (int64_t j = 0; j < C; j += 16) {
      for (int q = 0; q < 16; q++) r[q] = _mm512_loadu_si512(src + (i + q) * ls + j);
      transpose16(r);
      for (int q = 0; q < 16; q++) _mm512_storeu_si512(dst + (j + q) * ld + i, r[q]);
    }
}

// dst (C x R bf16, rows ld apart) = src (R x C bf16, rows ls apart) transposed; R, C multiples of 16
void transpose_bf16(const uint16_t* src, int64_t R, int64_t C, int64_t ls, uint16_t* dst, int64_t ld) {
  __m512i r[16];
  for (int64_t i = 0; i < R; i += 16)
    for (int64_t j = 0; j < C; j += 16) {
      for (int q = 0; q < 16; q++) r[q] = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(src + (i + q) * ls + j)));
      transpose16(r);
      for (int q = 0; q < 16; q++) _mm256_storeu_si256((__m256i*)(dst + (j + q) * ld + i), _mm512_cvtepi32_epi16(r[q]));
    }
}

// VNNI rows: dst[r][c] = src[2r][c] | src[2r + 1][c] << 16 for rows [r0, r1) of dst and columns [c0, c1) (multiples
// of 16); src rows ls bf16 apart, dst rows ld words apart
void interleave_rows(const uint16_t* src, int64_t ls, int64_t r0, int64_t r1, int64_t c0, int64_t c1, uint32_t* dst, int64_t ld) {
  for (int64_t r = r0; r < r1; r++) {
    const uint16_t* a = src + 2 * r * ls;
    const uint16_t* b = a + ls;
    for (int64_t c = c0; c < c1; c += 16) {
      const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(a + c)));
      const __m512i hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(b + c)));
      _mm512_storeu_si512(dst + r * ld + c, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
  }
}

// rows x cols bf16 (rows `cols` apart) into rows32 x cols32 (rows `cols32` apart), zeros around
void pad_copy(const uint16_t* src, int64_t rows, int64_t cols, int64_t rows32, int64_t cols32, uint16_t* dst) {
  for (int64_t r = 0; r < rows; r++) {
    std::memcpy(dst + r * cols32, src + r * cols, cols * 2);
    std::memset(dst + r * cols32 + cols, 0, (cols32 - cols) * 2);
  }
  std::memset(dst + rows * cols32, 0, (rows32 - rows) * cols32 * 2);
}

inline __mmask16 lanes(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }
// lanes [j, j + 16) of [.., end) whose key the mask leaves (km[j] == 0)
inline __mmask16 kept(const float* km, int64_t j, int64_t end) {
  const __mmask16 k = lanes(end - j);
  return km ? _mm512_mask_cmp_ps_mask(k, _mm512_maskz_loadu_ps(k, km + j), _mm512_setzero_ps(), _CMP_EQ_OQ) : k;
}
// 16 values rounded to bf16: stored (the lanes of k) into pb, their widened values returned
inline __m512 store_bf16(uint16_t* pb, __mmask16 k, __m512 x) {
  const __m512i bits = v512::bf16_bits(x);
  _mm256_mask_storeu_epi16(pb, k, _mm512_cvtepi32_epi16(bits));
  return v512::bf16_value(bits);
}

// An output view: f32, or bf16 (read by bf16 products: the fused qkv's gradient, the attention output)
struct Out {
  void* p;
  bool bf16;
  Out at(int64_t off) const { return {bf16 ? (void*)((uint16_t*)p + off) : (void*)((float*)p + off), bf16}; }
  // n values of src into the view from element off on
  void row(int64_t off, const float* src, int64_t n) const {
    if (!bf16) return (void)std::memcpy((float*)p + off, src, n * 4);
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 l = lanes(n - j);
      store_bf16((uint16_t*)p + off + j, l, _mm512_maskz_loadu_ps(l, src + j));
    }
  }
};

// One (batch, head): its sizes padded to whole blocks, its batch row's masks, and each block of 32 queries' keys [kb,
// ke) (multiples of 32): the visible keys of its rows (the causal limit, a packed row's first keys); empty where its
// rows see none
struct Head {
  int64_t Tq, Tk, D, Dv, nqb, bh;
  const int32_t* fk;
  const float* km;
  std::vector<int64_t> kb, ke;
  Head(const Shape& p, int64_t b, int64_t h)
      : Tq(up(p.Tq)), Tk(up(p.Tk)), D(up(p.D)), Dv(up(p.Dv)), nqb(up(p.Tq) / kBlk), bh(b * p.H + h),
        fk(p.firstkey ? p.firstkey + b * p.Tq : nullptr), km(p.keymask ? p.keymask + b * p.Tk : nullptr),
        kb((size_t)nqb), ke((size_t)nqb) {
    for (int64_t qb = 0; qb < nqb; qb++) {
      int64_t vmax = 0, lmin = INT64_MAX;
      for (int64_t i = qb * kBlk; i < std::min(p.Tq, (qb + 1) * kBlk); i++) {
        const int64_t vis = visible_keys(p, i), lo = first_key(fk, i, vis);
        if (lo < vis) { vmax = std::max(vmax, vis); lmin = std::min(lmin, lo); }
      }
      kb[qb] = lmin == INT64_MAX ? 0 : lmin / kBlk * kBlk;
      ke[qb] = lmin == INT64_MAX ? 0 : up(vmax);
    }
  }
  // S = Q K^T (unscaled) for query block qb over its keys: Qa (Tq x D) bf16 rows, Kt K's words transposed
  void scores(int64_t qb, const uint16_t* Qa, const uint32_t* Kt, float* S) const {
    for (int64_t j = kb[qb]; j < ke[qb]; j += kBlk)
      tile_product(Qa + qb * kBlk * D, D, Kt + j, Tk, S + qb * kBlk * Tk + j, Tk, range(0, D / kBlk));
  }
  // Rows of query block qb (those below p.Tq) of a view at row stride ld, n wide (n32 padded) = A (rows of Tk bf16:
  // P or dS) times B (VNNI, n32 words a row: V or K interleaved) over the block's keys: straight into the view where
  // it is f32 and takes whole blocks, else through tmp (rows of n32)
  void rows_out(const Shape& p, int64_t qb, const uint16_t* A, const uint32_t* B, int64_t n, int64_t n32, const Out& dst,
                int64_t ld, float* tmp) const {
    const int64_t i0 = qb * kBlk;
    const bool direct = !dst.bf16 && n == n32 && i0 + kBlk <= p.Tq;
    for (int64_t c = 0; c < n32; c += kBlk)
      tile_product(A + i0 * Tk, Tk, B + c, n32, direct ? (float*)dst.p + i0 * ld + c : tmp + i0 * n32 + c,
                   direct ? ld : n32, range(kb[qb] / kBlk, ke[qb] / kBlk));
    if (!direct)
      for (int64_t i = i0; i < std::min(p.Tq, i0 + kBlk); i++) dst.row(i * ld, tmp + i * n32, n);
  }
};

// Row i of P over [kb, ke) from its raw products s: attention.h's softmax in 16 lanes (the scaled scores' max over the
// visible keys the mask leaves, NaNs skipped; exp(x - max) through the same exp, the same bits; the sum in double, in
// another order than attention.h's; P = e (1 / sum)) over the keys [lo, vis) it sees, 0 elsewhere; the statistics
// written, or with `rebuild` read back (P again bit for bit from the same products). P rounded to bf16 into pb; s gets
// its widened values.
void probs_row(const Shape& p, float* s, int64_t i, int64_t kb, int64_t ke, const int32_t* fk, const float* km, float* st,
               bool rebuild, uint16_t* pb) {
  using namespace v512;
  const int64_t vis = visible_keys(p, i), lo = first_key(fk, i, vis);
  const auto zero = [&](int64_t a, int64_t b) {
    if (b <= a) return;
    std::fill(s + a, s + b, 0.f);
    std::fill(pb + a, pb + b, (uint16_t)0);
  };
  float mx = 0.f, inv = 0.f;
  if (rebuild) {
    mx = st[0];
    inv = st[1];
  } else if (lo < vis) {
    __m512 m = w(-std::numeric_limits<float>::infinity());
    for (int64_t j = lo; j < vis; j += 16) {
      const __mmask16 k = kept(km, j, vis);
      m = _mm512_mask_max_ps(m, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + j), w(p.scale)), m);  // a NaN gives m
    }
    mx = _mm512_reduce_max_ps(m);
    if (mx != -std::numeric_limits<float>::infinity()) {
      __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
      for (int64_t j = lo; j < vis; j += 16) {
        const __mmask16 k = kept(km, j, vis);
        const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + j), w(p.scale));
        const __m512 e = _mm512_maskz_mov_ps(k, wexp(_mm512_sub_ps(x, w(mx))));
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
        _mm512_mask_storeu_ps(s + j, lanes(vis - j), e);
      }
      inv = (float)(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(a0, a1)));
    } else {
      mx = 0.f;  // every key masked: P = 0, as softmax_row
    }
    st[0] = mx;
    st[1] = inv;
  } else {
    st[0] = st[1] = 0.f;
  }
  if (inv == 0.f) return zero(kb, ke);
  zero(kb, lo);
  for (int64_t j = lo; j < vis; j += 16) {
    const __mmask16 l = lanes(vis - j);
    __m512 e;
    if (rebuild) {
      const __mmask16 k = kept(km, j, vis);
      e = _mm512_maskz_mov_ps(k, wexp(_mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + j), w(p.scale)), w(mx))));
    } else {
      e = _mm512_maskz_loadu_ps(l, s + j);
    }
    _mm512_mask_storeu_ps(s + j, l, store_bf16(pb + j, l, _mm512_mul_ps(e, w(inv))));
  }
  zero(vis, ke);
}

// Row i of dS over [kb, ke) from dP (d) and the rounded P (pf): P (dP - rowsum(dP P)) scale over [lo, vis), rounded to
// bf16 into ds; 0 elsewhere
void ds_row(const Shape& p, const float* d, const float* pf, int64_t i, int64_t kb, int64_t ke, const int32_t* fk, uint16_t* ds) {
  const int64_t vis = visible_keys(p, i), lo = first_key(fk, i, vis);
  if (lo >= vis) return (void)std::fill(ds + kb, ds + ke, (uint16_t)0);
  const float c = (float)dot_d(d + lo, pf + lo, vis - lo);
  std::fill(ds + kb, ds + lo, (uint16_t)0);
  for (int64_t j = lo; j < vis; j += 16) {
    const __mmask16 l = lanes(vis - j);
    const __m512 x = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(l, pf + j), _mm512_sub_ps(_mm512_maskz_loadu_ps(l, d + j), v512::w(c))), v512::w(p.scale));
    store_bf16(ds + j, l, x);
  }
  std::fill(ds + vis, ds + ke, (uint16_t)0);
}

struct Scratch {
  std::vector<uint16_t> Qa, Ka, Va, Pb, dOa, dSa, PT, dST, QT, dOT;
  std::vector<uint32_t> Kt, Vr, Vt, Kr, Qr, dOr, Pv, dSv;
  std::vector<float> S, dP, R, Rt;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Runs f(b, h) over every (batch, head) with the tiles configured on each thread
template <class F>
void for_heads(const Shape& p, F f) {
#pragma omp parallel if (p.B * p.H > 1 && par(p.B * p.H * p.Tq * p.Tk))
  {
    load_tiles();
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < p.B * p.H; bh++) f(bh / p.H, bh % p.H);
    _tile_release();
  }
}

// Rows of a (T, D) f32 view at row stride ld packed into dense bf16 (the kept copy the backward pass reads)
void pack_rows(const float* src, int64_t ld, int64_t T, int64_t D, uint16_t* dst) {
  for (int64_t t = 0; t < T; t++)
    for (int64_t j = 0; j < D; j += 16) {
      const __mmask16 l = lanes(D - j);
      store_bf16(dst + t * D + j, l, _mm512_maskz_loadu_ps(l, src + t * ld + j));
    }
}
// ... of a bf16 view: its rows copied
void pack_rows(const uint16_t* src, int64_t ld, int64_t T, int64_t D, uint16_t* dst) {
  for (int64_t t = 0; t < T; t++) std::memcpy(dst + t * D, src + t * ld, (size_t)D * sizeof(uint16_t));
}
// The cache lines of a (T, D) f32 view at row stride ld asked for ahead (the next head's q, k, v while this one computes:
// packing them was bound by memory, with nothing to overlap)
template <class E>
void prefetch_rows(const E* src, int64_t ld, int64_t T, int64_t D) {
  for (int64_t t = 0; t < T; t++)
    for (int64_t j = 0; j < D; j += 64 / (int64_t)sizeof(E)) _mm_prefetch((const char*)(src + t * ld + j), _MM_HINT_T1);
}

// A head's dense bf16 (T, D) as a tile operand: itself where T and D are whole blocks, else a zero-padded copy
const uint16_t* padded(const uint16_t* x, int64_t T, int64_t D, int64_t T32, int64_t D32, std::vector<uint16_t>& buf) {
  if (T == T32 && D == D32) return x;
  uint16_t* d = sized(buf, T32 * D32);
  pad_copy(x, T, D, T32, D32, d);
  return d;
}

// A (R x C f32, rows C apart; R, C multiples of 16) transposed into rows of a strided view: dst[c * ld + r] for
// c < cols, r < rows (straight in where the view is f32 and takes whole blocks)
void transpose_out(const float* A, int64_t R, int64_t C, float* tmp, int64_t rows, int64_t cols, Out dst, int64_t ld) {
  if (!dst.bf16 && rows == R && cols == C) return transpose_words((const uint32_t*)A, R, C, C, (uint32_t*)dst.p, ld);
  transpose_words((const uint32_t*)A, R, C, C, (uint32_t*)tmp, R);
  for (int64_t c = 0; c < cols; c++) dst.row(c * ld, tmp + c * R, rows);
}

template <class E>
void amx_forward(const Shape& p, const E* q, const E* k, const E* v, void* out16_or_f32, bool out16, float* stats,
                 uint16_t* ql, uint16_t* kl, uint16_t* vl) {
  const Out out{out16_or_f32, out16};
  for_heads(p, [&](int64_t b, int64_t h) {
    Scratch& sc = scratch();
    const Head hd(p, b, h);
    const int64_t bh = hd.bh;
    const int32_t* fk = hd.fk;
    uint16_t* qh = ql + bh * p.Tq * p.D;
    uint16_t* kh = kl + bh * p.Tk * p.D;
    uint16_t* vh = vl + bh * p.Tk * p.Dv;
    if (bh + 1 < p.B * p.H) {  // each thread takes a run of heads (a static schedule): the next is most likely its own
      const int64_t b1 = (bh + 1) / p.H, h1 = (bh + 1) % p.H;
      prefetch_rows(q + b1 * p.qs[0] + h1 * p.qs[1], p.qs[2], p.Tq, p.D);
      prefetch_rows(k + b1 * p.ks[0] + h1 * p.ks[1], p.ks[2], p.Tk, p.D);
      prefetch_rows(v + b1 * p.vs[0] + h1 * p.vs[1], p.vs[2], p.Tk, p.Dv);
    }
    pack_rows(q + b * p.qs[0] + h * p.qs[1], p.qs[2], p.Tq, p.D, qh);
    pack_rows(k + b * p.ks[0] + h * p.ks[1], p.ks[2], p.Tk, p.D, kh);
    pack_rows(v + b * p.vs[0] + h * p.vs[1], p.vs[2], p.Tk, p.Dv, vh);
    const uint16_t* Qa = padded(qh, p.Tq, p.D, hd.Tq, hd.D, sc.Qa);
    const uint16_t* Ka = padded(kh, p.Tk, p.D, hd.Tk, hd.D, sc.Ka);
    const uint16_t* Va = padded(vh, p.Tk, p.Dv, hd.Tk, hd.Dv, sc.Va);
    uint32_t* Kt = sized(sc.Kt, hd.D / 2 * hd.Tk);
    uint32_t* Vr = sized(sc.Vr, hd.Tk / 2 * hd.Dv);
    float* S = sized(sc.S, hd.Tq * hd.Tk);
    uint16_t* Pb = sized(sc.Pb, hd.Tq * hd.Tk);
    float* O = sized(sc.R, hd.Tq * hd.Dv);
    transpose_words((const uint32_t*)Ka, hd.Tk, hd.D / 2, hd.D / 2, Kt, hd.Tk);
    interleave_rows(Va, hd.Dv, 0, hd.Tk / 2, 0, hd.Dv, Vr, hd.Dv);
    float* st = stats + bh * p.Tq * 2;
    const Out o = out.at(b * p.os[0] + h * p.os[1]);
    for (int64_t qb = 0; qb < hd.nqb; qb++) {
      const int64_t kb = hd.kb[qb], ke = hd.ke[qb], i0 = qb * kBlk;
      hd.scores(qb, Qa, Kt, S);
      for (int64_t i = i0; i < std::min(p.Tq, i0 + kBlk); i++)
        probs_row(p, S + i * hd.Tk, i, kb, ke, fk, hd.km, st + i * 2, false, Pb + i * hd.Tk);
      hd.rows_out(p, qb, Pb, Vr, p.Dv, hd.Dv, o, p.os[2], O);  // O = P V
    }
  });
}
}  // namespace

void amx_attention_forward(const Shape& p, const void* q, const void* k, const void* v, bool in16, void* out, bool out16,
                           float* stats, uint16_t* ql, uint16_t* kl, uint16_t* vl) {
  if (in16) amx_forward(p, (const uint16_t*)q, (const uint16_t*)k, (const uint16_t*)v, out, out16, stats, ql, kl, vl);
  else amx_forward(p, (const float*)q, (const float*)k, (const float*)v, out, out16, stats, ql, kl, vl);
}

void amx_attention_backward(const Shape& p, const uint16_t* ql, const uint16_t* kl, const uint16_t* vl,
                            const float* stats, const void* dout, bool dout16, const int64_t* dos, void* dq16_or_f32,
                            void* dk16_or_f32, void* dv16_or_f32, bool bf16) {
  const Out dq{dq16_or_f32, bf16}, dk{dk16_or_f32, bf16}, dv{dv16_or_f32, bf16};
  for_heads(p, [&](int64_t b, int64_t h) {
    Scratch& sc = scratch();
    const Head hd(p, b, h);
    const int64_t bh = hd.bh;
    const int32_t* fk = hd.fk;
    const uint16_t* Qa = padded(ql + bh * p.Tq * p.D, p.Tq, p.D, hd.Tq, hd.D, sc.Qa);
    const uint16_t* Ka = padded(kl + bh * p.Tk * p.D, p.Tk, p.D, hd.Tk, hd.D, sc.Ka);
    const uint16_t* Va = padded(vl + bh * p.Tk * p.Dv, p.Tk, p.Dv, hd.Tk, hd.Dv, sc.Va);
    uint16_t* dOa = sized(sc.dOa, hd.Tq * hd.Dv);
    uint32_t* Kt = sized(sc.Kt, hd.D / 2 * hd.Tk);
    uint32_t* Vt = sized(sc.Vt, hd.Dv / 2 * hd.Tk);
    uint32_t* Kr = sized(sc.Kr, hd.Tk / 2 * hd.D);
    float* S = sized(sc.S, hd.Tq * hd.Tk);
    float* dP = sized(sc.dP, hd.Tq * hd.Tk);
    uint16_t* Pb = sized(sc.Pb, hd.Tq * hd.Tk);
    uint16_t* dSa = sized(sc.dSa, hd.Tq * hd.Tk);
    float* R = sized(sc.R, std::max(hd.Tq, hd.Tk) * std::max(hd.D, hd.Dv));
    const int64_t at = b * dos[0] + h * dos[1], next = (bh + 1) / p.H * dos[0] + (bh + 1) % p.H * dos[1];
    const auto pack_dout = [&](const auto* d) {  // f32, or the projection's bf16 gradient (a bf16 output's)
      if (bh + 1 < p.B * p.H) prefetch_rows(d + next, dos[2], p.Tq, p.Dv);
      pack_rows(d + at, dos[2], p.Tq, p.Dv, dOa);
    };
    if (dout16) pack_dout((const uint16_t*)dout);
    else pack_dout((const float*)dout);
    if (p.Dv < hd.Dv) {
      for (int64_t i = p.Tq - 1; i >= 0; i--) {  // spread to rows of hd.Dv, last row first
        std::memmove(dOa + i * hd.Dv, dOa + i * p.Dv, p.Dv * 2);
        std::memset(dOa + i * hd.Dv + p.Dv, 0, (hd.Dv - p.Dv) * 2);
      }
    }
    std::memset(dOa + p.Tq * hd.Dv, 0, (hd.Tq - p.Tq) * hd.Dv * 2);
    transpose_words((const uint32_t*)Ka, hd.Tk, hd.D / 2, hd.D / 2, Kt, hd.Tk);
    transpose_words((const uint32_t*)Va, hd.Tk, hd.Dv / 2, hd.Dv / 2, Vt, hd.Tk);
    interleave_rows(Ka, hd.D, 0, hd.Tk / 2, 0, hd.D, Kr, hd.D);
    // dK and dV reduce over queries: as dK = dS^T Q, dV = P^T dO (rows of dk, dv as they are; each block of P and dS
    // that a query block sees transposed) where that transposes fewer 16 x 16 blocks than dK^T = Q^T dS, dV^T = dO^T P
    // (Q and dO transposed, the f32 results transposed into dk, dv: once per head, however few keys the queries see).
    // Short heads take the first (a 32-token head: 8 blocks against 32), long ones and narrow bands the second.
    int64_t seen = 0;
    for (int64_t qb = 0; qb < hd.nqb; qb++) seen += (hd.ke[qb] - hd.kb[qb]) / kBlk;
    const bool key_major = 8 * seen < (hd.D + hd.Dv) / 16 * (hd.Tq + hd.Tk) / 16;
    uint16_t *PT = nullptr, *dST = nullptr, *QT = nullptr, *dOT = nullptr;
    uint32_t *Qr = nullptr, *dOr = nullptr, *Pv = nullptr, *dSv = nullptr;
    if (key_major) {
      PT = sized(sc.PT, hd.Tk * hd.Tq);
      dST = sized(sc.dST, hd.Tk * hd.Tq);
      Qr = sized(sc.Qr, hd.Tq / 2 * hd.D);
      dOr = sized(sc.dOr, hd.Tq / 2 * hd.Dv);
      interleave_rows(Qa, hd.D, 0, hd.Tq / 2, 0, hd.D, Qr, hd.D);
      interleave_rows(dOa, hd.Dv, 0, hd.Tq / 2, 0, hd.Dv, dOr, hd.Dv);
    } else {
      QT = sized(sc.QT, hd.D * hd.Tq);
      dOT = sized(sc.dOT, hd.Dv * hd.Tq);
      Pv = sized(sc.Pv, hd.Tq / 2 * hd.Tk);
      dSv = sized(sc.dSv, hd.Tq / 2 * hd.Tk);
      transpose_bf16(Qa, hd.Tq, hd.D, hd.D, QT, hd.Tq);
      transpose_bf16(dOa, hd.Tq, hd.Dv, hd.Dv, dOT, hd.Tq);
    }
    const float* st = stats + bh * p.Tq * 2;
    const Out dQ = dq.at(b * p.qs[0] + h * p.qs[1]);
    for (int64_t qb = 0; qb < hd.nqb; qb++) {
      const int64_t kb = hd.kb[qb], ke = hd.ke[qb], i0 = qb * kBlk;
      hd.scores(qb, Qa, Kt, S);
      for (int64_t j = kb; j < ke; j += kBlk)  // dP = dO V^T
        tile_product(dOa + i0 * hd.Dv, hd.Dv, Vt + j, hd.Tk, dP + i0 * hd.Tk + j, hd.Tk, range(0, hd.Dv / kBlk));
      for (int64_t i = i0; i < i0 + kBlk; i++) {
        if (i >= p.Tq) {  // padding rows: P and dS are 0
          std::fill(Pb + i * hd.Tk + kb, Pb + i * hd.Tk + ke, (uint16_t)0);
          std::fill(dSa + i * hd.Tk + kb, dSa + i * hd.Tk + ke, (uint16_t)0);
          continue;
        }
        // P rebuilt and rounded to bf16 (the products' operand); dS from that rounded P
        probs_row(p, S + i * hd.Tk, i, kb, ke, fk, hd.km, const_cast<float*>(st + i * 2), true, Pb + i * hd.Tk);
        ds_row(p, dP + i * hd.Tk, S + i * hd.Tk, i, kb, ke, fk, dSa + i * hd.Tk);
      }
      if (key_major) {
        for (int64_t j = kb; j < ke; j += kBlk) {  // the block's P and dS, transposed while they are in L1
          transpose_bf16(Pb + i0 * hd.Tk + j, kBlk, kBlk, hd.Tk, PT + j * hd.Tq + i0, hd.Tq);
          transpose_bf16(dSa + i0 * hd.Tk + j, kBlk, kBlk, hd.Tk, dST + j * hd.Tq + i0, hd.Tq);
        }
      } else {
        interleave_rows(Pb, hd.Tk, i0 / 2, (i0 + kBlk) / 2, kb, ke, Pv, hd.Tk);
        interleave_rows(dSa, hd.Tk, i0 / 2, (i0 + kBlk) / 2, kb, ke, dSv, hd.Tk);
      }
      hd.rows_out(p, qb, dSa, Kr, p.D, hd.D, dQ, p.qs[2], R);  // dQ = dS K
    }
    // each block of keys over the query blocks that see it (the blocks of P and dS that none sees were not written:
    // no product reads them)
    const auto seen_by = [&hd](int64_t j) {
      return [&hd, j](auto f) {
        for (int64_t qb = 0; qb < hd.nqb; qb++)
          if (hd.kb[qb] <= j && j < hd.ke[qb]) f(qb);
      };
    };
    const Out dK = dk.at(b * p.ks[0] + h * p.ks[1]), dV = dv.at(b * p.vs[0] + h * p.vs[1]);
    if (key_major) {  // rows of dK = dS^T Q, dV = P^T dO: straight into the view where it is f32 and takes whole blocks
      const auto key_rows = [&](const uint16_t* AT, const uint32_t* B, int64_t n, int64_t n32, const Out& dst, int64_t ld) {
        for (int64_t j = 0; j < hd.Tk; j += kBlk) {
          const bool direct = !dst.bf16 && n == n32 && j + kBlk <= p.Tk;
          for (int64_t c = 0; c < n32; c += kBlk)
            tile_product(AT + j * hd.Tq, hd.Tq, B + c, n32, direct ? (float*)dst.p + j * ld + c : R + j * n32 + c,
                         direct ? ld : n32, seen_by(j));
          if (!direct)
            for (int64_t i = j; i < std::min(p.Tk, j + kBlk); i++) dst.row(i * ld, R + i * n32, n);
        }
      };
      key_rows(dST, Qr, p.D, hd.D, dK, p.ks[2]);
      key_rows(PT, dOr, p.Dv, hd.Dv, dV, p.vs[2]);
    } else {  // dK^T = Q^T dS, dV^T = dO^T P, transposed into dk, dv
      float* Rt = sized(sc.Rt, hd.Tk * std::max(hd.D, hd.Dv));
      for (int64_t n = 0; n < hd.D; n += kBlk)
        for (int64_t j = 0; j < hd.Tk; j += kBlk)
          tile_product(QT + n * hd.Tq, hd.Tq, dSv + j, hd.Tk, R + n * hd.Tk + j, hd.Tk, seen_by(j));
      transpose_out(R, hd.D, hd.Tk, Rt, p.D, p.Tk, dK, p.ks[2]);
      for (int64_t n = 0; n < hd.Dv; n += kBlk)
        for (int64_t j = 0; j < hd.Tk; j += kBlk)
          tile_product(dOT + n * hd.Tq, hd.Tq, Pv + j, hd.Tk, R + n * hd.Tk + j, hd.Tk, seen_by(j));
      transpose_out(R, hd.Dv, hd.Tk, Rt, p.Dv, p.Tk, dV, p.vs[2]);
    }
  });
}

#pragma GCC pop_options

// Whether attention of this shape runs on the tiles: AMX present and used by oneDNN, the tile state granted, one kv
// head per head, even feature counts (VNNI pairs), at most 2^20 padded scores a head
bool amx_attention_takes(const Shape& p) {
  return amx_attention_available() && p.H == p.Hkv && p.D % 2 == 0 && p.Dv % 2 == 0 && p.D <= kMaxFeatures &&
         p.Dv <= kMaxFeatures && up(p.Tq) * up(p.Tk) <= kMaxScores;
}
bool amx_attention_available() { return tiles_on.load(std::memory_order_relaxed) && onednn_amx() && tiles_granted(); }
void amx_attention_enable(bool on) { tiles_on.store(on, std::memory_order_relaxed); }

}  // namespace ag
