// How the placement of the operands changes oneDNN's bf16 matmul (the library the native backend links), one variant
// per run: the operands' offset from a page boundary (0, 64: cache-line aligned; 16: malloc's alignment, V8's
// ArrayBuffers before allocAligned), the row strides of A and C (a padded row over a shorter K or N), B transposed
// (a Linear's weight) or not, an f32 or bf16 destination, and how many output buffers the calls rotate over (1: the
// output stays in cache; 16: cold, as a training step's activations are). Not part of the build.
//
//   g++ -O2 -fopenmp -std=c++17 scripts/experiments/onednn-bf16-layout.cc -o /tmp/dnnl-layout -ldnnl
//   OMP_NUM_THREADS=2 /tmp/dnnl-layout M K N [offset=0] [dst_bf16=0] [lda=K] [transB=1] [ldc=N] [out_buffers=1]
//
// The thirty-third session's figures (docs/PERFORMANCE.md): alignment `2048 3072 768 {0,64,16} 1 3072 0`; LoRA's padded
// rows `2048 {264,288} 1024 0 0 {264,288} 1` and `2048 264 1024 0 0 288 1`; cold outputs `2048 256 1024 0 {0,1} 256 0 1024
// {1,16}`. Prints the median and best of 20 calls after 5 warm-up calls.
#include <dnnl.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <vector>

using namespace dnnl;
using dt = memory::data_type;

static double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s M K N [offset] [dst_bf16] [lda] [transB] [ldc] [out_buffers]\n", argv[0]);
    return 2;
  }
  auto arg = [&](int i, int64_t dflt) { return argc > i ? atoll(argv[i]) : dflt; };
  const int64_t M = arg(1, 0), K = arg(2, 0), N = arg(3, 0), off = arg(4, 0);
  const bool bf16_dst = arg(5, 0) != 0;
  const int64_t lda = arg(6, K);
  const bool transB = arg(7, 1) != 0;
  const int64_t ldc = arg(8, N), nbuf = std::max<int64_t>(1, arg(9, 1));
  const int64_t ldb = transB ? lda : N;  // B transposed: (N, K) rows of lda, as A's
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  memory::desc ad({M, K}, dt::bf16, memory::dims{lda, 1});
  memory::desc bd({K, N}, dt::bf16, transB ? memory::dims{1, ldb} : memory::dims{ldb, 1});
  memory::desc cd({M, N}, bf16_dst ? dt::bf16 : dt::f32, memory::dims{ldc, 1});
  primitive_attr attr;
  attr.set_scratchpad_mode(scratchpad_mode::user);
  matmul::primitive_desc pd(matmul::desc(ad, bd, cd), attr, eng);
  matmul prim(pd);
  // page-aligned blocks, the data `off` bytes in
  auto alloc = [&](size_t bytes) {
    char* p = (char*)aligned_alloc(4096, (bytes + off + 4095) / 4096 * 4096);
    std::memset(p, 0, bytes + off);
    return p + off;
  };
  uint16_t* a = (uint16_t*)alloc((size_t)(M * lda * 2));
  uint16_t* b = (uint16_t*)alloc((size_t)((transB ? N * ldb : K * ldb) * 2));
  for (int64_t i = 0; i < M * lda; i++) a[i] = (uint16_t)(0x3f80 + i % 7);
  for (int64_t i = 0; i < (transB ? N * ldb : K * ldb); i++) b[i] = (uint16_t)(0x3c00 + i % 5);
  std::vector<char*> outs;
  for (int64_t i = 0; i < nbuf; i++) outs.push_back(alloc((size_t)(M * ldc * 4)));
  char* scratch = alloc(pd.scratchpad_desc().get_size());
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(ad, eng, a)}, {DNNL_ARG_WEIGHTS, memory(bd, eng, b)},
                                       {DNNL_ARG_SCRATCHPAD, memory(pd.scratchpad_desc(), eng, scratch)}};
  std::vector<double> t;
  for (int i = 0; i < 25; i++) {
    args[DNNL_ARG_DST] = memory(cd, eng, outs[(size_t)(i % nbuf)]);
    const double t0 = now_ms();
    prim.execute(s, args);
    s.wait();
    if (i >= 5) t.push_back(now_ms() - t0);
  }
  std::sort(t.begin(), t.end());
  printf("%lldx%lldx%lld offset %lld lda %lld ldc %lld B %s dst %s, %lld output buffer(s): med %.3f ms best %.3f\n",
         (long long)M, (long long)K, (long long)N, (long long)off, (long long)lda, (long long)ldc, transB ? "transposed" : "plain",
         bf16_dst ? "bf16" : "f32", (long long)nbuf, t[t.size() / 2], t[0]);
  return 0;
}
