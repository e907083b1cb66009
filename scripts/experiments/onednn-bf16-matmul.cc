// How oneDNN's bf16 matmul (the library the native backend links) spends its time on one CPU, variant by variant:
// the destination's type (f32, as our autocast keeps it, or bf16, as PyTorch's), the weights' layout (plain [K,N],
// transposed [N,K] as a Linear stores them, or packed once in the primitive's own layout), a bias in the epilogue, a
// reduction padded with zeros to a multiple of 32 (AMX's K-tail), a transposed left operand (weight gradients), and
// a zero fill of the destination before each call (what run_onednn does on AMX). Not part of the build.
//
//   g++ -O2 -fopenmp -std=c++17 scripts/experiments/onednn-bf16-matmul.cc -o /tmp/dnnl-mm -ldnnl
//   OMP_NUM_THREADS=2 taskset -c 0,1 /tmp/dnnl-mm [M K N ...]
//
// Prints one line per shape and variant: median and best ms of 25 calls after 5 warm-up calls, and GFLOP/s.
#include <dnnl.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace dnnl;
using dt = memory::data_type;
using tag = memory::format_tag;

struct Variant {
  const char* name;
  bool dst_bf16, transB, packed, bias, transA, fill;
  int pad_k;  // round K up to this multiple (0: as given)
};

static double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static void run(engine& eng, stream& s, int64_t M, int64_t K0, int64_t N, const Variant& v) {
  const int64_t K = v.pad_k ? (K0 + v.pad_k - 1) / v.pad_k * v.pad_k : K0;
  memory::desc ad({M, K}, dt::bf16, v.transA ? memory::dims{1, M} : memory::dims{K, 1});
  memory::desc bd_user({K, N}, dt::bf16, v.transB ? memory::dims{1, K} : memory::dims{N, 1});
  memory::desc bd = v.packed ? memory::desc({K, N}, dt::bf16, tag::any) : bd_user;
  memory::desc cd({M, N}, v.dst_bf16 ? dt::bf16 : dt::f32, memory::dims{N, 1});
  memory::desc biasd({1, N}, dt::f32, memory::dims{N, 1});
  primitive_attr attr;
  attr.set_scratchpad_mode(scratchpad_mode::user);
  matmul::primitive_desc pd(v.bias ? matmul::desc(ad, bd, biasd, cd) : matmul::desc(ad, bd, cd), attr, eng);
  matmul prim(pd);
  std::vector<uint16_t> a((size_t)(M * K), 0x3f80), b((size_t)(K * N), 0x3c00);  // 1.0, 2^-7
  std::vector<float> bias((size_t)N, 0.5f);
  std::vector<uint8_t> c((size_t)(M * N * 4)), scratch(pd.scratchpad_desc().get_size());
  memory am(ad, eng, a.data()), bm_user(bd_user, eng, b.data()), cm(cd, eng, c.data());
  memory sm(pd.scratchpad_desc(), eng, scratch.data());
  memory bm = bm_user;
  if (v.packed) {
    bm = memory(pd.weights_desc(), eng);
    reorder(bm_user, bm).execute(s, bm_user, bm);
    s.wait();
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, sm}};
  if (v.bias) args.emplace(DNNL_ARG_BIAS, memory(biasd, eng, bias.data()));
  const size_t cbytes = (size_t)(M * N * (v.dst_bf16 ? 2 : 4));
  std::vector<double> t;
  for (int i = 0; i < 30; i++) {
    const double t0 = now_ms();
    if (v.fill) std::memset(c.data(), 0, cbytes);
    prim.execute(s, args);
    s.wait();
    if (i >= 5) t.push_back(now_ms() - t0);
  }
  std::sort(t.begin(), t.end());
  const double med = t[t.size() / 2];
  printf("%5lldx%5lldx%5lld  %-26s K=%-5lld med %7.3f ms  best %7.3f  %7.1f GFLOP/s (of the unpadded product)\n", (long long)M,
         (long long)K0, (long long)N, v.name, (long long)K, med, t[0], 2.0 * M * K0 * N / med / 1e6);
  fflush(stdout);
}

int main(int argc, char** argv) {
  std::vector<int64_t> dims;
  for (int i = 1; i < argc; i++) dims.push_back(atoll(argv[i]));
  if (dims.empty())
    dims = {512, 512, 512, 2048, 768, 768, 2048, 768, 3072, 2048, 3072, 768, 1024, 256, 1024, 1024, 1024, 256,
            2048, 264, 1024, 2048, 1032, 256, 2048, 776, 256};
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const Variant vs[] = {
      {"f32 dst, B plain", false, false, false, false, false, false, 0},
      {"f32 dst, B plain, fill", false, false, false, false, false, true, 0},
      {"f32 dst, B trans+bias", false, true, false, true, false, false, 0},
      {"f32 dst, B trans", false, true, false, false, false, false, 0},
      {"f32 dst, B packed", false, false, true, false, false, false, 0},
      {"f32 dst, A trans", false, false, false, false, true, false, 0},
      {"bf16 dst, B plain", true, false, false, false, false, false, 0},
      {"bf16 dst, B trans", true, true, false, false, false, false, 0},
      {"bf16 dst, B packed", true, false, true, false, false, false, 0},
      {"f32 dst, B trans+bias, K32", false, true, false, true, false, false, 32},
      {"f32 dst, B plain, K32", false, false, false, false, false, false, 32},
      {"f32 dst, B packed, K32", false, false, true, false, false, false, 32},
  };
  for (size_t i = 0; i + 2 < dims.size(); i += 3)
    for (const auto& v : vs) {
      if (v.pad_k && dims[i + 1] % 32 == 0) continue;
      try {
        run(eng, s, dims[i], dims[i + 1], dims[i + 2], v);
      } catch (const dnnl::error& e) {
        printf("%lldx%lldx%lld %s: %s\n", (long long)dims[i], (long long)dims[i + 1], (long long)dims[i + 2], v.name, e.what());
      }
    }
  return 0;
}
