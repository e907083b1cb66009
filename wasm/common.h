// Shared declarations of the WebAssembly kernels (wasm32, 128-bit SIMD, freestanding: no libc). The module's
// memory is imported from JavaScript (shared when threads are available); kernels work on pointers into it.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <wasm_simd128.h>

#define EXPORT(name) extern "C" __attribute__((export_name(#name)))

namespace ag {

// ---- runtime.cc: bump allocator over the module's memory, and the thread pool ----
void* alloc_bytes(size_t n);  // 16-byte aligned; grows the memory as needed; null when it cannot
int num_threads();
// Runs fn(ctx, tid, nt) for tid in [0, nt) on nt threads (the caller's thread is tid 0), nt <= num_threads().
typedef void (*TaskFn)(void* ctx, int tid, int nt);
void parallel(TaskFn fn, void* ctx, int nt);
// Items [0, n) taken one at a time from a shared counter by nt threads: a thread that the OS delays (a busy
// machine) takes fewer, instead of everyone waiting for its fixed share. Returns the next item or -1.
struct Counter {
  volatile int32_t next;
  int n;
  int take() {
    const int i = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
    return i < n ? i : -1;
  }
};
// A thread count for `work` units of work (elements, flops / 16): 1 below a threshold.
int threads_for(double work);
// Permanent allocation (below the mark that ag_reset returns to).
void* alloc_permanent(size_t n);
constexpr int kMaxThreads = 64;

// ---- gemm.cc ----
// C = alpha * op(A) @ op(B) + beta * C, row-major with leading dimensions, single-threaded on thread `tid`'s
// packing buffers. op(A) is M x K (A stored K x M when ta), op(B) is K x N (stored N x K when tb).
void sgemm(int tid, bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
           float beta, float* C, int ldc);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

template <class T> inline T min_(T a, T b) { return a < b ? a : b; }
template <class T> inline T max_(T a, T b) { return a > b ? a : b; }

}  // namespace ag
