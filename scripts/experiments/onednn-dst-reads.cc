// Which oneDNN bf16 matmuls (f32 destination, user scratchpad) give results that depend on what their destination or
// scratchpad held before the call: each shape and layout runs over zero-filled buffers and again over NaN-filled ones
// (0xff bytes), and a line is printed where the bits differ. An accumulating product (sum post-op: beta = 1, its
// destination an input) varies its scratchpad only, its destination restored before each run. What native/matmul.cc's
// zero fill on AMX guards against. Not part of the build.
// On an Emerald Rapids (oneDNN 2.6.3, the beta = 0 products only), 42 of 1,344 depended on their buffers, all with N = 50.
//
//   g++ -O2 -fopenmp -std=c++17 scripts/experiments/onednn-dst-reads.cc -o /tmp/dnnl-reads -ldnnl
//   OMP_NUM_THREADS=2 /tmp/dnnl-reads
#include <dnnl.hpp>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

using namespace dnnl;
using dt = memory::data_type;

int main() {
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  int tested = 0, bad = 0;
  for (int64_t M : {1, 8, 16, 24, 32, 100, 128})
    for (int64_t N : {4, 8, 16, 32, 50, 64, 100, 257})
      for (int64_t K : {8, 32, 36, 64, 100, 264, 2048})
        for (int transA = 0; transA < 2; transA++)
        for (int transB = 0; transB < 2; transB++)
          for (int bias = 0; bias < 2; bias++)
            for (int sum = 0; sum < 2; sum++) {
            memory::desc ad({1, M, K}, dt::bf16, transA ? memory::dims{M * K, 1, M} : memory::dims{M * K, K, 1});
            memory::desc bd({1, K, N}, dt::bf16, transB ? memory::dims{K * N, 1, K} : memory::dims{K * N, N, 1});
            memory::desc cd({1, M, N}, dt::f32, memory::dims{M * N, N, 1});
            memory::desc biasd({1, 1, N}, dt::f32, memory::dims{N, N, 1});
            primitive_attr attr;
            attr.set_scratchpad_mode(scratchpad_mode::user);
            if (sum) {
              post_ops po;
              po.append_sum(1.0f);
              attr.set_post_ops(po);
            }
            matmul::primitive_desc pd;
            try {
              pd = matmul::primitive_desc(bias ? matmul::desc(ad, bd, biasd, cd) : matmul::desc(ad, bd, cd), attr, eng);
            } catch (const dnnl::error&) {
              continue;
            }
            matmul prim(pd);
            std::vector<uint16_t> a((size_t)(M * K)), b((size_t)(K * N));
            for (size_t i = 0; i < a.size(); i++) a[i] = (uint16_t)(0x3f00 + (i * 37) % 200);
            for (size_t i = 0; i < b.size(); i++) b[i] = (uint16_t)(0xbe00 + (i * 53) % 300);
            std::vector<float> bv((size_t)N, 0.25f), c((size_t)(M * N)), first, given((size_t)(M * N));
            for (size_t i = 0; i < given.size(); i++) given[i] = (float)(i % 7) * 0.25f;
            std::vector<uint8_t> sp(pd.scratchpad_desc().get_size() + 1);
            memory am(ad, eng, a.data()), bm(bd, eng, b.data()), cm(cd, eng, c.data()), sm(pd.scratchpad_desc(), eng, sp.data());
            std::unordered_map<int, memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, sm}};
            if (bias) args.emplace(DNNL_ARG_BIAS, memory(biasd, eng, bv.data()));
            const char* what[3] = {"", "destination", "scratchpad"};
            const int fills[3][2] = {{0, 0}, {0, 0xff}, {0xff, 0}};
            std::string found;
            for (int r = 0; r < 3; r++) {
              if (sum && r == 1) continue;  // the destination is an input here
              std::memset(sp.data(), fills[r][0], sp.size());
              if (sum) c = given;
              else std::memset(c.data(), fills[r][1], c.size() * 4);
              prim.execute(s, args);
              s.wait();
              if (r == 0) first = c;
              else if (std::memcmp(first.data(), c.data(), c.size() * 4) != 0) found += std::string(found.empty() ? "" : "+") + what[r];
            }
            tested++;
            if (!found.empty()) {
              bad++;
              printf("M=%lld N=%lld K=%lld %s%s%s%s: depends on %s\n", (long long)M, (long long)N, (long long)K, transA ? "A transposed, " : "",
                     transB ? "B transposed" : "B plain",
                     bias ? ", bias" : "", sum ? ", accumulating (sum post-op)" : "", found.c_str());
            }
          }
  printf("%d products tested, %d depend on earlier contents (isa %d)\n", tested, bad, (int)dnnl_get_effective_cpu_isa());
  return 0;
}
