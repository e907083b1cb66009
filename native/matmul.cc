// Matrix products. f32: OpenBLAS sgemm (OpenMP build), except products with one dimension <= 16 (LoRA's
// factors), which run in skinny.cc; many small batch matrices run in parallel over the batch with single-threaded
// sgemm inside. bf16: a oneDNN matmul primitive (cached per shape) where the CPU
// has native bf16 (AVX512-BF16 / AMX); elsewhere the operands are widened to f32 (exact) and go to sgemm.
#include <cblas.h>
#include <dnnl.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <immintrin.h>
#include "common.h"
#include "vecmath.h"

extern "C" {
char* openblas_get_config(void);
char* openblas_get_corename(void);
}

namespace ag {

static void sgemm_one(const float* a, const float* b, float* c, const MatmulP& p) {
  const int lda = p.transA ? (int)p.M : (int)p.K;
  const int ldb = p.transB ? (int)p.K : (int)p.N;
  cblas_sgemm(CblasRowMajor, p.transA ? CblasTrans : CblasNoTrans, p.transB ? CblasTrans : CblasNoTrans, (int)p.M,
              (int)p.N, (int)p.K, p.alpha, a, lda, b, ldb, p.beta, c, (int)p.N);
}

// out's rows start as the bias, and the product accumulates onto them (beta = 1): the bias of a product that does
// not fuse it.
static MatmulP prefill_bias(float* out, const MatmulP& p) {
  for (int64_t r = 0; r < p.batch * p.M; r++) std::memcpy(out + r * p.N, p.bias, (size_t)p.N * sizeof(float));
  MatmulP q = p;
  q.bias = nullptr;
  q.beta = 1.0f;
  return q;
}

void matmul_f32(const float* a, const float* b, float* out, const MatmulP& p) {
  if (p.M == 0 || p.N == 0 || p.batch == 0) return;
  if (p.bias) return matmul_f32(a, b, out, prefill_bias(out, p));
  if (p.K == 0) {  // out = beta * out
    const int64_t n = p.batch * p.M * p.N;
    for (int64_t i = 0; i < n; i++) out[i] = p.beta == 0.0f ? 0.0f : p.beta * out[i];
    return;
  }
  const int64_t flops = p.M * p.N * p.K;
  const int nt = num_threads();
  // Small matrices: sgemm's own threading does not pay; run the batch in parallel instead (OpenBLAS's OpenMP
  // build is single-threaded inside an active parallel region).
  if (p.batch >= 2 && nt > 1 && flops <= (int64_t)256 * 256 * 256) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < p.batch; i++) sgemm_one(a + i * p.strideA, b + i * p.strideB, out + i * p.M * p.N, p);
    return;
  }
  for (int64_t i = 0; i < p.batch; i++) {
    const float* ai = a + i * p.strideA;
    const float* bi = b + i * p.strideB;
    float* ci = out + i * p.M * p.N;
    if (!skinny_sgemm(ai, bi, ci, p)) sgemm_one(ai, bi, ci, p);
  }
}

// ---- oneDNN ---------------------------------------------------------------------------------------------------
namespace {
bool has_native_bf16() {
  const auto isa = dnnl_get_effective_cpu_isa();
  return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}
}  // namespace

// oneDNN runs its products on AMX (the CPU has it and ONEDNN_MAX_CPU_ISA allows it): attention_amx.cc follows it
bool onednn_amx() {
  const auto isa = dnnl_get_effective_cpu_isa();
  return (isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx;
}

bool bf16_dot_isa() {
  static const bool yes = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && has_native_bf16();
  return yes;
}

namespace {
// The engine and the primitive cache are shared by every thread of the process (local data-parallel ranks are worker
// threads); what oneDNN does not allow to share is not shared:
// - the stream: one per calling thread;
// - the scratchpad: oneDNN 2.6 as Debian builds it (no ONEDNN_ENABLE_CONCURRENT_EXEC) hands every primitive in
//   'library' mode a global scratchpad sized for the thread that created it, so a primitive created by one rank and run
//   by another wrote past that thread's buffer (non-finite steps, then a segmentation fault). Our primitives use
//   'user' mode: each call passes a scratchpad of the primitive's own size from a per-thread buffer.
struct MatmulPrim {
  dnnl::matmul prim;
  dnnl::memory::desc scratch;  // what one execution needs (user scratchpad mode)
};
struct Dnnl {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  std::unordered_map<std::string, MatmulPrim> cache;
  std::mutex mu;
};
Dnnl& dnnl_state() {
  static Dnnl* d = new Dnnl();  // never destroyed: avoids teardown-order issues at process exit
  return *d;
}
struct DnnlThread {
  dnnl::stream strm;
  std::vector<uint8_t> scratch;
};
DnnlThread& dnnl_thread(const dnnl::engine& eng) {
  thread_local DnnlThread* t = new DnnlThread{dnnl::stream(eng), {}};  // one per thread, kept for its life
  return *t;
}
uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
// What the scratchpad and a product's output (when beta = 0) hold before oneDNN runs: -1 (the default) leaves them as
// the last product left them, a byte value fills them; AUTOGLM_DNNL_FILL=<byte> sets it (tests poison the buffers to
// show that results do not depend on them). Until the thirty-second session, AMX filled both with zeros before every
// product (5-100% on small products' time): its products had given results that depended on what earlier ones left.
// Those were the products of 49 <= N <= 63 (amx_n_gap below), wrong outright with more than one thread; with them
// run at N = 64, no product of the tests or the workloads reads its buffers (AUTOGLM_DNNL_PROBE, Emerald Rapids).
int dnnl_fill() {
  static const int fill = [] {
    const char* e = getenv("AUTOGLM_DNNL_FILL");
    if (e && *e) return std::clamp(atoi(e), -1, 255);
    return -1;
  }();
  return fill;
}
// AUTOGLM_DNNL_PROBE=1, a diagnostic: every product over a dense output runs again over other buffers and says on
// stderr, once per primitive, which runs gave other bits than the first. A beta = 0 product runs over (scratchpad,
// output) filled with (zeros, zeros), (zeros, NaN bytes), (NaN bytes, zeros) and (zeros, zeros) again; an accumulating
// one (beta != 0, whose output is an input) over a zeroed and a NaN-filled scratchpad and a zeroed one again, its output
// restored before each run. A change names what the product read (its output's or its scratchpad's earlier contents)
// or that it is not deterministic. The first run's result is kept.
bool dnnl_probe() {
  static const bool on = [] {
    const char* e = getenv("AUTOGLM_DNNL_PROBE");
    return e && e[0] == '1' && e[1] == 0;
  }();
  return on;
}
// Widened copies are written into a per-thread scratch of widen_scratch_elems() floats per slot (the left operand's
// slot, the right one's), kept from one product to the next: a fresh buffer each time was a fresh mapping each time,
// and its page faults cost more than the widening (cls-full in bf16 on an AVX2 Zen 3: 16,000 minor faults a step
// against 110-240 in fp32). The bound keeps what stays resident small (2 x 16 MiB at most, only on the threads that
// widen, pages touched only as used); a larger copy (a product the callers do not cut into blocks) is made fresh and
// freed on return, as before. 4M floats holds each of GPT-2's layer weights (768 x 3072) and an MLP activation of
// 1,024 x 3,072 whole: with 2M, fc2's forward product (both operands bf16) widened its weight once per band of the
// activation and ran as four smaller sgemm calls (alone, on an AVX2 Zen 3: 38.3 ms against f32's 30.7; now 32.2
// against 30.6). Not zero-filled first:
// every element is written by the widening. AUTOGLM_WIDEN_SCRATCH=<floats> sets it (tests shrink it so that small
// products take the banded and blocked paths).
static int64_t widen_scratch_elems() {
  static const int64_t n = [] {
    const char* e = getenv("AUTOGLM_WIDEN_SCRATCH");
    if (e && *e) return std::max<int64_t>(1024, atoll(e));
    return (int64_t)4 << 20;
  }();
  return n;
}
enum WidenSlot { kSlotA = 0, kSlotB = 1 };

static float* widen_buffer(int64_t n, WidenSlot slot, std::unique_ptr<float[]>& own) {
  thread_local std::unique_ptr<float[]> kept[2];
  if (n > widen_scratch_elems()) {
    own.reset(new float[(size_t)n]);
    return own.get();
  }
  if (!kept[slot]) kept[slot].reset(new float[(size_t)widen_scratch_elems()]);  // pages are touched only as used
  return kept[slot].get();
}

static float* widen(const uint16_t* src, int64_t n, WidenSlot slot, std::unique_ptr<float[]>& own) {
  float* d = widen_buffer(std::max<int64_t>(n, 1), slot, own);
  bf16_to_f32_n(src, d, n);
  return d;
}

void probe_onednn(const std::string& key, const MatmulPrim& prim, std::unordered_map<int, dnnl::memory>& args,
                  DnnlThread& t, void* out, int64_t bytes, const MatmulP& p);

// Runs the cached primitive for `key` (made from the descriptors on first use) with a per-thread user scratchpad.
void run_onednn(const std::string& key, const dnnl::memory::desc& ad, const dnnl::memory::desc& bd,
                const dnnl::memory::desc& cd, const dnnl::memory::desc& biasd, const uint16_t* a, const uint16_t* b,
                void* out, const MatmulP& p, bool dense_out);

// oneDNN 2.6.3's AMX matmul (brg:avx512_core_amx_bf16) gives wrong results for 49 <= N <= 63 when more than one
// thread runs it: relative errors of 1-100% in some columns, and results that change with the threads and with what
// earlier products left in the scratchpad and output (the recomputation and resume failures of issue #17). A sweep
// of N 1-260 (M 1-300, K 8-768, both layouts of A and B, beta 0 and 1, 2-8 threads, Emerald Rapids) found no other N
// (test/native-smoke.test.ts keeps a sweep against an f64 reference). Such products run at N = 64: B and the bias
// copied with zero columns beside them, the output through a buffer of 64 columns.
bool amx_n_gap(int64_t N) { return N >= 49 && N <= 63 && onednn_amx(); }
constexpr int64_t kGapN = 64;

void matmul_onednn(const uint16_t* a, const uint16_t* b, void* out, const MatmulP& p, bool out_bf16);

// out f32, or bf16 (out_bf16, beta = 0 only: the f32 product rounded as oneDNN's bf16 destination rounds it)
void matmul_onednn_padded(const uint16_t* a, const uint16_t* b, void* out, const MatmulP& p, bool out_bf16) {
  thread_local std::vector<uint16_t> bp;
  thread_local std::vector<float> op;
  const int64_t nb = p.strideB == 0 ? 1 : p.batch, N = p.N, K = p.K, rows = p.batch * p.M;
  bp.assign((size_t)(nb * K * kGapN), 0);
  for (int64_t i = 0; i < nb; i++) {
    const uint16_t* src = b + i * p.strideB;
    uint16_t* dst = bp.data() + i * K * kGapN;
    if (p.transB) std::memcpy(dst, src, (size_t)(N * K) * sizeof(uint16_t));  // N rows of K, then zero rows
    else for (int64_t k = 0; k < K; k++) std::memcpy(dst + k * kGapN, src + k * N, (size_t)N * sizeof(uint16_t));
  }
  op.resize((size_t)(rows * kGapN));
  if (p.beta != 0.0f)
    for (int64_t r = 0; r < rows; r++) std::memcpy(op.data() + r * kGapN, (const float*)out + r * N, (size_t)N * sizeof(float));
  float biasp[kGapN] = {};
  if (p.bias) std::memcpy(biasp, p.bias, (size_t)N * sizeof(float));
  MatmulP q = p;
  q.N = kGapN;
  q.strideB = p.strideB == 0 ? 0 : K * kGapN;
  q.bias = p.bias ? biasp : nullptr;
  matmul_onednn(a, bp.data(), op.data(), q, false);
  for (int64_t r = 0; r < rows; r++) {
    if (out_bf16) f32_to_bf16_row(op.data() + r * kGapN, (uint16_t*)out + r * N, N);
    else std::memcpy((float*)out + r * N, op.data() + r * kGapN, (size_t)N * sizeof(float));
  }
}

void matmul_onednn(const uint16_t* a, const uint16_t* b, void* out, const MatmulP& p, bool out_bf16) {
  if (amx_n_gap(p.N)) return matmul_onednn_padded(a, b, out, p, out_bf16);
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  const int64_t ba = p.strideA == 0 ? 1 : p.batch, bb = p.strideB == 0 ? 1 : p.batch;
  const dims sa = p.transA ? dims{p.strideA, 1, p.M} : dims{p.strideA, p.K, 1};
  const dims sb = p.transB ? dims{p.strideB, 1, p.K} : dims{p.strideB, p.N, 1};
  // alpha and beta by their bits: std::to_string keeps 6 decimals, so two scales that agree to 6 places shared a primitive
  std::string key = std::to_string(p.batch) + "," + std::to_string(p.M) + "," + std::to_string(p.N) + "," +
                    std::to_string(p.K) + "," + std::to_string(p.strideA) + "," + std::to_string(p.strideB) + "," +
                    std::to_string(p.transA) + std::to_string(p.transB) + "," + std::to_string(float_bits(p.alpha)) + "," +
                    std::to_string(float_bits(p.beta)) + (p.bias ? ",bias" : "") + (out_bf16 ? ",bf16out" : "");
  dnnl::memory::desc ad({ba, p.M, p.K}, dt::bf16, dims{ba == 1 ? p.M * p.K : sa[0], sa[1], sa[2]});
  dnnl::memory::desc bd({bb, p.K, p.N}, dt::bf16, dims{bb == 1 ? p.K * p.N : sb[0], sb[1], sb[2]});
  dnnl::memory::desc cd({p.batch, p.M, p.N}, out_bf16 ? dt::bf16 : dt::f32, dims{p.M * p.N, p.N, 1});
  dnnl::memory::desc biasd = p.bias ? dnnl::memory::desc({1, 1, p.N}, dt::f32, dims{p.N, p.N, 1}) : dnnl::memory::desc();
  run_onednn(key, ad, bd, cd, biasd, a, b, out, p, true);
}

void run_onednn(const std::string& key, const dnnl::memory::desc& ad, const dnnl::memory::desc& bd,
                const dnnl::memory::desc& cd, const dnnl::memory::desc& biasd, const uint16_t* a, const uint16_t* b,
                void* out, const MatmulP& p, bool dense_out) {
  Dnnl& d = dnnl_state();
  MatmulPrim prim;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    auto it = d.cache.find(key);
    if (it == d.cache.end()) {
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      if (p.alpha != 1.0f) attr.set_output_scales(0, {p.alpha});
      if (p.beta != 0.0f) {
        dnnl::post_ops po;
        po.append_sum(p.beta);
        attr.set_post_ops(po);
      }
      dnnl::matmul::primitive_desc pd(p.bias ? dnnl::matmul::desc(ad, bd, biasd, cd) : dnnl::matmul::desc(ad, bd, cd), attr, d.eng);
      it = d.cache.emplace(key, MatmulPrim{dnnl::matmul(pd), pd.scratchpad_desc()}).first;
    }
    prim = it->second;
  }
  DnnlThread& t = dnnl_thread(d.eng);
  if (t.scratch.size() < prim.scratch.get_size()) t.scratch.resize(prim.scratch.get_size());
  dnnl::memory am(ad, d.eng, (void*)a), bm(bd, d.eng, (void*)b), cm(cd, d.eng, out);
  dnnl::memory sm(prim.scratch, d.eng, t.scratch.data());
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, sm}};
  if (p.bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(biasd, d.eng, (void*)p.bias));
  const int64_t out_bytes = (int64_t)cd.get_size();
  if (dnnl_probe() && dense_out) return probe_onednn(key, prim, args, t, out, out_bytes, p);  // fills itself
  if (const int fill = dnnl_fill(); fill >= 0) {
    fill_bytes(t.scratch.data(), (int64_t)prim.scratch.get_size(), fill);
    if (p.beta == 0.0f && dense_out) fill_bytes(out, out_bytes, fill);
  }
  prim.prim.execute(t.strm, args);
  t.strm.wait();
}

void probe_onednn(const std::string& key, const MatmulPrim& prim, std::unordered_map<int, dnnl::memory>& args,
                  DnnlThread& t, void* out, int64_t bytes, const MatmulP& p) {
  static std::mutex mu;
  static std::unordered_set<std::string> told;
  struct Run { int scratch, out; const char* read; };  // out -1: the output as the caller left it (beta != 0)
  static const Run kOver[4] = {{0, 0, ""}, {0, 0xff, "its output's contents"}, {0xff, 0, "its scratchpad's contents"}, {0, 0, "nothing (a repeat)"}};
  static const Run kAccumulating[3] = {{0, -1, ""}, {0xff, -1, "its scratchpad's contents"}, {0, -1, "nothing (a repeat)"}};
  const bool over = p.beta == 0.0f;
  const Run* runs = over ? kOver : kAccumulating;
  const int n = over ? 4 : 3;
  std::vector<char> given(over ? 0 : (size_t)bytes), first((size_t)bytes);
  if (!over) std::memcpy(given.data(), out, (size_t)bytes);
  std::string found;
  for (int r = 0; r < n; r++) {
    fill_bytes(t.scratch.data(), (int64_t)prim.scratch.get_size(), runs[r].scratch);
    if (runs[r].out >= 0) fill_bytes(out, bytes, runs[r].out);
    else std::memcpy(out, given.data(), (size_t)bytes);
    prim.prim.execute(t.strm, args);
    t.strm.wait();
    if (r == 0) {
      std::memcpy(first.data(), out, (size_t)bytes);
    } else if (std::memcmp(first.data(), out, (size_t)bytes) != 0) {
      found += std::string(found.empty() ? "" : "; ") + runs[r].read;
    }
  }
  std::memcpy(out, first.data(), (size_t)bytes);
  if (found.empty()) return;
  std::lock_guard<std::mutex> lock(mu);
  if (told.insert(key).second)
    fprintf(stderr, "autoglm: oneDNN product [batch,M,N,K,strideA,strideB,trans,alpha,beta] (alpha, beta as bits) %s depends on %s\n",
            key.c_str(), found.c_str());
}
}  // namespace

bool matmul_bf16_out_strided(const uint16_t* a, const uint16_t* b, float* out, const MatmulP& p, int64_t B, int64_t H,
                             const int64_t* os) {
  // not on the widening path, not where the output is filled before each product (AUTOGLM_DNNL_FILL: run_onednn fills
  // a dense output only), not at the N that AMX gets wrong (amx_n_gap pads a dense output)
  if (bf16_path()[0] != 'o' || p.K == 0 || p.M == 0 || p.N == 0 || p.bias || p.beta != 0.0f || dnnl_fill() >= 0 || amx_n_gap(p.N) ||
      B * H != p.batch || p.strideA != p.M * p.K || p.strideB != p.K * p.N)
    return false;
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  const int64_t sA = p.M * p.K, sB = p.K * p.N;
  dnnl::memory::desc ad({B, H, p.M, p.K}, dt::bf16, p.transA ? dims{H * sA, sA, 1, p.M} : dims{H * sA, sA, p.K, 1});
  dnnl::memory::desc bd({B, H, p.K, p.N}, dt::bf16, p.transB ? dims{H * sB, sB, 1, p.K} : dims{H * sB, sB, p.N, 1});
  dnnl::memory::desc cd({B, H, p.M, p.N}, dt::f32, dims{os[0], os[1], os[2], 1});
  const std::string key = "4d," + std::to_string(B) + "," + std::to_string(H) + "," + std::to_string(p.M) + "," +
                          std::to_string(p.N) + "," + std::to_string(p.K) + "," + std::to_string(p.transA) +
                          std::to_string(p.transB) + "," + std::to_string(float_bits(p.alpha)) + "," +
                          std::to_string(os[0]) + "," + std::to_string(os[1]) + "," + std::to_string(os[2]);
  try {
    run_onednn(key, ad, bd, cd, dnnl::memory::desc(), a, b, out, p, false);
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

const char* bf16_path() {
  // AUTOGLM_BF16_PATH=onednn|sgemm overrides the choice (tests use it to exercise the oneDNN path anywhere)
  static const char* path = [] {
    const char* e = getenv("AUTOGLM_BF16_PATH");
    if (e && std::string(e) == "onednn") return "onednn";
    if (e && std::string(e) == "sgemm") return "sgemm";
    return has_native_bf16() ? "onednn" : "sgemm";
  }();
  return path;
}

void matmul_bf16_widened(const uint16_t* a, const uint16_t* b, float* out, const MatmulP& p);

void matmul_bf16(const uint16_t* a, const uint16_t* b, float* out, const MatmulP& p) {
  if (p.M == 0 || p.N == 0 || p.batch == 0) return;
  // oneDNN adds a bias in the product's epilogue (no pass over out to write it first, none to read it back); it
  // takes it only unscaled and without accumulation
  const bool onednn = bf16_path()[0] == 'o' && p.K > 0 && !(p.strideA == 0 && p.strideB == 0 && p.batch > 1);
  if (p.bias && !(onednn && p.alpha == 1.0f && p.beta == 0.0f)) return matmul_bf16(a, b, out, prefill_bias(out, p));
  if (onednn) {
    try {
      matmul_onednn(a, b, out, p, false);
      return;
    } catch (const dnnl::error&) {
      // fall through to the widening path (e.g. a layout the primitive rejects)
    }
  }
  if (p.bias) return matmul_bf16_widened(a, b, out, prefill_bias(out, p));
  matmul_bf16_widened(a, b, out, p);
}

// matmul_bf16 with the output rounded to bf16 (round to nearest even), beta = 0: by oneDNN itself into a bf16
// destination where it runs (the output's bytes halved: a product's output is written to memory out of cache), else the
// f32 product cast.
void matmul_bf16_to_bf16(const uint16_t* a, const uint16_t* b, uint16_t* out, const MatmulP& p) {
  if (p.M == 0 || p.N == 0 || p.batch == 0) return;
  if (bf16_path()[0] == 'o' && p.K > 0 && p.beta == 0.0f && (!p.bias || p.alpha == 1.0f) && !(p.strideA == 0 && p.strideB == 0 && p.batch > 1)) {
    try {
      matmul_onednn(a, b, out, p, true);
      return;
    } catch (const dnnl::error&) {
      // below: the f32 product, rounded
    }
  }
  const int64_t n = p.batch * p.M * p.N;
  std::unique_ptr<float[]> f(new float[(size_t)n]);
  matmul_bf16(a, b, f.get(), p);
  cast(f.get(), D_F32, out, D_BF16, n);
}

// bf16 operands widened to f32 (exact), then sgemm: CPUs without bf16 hardware
void matmul_bf16_widened(const uint16_t* a, const uint16_t* b, float* out, const MatmulP& p) {
  const int64_t na = p.K == 0 ? 0 : (p.strideA == 0 ? 0 : (p.batch - 1) * p.strideA) + p.M * p.K;
  const int64_t slot = widen_scratch_elems();
  if (p.batch == 1 || p.strideB == 0) {  // one right operand (a weight)
    if (na > slot && !p.transA && p.K > 0 && (p.batch == 1 || p.strideA == p.M * p.K)) {
      // the left operand's rows lie back to back (the batches too): a band of them at a time, each band's rows of
      // out at once, so its widened copy stays within the scratch. The right operand is widened once when it fits
      // its slot, else block by block for each band (matmul_lowp).
      const int64_t rows = p.batch * p.M, band = std::max<int64_t>(1, std::min<int64_t>(rows, slot / p.K));
      const bool whole = p.K * p.N <= slot;
      std::unique_ptr<float[]> ownB;
      const float* fb = whole ? widen(b, p.K * p.N, kSlotB, ownB) : nullptr;
      MatmulP q = p;  // one band: a single matrix of nr rows
      q.batch = 1;
      q.strideA = 0;
      q.strideB = 0;
      for (int64_t r0 = 0; r0 < rows; r0 += band) {
        const int64_t nr = std::min(rows, r0 + band) - r0;
        std::unique_ptr<float[]> own;
        q.M = nr;
        const float* fa = widen(a + r0 * p.K, nr * p.K, kSlotA, own);
        if (whole) matmul_f32(fa, fb, out + r0 * p.N, q);
        else matmul_lowp(fa, b, LowpKind::bf16, nullptr, out + r0 * p.N, q);
      }
      return;
    }
    // the left operand whole (in its slot, or fresh when larger and transposed), the right one a block at a time
    std::unique_ptr<float[]> own;
    matmul_lowp(widen(a, na, kSlotA, own), b, LowpKind::bf16, nullptr, out, p);
    return;
  }
  const int64_t nb = p.K == 0 ? 0 : (p.batch - 1) * p.strideB + p.K * p.N;
  std::unique_ptr<float[]> ownA, ownB;
  const float* fa = widen(a, na, kSlotA, ownA);
  matmul_f32(fa, widen(b, nb, kSlotB, ownB), out, p);
}

// ---- f32 x low-precision weight ---------------------------------------------------------------------------------
// The right operand is one stored matrix (bf16, int8 with a scale per stored row, or NF4 codes with an absmax per 64
// elements) shared by the whole batch.
// It is widened to f32 a block of stored rows at a time (the right operand's scratch slot, 16 MiB), each block
// multiplied by sgemm at once: stored rows are output columns when transB (y = x W^T: the block fills a column band
// of out, ldc = N) and reduction rows otherwise (dx = g W: the products of the blocks accumulate, beta = 1 after the
// first). So no f32 copy of the whole weight ever exists, and the result equals widening it all (summation order
// aside).

// dst[r][c] = scale[r] * src[r][c] for a block of int8 rows, AVX2, rows split over the threads (the head of a
// language model is widened once per logits chunk and direction: 38.6 M weights on GPT-2).
static void widen_i8_rows(const int8_t* src, const float* scales, int64_t rows, int64_t cols, float* dst) {
#pragma omp parallel for schedule(static) if (par(rows * cols))
  for (int64_t r = 0; r < rows; r++) {
    const int8_t* s = src + r * cols;
    float* d = dst + r * cols;
    const float sc = scales ? scales[r] : 1.0f;
    const __m256 vs = _mm256_set1_ps(sc);
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) {
      const __m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(s + c)));
      _mm256_storeu_ps(d + c, _mm256_mul_ps(vs, _mm256_cvtepi32_ps(w)));
    }
    for (; c < cols; c++) d[c] = sc * (float)s[c];
  }
}

void matmul_lowp(const float* a, const void* b, LowpKind kind, const float* scales, float* out, const MatmulP& p) {
  if (p.M == 0 || p.N == 0 || p.batch == 0) return;
  if (p.K == 0) {
    matmul_f32(a, nullptr, out, p);
    return;
  }
  const int64_t rowsB = p.transB ? p.N : p.K, colsB = p.transB ? p.K : p.N;
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(rowsB, widen_scratch_elems() / colsB));
  std::unique_ptr<float[]> own;
  float* const blockBuf = widen_buffer(block * colsB, kSlotB, own);  // not zero-filled: each block is written whole
  const int lda = p.transA ? (int)p.M : (int)p.K;
  for (int64_t r0 = 0; r0 < rowsB; r0 += block) {
    const int64_t r1 = std::min(rowsB, r0 + block), nr = r1 - r0;
    if (kind == LowpKind::bf16) {
      bf16_to_f32_n((const uint16_t*)b + r0 * colsB, blockBuf, nr * colsB);  // stored rows are contiguous
    } else if (kind == LowpKind::i8) {
      widen_i8_rows((const int8_t*)b + r0 * colsB, scales ? scales + r0 : nullptr, nr, colsB, blockBuf);
    } else {
      widen_nf4((const uint8_t*)b, scales, r0 * colsB, nr * colsB, blockBuf);
    }
    for (int64_t i = 0; i < p.batch; i++) {
      const float* ai = a + i * p.strideA;
      float* oi = out + i * p.M * p.N;
      if (p.transB) {
        cblas_sgemm(CblasRowMajor, p.transA ? CblasTrans : CblasNoTrans, CblasTrans, (int)p.M, (int)nr, (int)p.K,
                    p.alpha, ai, lda, blockBuf, (int)p.K, p.beta, oi + r0, (int)p.N);
      } else {
        const float* ab = p.transA ? ai + r0 * p.M : ai + r0;
        cblas_sgemm(CblasRowMajor, p.transA ? CblasTrans : CblasNoTrans, CblasNoTrans, (int)p.M, (int)p.N, (int)nr,
                    p.alpha, ab, lda, blockBuf, (int)p.N, r0 == 0 ? p.beta : 1.0f, oi, (int)p.N);
      }
    }
  }
}

const char* onednn_isa() {
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}
const char* blas_config() { return openblas_get_config(); }
const char* blas_core() { return openblas_get_corename(); }

}  // namespace ag
