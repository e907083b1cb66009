// The runtime under the kernels: a bump allocator (operands are placed in memory for one kernel call, then the
// allocator is reset to its mark), and a pool of worker threads (Web Workers / worker_threads instantiating this
// same module on the same shared memory) that run one task at a time, synchronised with wasm atomics.
#include "common.h"

extern "C" unsigned char __heap_base;

namespace ag {
namespace {
constexpr size_t kPage = 65536;
size_t g_top = 0;   // next free byte
size_t g_mark = 0;  // reset point (everything below is permanent)

int g_limit = 1;    // the user's setting
// Task board. Workers sleep on g_gen; each task bumps it. Each worker takes an index from g_next.
[[maybe_unused]] volatile int32_t g_gen = 0, g_ready = 0, g_next = 0, g_done = 0;
[[maybe_unused]] TaskFn g_fn = nullptr;
[[maybe_unused]] void* g_ctx = nullptr;
[[maybe_unused]] volatile int32_t g_nt = 1;
int g_main_may_wait = 0;

inline int32_t aload(volatile int32_t* p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
[[maybe_unused]] inline void astore(volatile int32_t* p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
[[maybe_unused]] inline int32_t aadd(volatile int32_t* p, int32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
}  // namespace

void* alloc_bytes(size_t n) {
  if (g_top == 0) g_top = g_mark = ((size_t)&__heap_base + 15) & ~(size_t)15;
  size_t start = (g_top + 15) & ~(size_t)15;
  if (n > 0xFFFFFFF0u - start) return nullptr;
  size_t end = start + n;
  size_t have = __builtin_wasm_memory_size(0) * kPage;
  if (end > have) {
    size_t pages = (end - have + kPage - 1) / kPage;
    if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return nullptr;
  }
  g_top = end;
  return (void*)start;
}

int num_threads() {
#ifdef AG_THREADS
  int have = 1 + __atomic_load_n(&g_ready, __ATOMIC_SEQ_CST);
  return have < g_limit ? have : g_limit;
#else
  return 1;
#endif
}

int threads_for(double work) {
  const int g_threads = num_threads();
  if (g_threads <= 1 || work < 32768) return 1;
  int n = (int)(work / 16384);
  return n < g_threads ? (n < 1 ? 1 : n) : g_threads;
}

void parallel(TaskFn fn, void* ctx, int nt) {
#ifdef AG_THREADS
  const int have = num_threads();
  if (nt > have) nt = have;
  if (nt <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  g_fn = fn;
  g_ctx = ctx;
  astore(&g_nt, nt);
  astore(&g_next, 0);
  astore(&g_done, 0);
  aadd(&g_gen, 1);
  __builtin_wasm_memory_atomic_notify((int32_t*)&g_gen, 0xFFFFFFFFu);
  fn(ctx, 0, nt);
  int spins = 0;
  while (aload(&g_done) < nt - 1) {
    if (g_main_may_wait && ++spins > 20000) {
      int32_t d = aload(&g_done);
      if (d < nt - 1) __builtin_wasm_memory_atomic_wait32((int32_t*)&g_done, d, 1000000);  // 1 ms
    }
  }
#else
  (void)nt;
  fn(ctx, 0, 1);
#endif
}

}  // namespace ag

using namespace ag;

// ---- exports ----
EXPORT(ag_alloc) void* ag_alloc(size_t n) { return alloc_bytes(n); }
// Frees everything placed since the mark (operands of the last call).
EXPORT(ag_reset) void ag_reset() {
  if (g_top == 0) alloc_bytes(0);
  g_top = g_mark;
}
// Permanent allocation (a worker's stack, packing buffers): placed below the mark; only between calls.
void* ag::alloc_permanent(size_t n) {
  if (g_top == 0) alloc_bytes(0);
  g_top = g_mark;
  void* p = alloc_bytes(n);
  g_mark = g_top;
  return p;
}
EXPORT(ag_alloc_permanent) void* ag_alloc_permanent(size_t n) { return alloc_permanent(n); }
EXPORT(ag_set_threads) void ag_set_threads(int n) { g_limit = n < 1 ? 1 : n > kMaxThreads ? kMaxThreads : n; }
EXPORT(ag_threads) int ag_threads() { return num_threads(); }
EXPORT(ag_ready_workers) int ag_ready_workers() { return aload(&g_ready); }
EXPORT(ag_set_main_may_wait) void ag_set_main_may_wait(int v) { g_main_may_wait = v; }

#ifdef AG_THREADS
#ifndef AG_WORKER_SPIN
#define AG_WORKER_SPIN 100000
#endif
// A worker's loop: never returns. The worker's JavaScript sets its own stack pointer before calling it.
EXPORT(ag_worker_loop) void ag_worker_loop() {
  int32_t seen = aload(&g_gen);
  aadd(&g_ready, 1);
  for (;;) {
    // A training step calls kernels back to back, tens of microseconds apart: the worker polls for the next task a
    // while before it sleeps, as waking a sleeping thread (a futex, and an idle virtual CPU's exit) takes longer.
    int32_t g = aload(&g_gen);
    for (int s = 0; g == seen && s < AG_WORKER_SPIN; s++) g = aload(&g_gen);
    while (g == seen) {
      __builtin_wasm_memory_atomic_wait32((int32_t*)&g_gen, seen, -1);
      g = aload(&g_gen);
    }
    seen = g;
    int idx = aadd(&g_next, 1);
    int nt = aload(&g_nt);
    if (idx < nt - 1) {
      g_fn(g_ctx, idx + 1, nt);
      aadd(&g_done, 1);
      __builtin_wasm_memory_atomic_notify((int32_t*)&g_done, 1);
    }
  }
}
#endif
