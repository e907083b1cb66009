// N-API bindings of the kernels (node-addon-api). Every entry point checks its argument count, types and
// buffer sizes cheaply and throws a JS TypeError/RangeError naming the kernel instead of crashing.
#include "args.h"
#include <cblas.h>
#include <malloc.h>
#include <cstdlib>
#include <dnnl.hpp>
#include <v8.h>
#include <memory>
#include <string>
#include <vector>
#include "common.h"

extern "C" void openblas_set_num_threads(int);

namespace ag {
static int g_threads = 1;
int num_threads() { return g_threads; }
void set_num_threads(int n) {
  g_threads = n < 1 ? 1 : n;
  omp_set_num_threads(g_threads);
  openblas_set_num_threads(g_threads);
}
}  // namespace ag

namespace {
using namespace ag;


KERNEL(JsFill) {
  Args a(info, "fill", 2);
  size_t n;
  int es;
  void* d = a.arr(0, -1, &n, false, &es);
  napi_typedarray_type t;
  napi_get_typedarray_info(info.Env(), info[0], &t, &n, nullptr, nullptr, nullptr);
  double v = a.num(1);
  if (t == napi_float32_array) fill_f32((float*)d, n, (float)v);
  else if (t == napi_int32_array) fill_i32((int32_t*)d, n, (int32_t)(int64_t)v);
  else a.type_err(0, "a Float32Array or Int32Array");
  UNDEF;
}

KERNEL(JsStridedCopy) {
  Args a(info, "stridedCopy", 4);
  size_t ns, nd;
  int es, ed;
  void* s = a.arr(0, -1, &ns, false, &es);
  auto shape = a.ints(1, true), st = a.ints(2, false);
  void* d = a.arr(3, -1, &nd, false, &ed);
  a.need(shape.size() == st.size(), "shape and strides differ in length");
  a.need(es == ed, "src and dst element sizes differ");
  a.need(prod(shape) == 0 || view_fits(shape, st, ns), "the strided view reaches outside src");
  std::vector<int64_t> dst_st;
  const bool strided_dst = info.Length() > 4 && !info[4].IsUndefined();
  if (strided_dst) {
    dst_st = a.ints(4, false);
    a.need(dst_st.size() == shape.size(), "dstStrides and shape differ in length");
    a.need(prod(shape) == 0 || view_fits(shape, dst_st, nd), "the strided destination reaches outside dst");
  } else {
    a.need((int64_t)nd >= prod(shape), "dst is smaller than the shape");
  }
  if (prod(shape) > 0) strided_copy(s, es, shape.data(), st.data(), (int)shape.size(), d, strided_dst ? dst_st.data() : nullptr);
  UNDEF;
}

KERNEL(JsCast) {
  Args a(info, "cast", 4);
  static const int want[D_COUNT] = {napi_float32_array, napi_uint16_array, napi_uint16_array, napi_int32_array, napi_int8_array};
  int sdt = a.op(1, D_COUNT), ddt = a.op(3, D_COUNT);
  size_t ns, nd;
  void* s = a.arr(0, want[sdt], &ns);
  void* d = a.arr(2, want[ddt], &nd);
  a.need(nd >= ns, "dst is smaller than src");
  cast(s, sdt, d, ddt, ns);
  UNDEF;
}

KERNEL(JsUnary) {
  Args a(info, "unary", 3);
  int op = a.op(0, U_COUNT);
  size_t n, no;
  float* x = a.f32(1, &n);
  float* o = a.f32(2, &no);
  a.need(no >= n, "out is smaller than x");
  unary(op, x, o, n);
  UNDEF;
}

// unaryBf16(op, x, out Uint16Array): unary's values rounded to bf16, in one pass (no f32 output)
KERNEL(JsUnaryBf16) {
  Args a(info, "unaryBf16", 3);
  int op = a.op(0, U_COUNT);
  size_t n, no;
  float* x = a.f32(1, &n);
  uint16_t* o = (uint16_t*)a.arr(2, napi_uint16_array, &no);
  a.need(no >= n, "out is smaller than x");
  unary_bf16(op, x, o, n);
  UNDEF;
}

// An f32 or bf16 operand: a Float32Array, or a Uint16Array of bf16 bits (*bf16 set).
static void* f32_or_bf16(const Args& a, size_t i, size_t* n, bool* bf16) {
  int es = 0;
  void* p = a.arr(i, -1, n, false, &es);
  a.need(es == 4 || es == 2, "an operand is neither a Float32Array nor a Uint16Array (bf16)");
  *bf16 = es == 2;
  return p;
}

// unaryBf16Grad(op, x f32|bf16, y Uint16Array, d Uint16Array): f(x) and f'(x) rounded to bf16 (gelu, gelu_tanh, silu, relu)
KERNEL(JsUnaryBf16Grad) {
  Args a(info, "unaryBf16Grad", 4);
  int op = a.op(0, U_COUNT);
  a.need(op == U_GELU || op == U_GELU_TANH || op == U_SILU || op == U_RELU, "op is not gelu, gelu_tanh, silu or relu");
  size_t n, ny, nd;
  bool xb;
  void* x = f32_or_bf16(a, 1, &n, &xb);
  uint16_t* y = (uint16_t*)a.arr(2, napi_uint16_array, &ny);
  uint16_t* d = (uint16_t*)a.arr(3, napi_uint16_array, &nd);
  a.need(ny >= n && nd >= n, "y or d is smaller than x");
  unary_bf16_grad(op, xb ? nullptr : (const float*)x, xb ? (const uint16_t*)x : nullptr, y, d, n);
  UNDEF;
}

// mulBf16(g f32|bf16, d Uint16Array, out f32|bf16): out = g * d
KERNEL(JsMulBf16) {
  Args a(info, "mulBf16", 3);
  size_t n, nd, no;
  bool gb, ob;
  void* g = f32_or_bf16(a, 0, &n, &gb);
  uint16_t* d = (uint16_t*)a.arr(1, napi_uint16_array, &nd);
  void* o = f32_or_bf16(a, 2, &no, &ob);
  a.need(nd >= n && no >= n, "d or out is smaller than g");
  a.need(gb == ob || g != o, "out may be g only where both have one dtype");
  mul_bf16(gb ? nullptr : (const float*)g, gb ? (const uint16_t*)g : nullptr, d, ob ? nullptr : (float*)o, ob ? (uint16_t*)o : nullptr, n);
  UNDEF;
}

// castColumnSums(src Float32Array (rows, cols), rows, cols, dst Uint16Array, sums Float32Array (cols)): src rounded to
// bf16 into dst (cast's bits) and its column sums (reduce's sum over the rows, its bits), in one pass where it can
KERNEL(JsCastColumnSums) {
  Args a(info, "castColumnSums", 5);
  size_t ns, nd, no;
  const float* s = a.f32(0, &ns);
  const int64_t rows = a.integer(1), cols = a.integer(2);
  uint16_t* d = (uint16_t*)a.arr(3, napi_uint16_array, &nd);
  float* o = a.f32(4, &no);
  a.need((int64_t)ns >= rows * cols && (int64_t)nd >= rows * cols && (int64_t)no >= cols, "src or dst is smaller than rows*cols, or sums than cols");
  a.need((const void*)s != (const void*)d, "dst may not be src");
  if (rows > 0 && cols > 0) cast_column_sum(s, rows, cols, o, d);
  else for (int64_t c = 0; c < cols; c++) o[c] = 0.0f;
  UNDEF;
}

// sumRowsBf16(src Uint16Array (rows, cols), rows, cols, out Float32Array (cols)): column sums in f32
KERNEL(JsSumRowsBf16) {
  Args a(info, "sumRowsBf16", 4);
  size_t ns, no;
  const uint16_t* s = (const uint16_t*)a.arr(0, napi_uint16_array, &ns);
  const int64_t rows = a.integer(1), cols = a.integer(2);
  float* o = a.f32(3, &no);
  a.need((int64_t)ns >= rows * cols && (int64_t)no >= cols, "src is smaller than rows*cols or out than cols");
  sum_rows_bf16(s, rows, cols, o);
  UNDEF;
}

KERNEL(JsRoundBf16) {
  Args a(info, "roundBf16", 2);
  size_t n, no;
  float* x = a.f32(0, &n);
  float* o = a.f32(1, &no);
  a.need(no >= n, "dst is smaller than src");
  round_bf16_n(x, o, n);
  UNDEF;
}

// castRowsBf16(src, rows, cols, dst Uint16Array, ld): src's (rows, cols) rows as bf16 rows of ld elements, the rest zero
KERNEL(JsCastRowsBf16) {
  Args a(info, "castRowsBf16", 5);
  size_t n, nd;
  const float* x = a.f32(0, &n);
  const int64_t rows = a.integer(1), cols = a.integer(2), ld = a.integer(4);
  uint16_t* o = (uint16_t*)a.arr(3, napi_uint16_array, &nd);
  a.need(ld >= cols, "ld is smaller than cols");
  a.need((int64_t)n >= rows * cols, "src is smaller than rows x cols");
  a.need((int64_t)nd >= rows * ld, "dst is smaller than rows x ld");
  cast_rows_bf16(x, rows, cols, o, ld);
  UNDEF;
}

KERNEL(JsUnaryBackward) {
  Args a(info, "unaryBackward", 5);
  int op = a.op(0, U_COUNT);
  size_t nx, ny, ng, nd;
  float *x = a.f32(1, &nx), *y = a.f32(2, &ny), *g = a.f32(3, &ng), *d = a.f32(4, &nd);
  a.need(nx >= nd && ny >= nd && ng >= nd, "x, y and dy must be as long as dx");
  unary_backward(op, x, y, g, d, nd);
  UNDEF;
}

KERNEL(JsBinary) {
  Args a(info, "binary", 7);
  int op = a.op(0, B_COUNT);
  size_t na, nb, no;
  float* x = a.f32(1, &na);
  auto as = a.ints(2, false);
  float* y = a.f32(3, &nb);
  auto bs = a.ints(4, false);
  auto shape = a.ints(5, true);
  float* o = a.f32(6, &no);
  a.need(as.size() == shape.size() && bs.size() == shape.size(), "strides and shape differ in length");
  const int64_t total = prod(shape);
  a.need((int64_t)no >= total, "out is smaller than the shape");
  if (total == 0) UNDEF;
  a.need(view_fits(shape, as, na) && view_fits(shape, bs, nb), "a strided view reaches outside its buffer");
  binary(op, x, as.data(), y, bs.data(), shape.data(), (int)shape.size(), o);
  UNDEF;
}

KERNEL(JsWhere) {
  Args a(info, "where", 8);
  size_t nc, na, nb, no;
  float* c = a.f32(0, &nc);
  auto cs = a.ints(1, false);
  float* x = a.f32(2, &na);
  auto as = a.ints(3, false);
  float* y = a.f32(4, &nb);
  auto bs = a.ints(5, false);
  auto shape = a.ints(6, true);
  float* o = a.f32(7, &no);
  a.need(cs.size() == shape.size() && as.size() == shape.size() && bs.size() == shape.size(), "strides and shape differ in length");
  const int64_t total = prod(shape);
  a.need((int64_t)no >= total, "out is smaller than the shape");
  if (total == 0) UNDEF;
  a.need(view_fits(shape, cs, nc) && view_fits(shape, as, na) && view_fits(shape, bs, nb), "a strided view reaches outside its buffer");
  where(c, cs.data(), x, as.data(), y, bs.data(), shape.data(), (int)shape.size(), o);
  UNDEF;
}

KERNEL(JsAxpby) {
  Args a(info, "axpby", 5);
  size_t nx, ny, no;
  float* x = a.f32(1, &nx);
  float* y = a.f32(3, &ny);
  float* o = a.f32(4, &no);
  a.need(nx >= no && ny >= no, "x and y must be as long as out");
  axpby((float)a.num(0), x, (float)a.num(2), y, o, no);
  UNDEF;
}

KERNEL(JsAffine) {
  Args a(info, "affine", 4);
  size_t nx, no;
  float* x = a.f32(0, &nx);
  float* o = a.f32(3, &no);
  a.need(no >= nx, "out is smaller than x");
  affine(x, (float)a.num(1), (float)a.num(2), o, nx);
  UNDEF;
}

KERNEL(JsReduce) {
  Args a(info, "reduce", 6);
  int op = a.op(0, R_COUNT);
  size_t nx, no;
  float* x = a.f32(1, &nx);
  int64_t outer = a.integer(2), n = a.integer(3), inner = a.integer(4);
  float* o = a.f32(5, &no);
  a.need((int64_t)nx >= outer * n * inner && (int64_t)no >= outer * inner, "buffers are smaller than (outer, n, inner)");
  if (outer * inner > 0) reduce(op, x, outer, n, inner, o);
  UNDEF;
}

KERNEL(JsArgmax) {
  Args a(info, "argmax", 5);
  size_t nx, no;
  float* x = a.f32(0, &nx);
  int64_t outer = a.integer(1), n = a.integer(2), inner = a.integer(3);
  int32_t* o = a.i32(4, &no);
  a.need((int64_t)nx >= outer * n * inner && (int64_t)no >= outer * inner, "buffers are smaller than (outer, n, inner)");
  if (outer * inner > 0) argmax(x, outer, n, inner, o);
  UNDEF;
}

KERNEL(JsSumSquares) {
  Args a(info, "sumSquares", 1);
  size_t n;
  float* x = a.f32(0, &n);
  return Napi::Number::New(info.Env(), sum_squares(x, n));
}

// Hands the heap's free pages back to the kernel (glibc malloc_trim: whole free pages anywhere in the heap, not
// only at its top). Returns whether anything was released.
KERNEL(JsTrimHeap) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

// Uninitialised memory for a tensor buffer, aligned to a cache line (64 bytes), as an ArrayBuffer that frees it
// when collected. V8's own ArrayBuffers come from malloc, 16-byte aligned: a bf16 product with operands 16 bytes
// off a line runs 15-25% slower on AMX (tile loads split across lines; 2048x3072x768, oneDNN 2.6.3, 16.6 against
// 13.6 ms), and the AVX2/AVX-512 kernels' full-width loads straddle lines the same way. From the same malloc heap,
// so the mmap threshold below governs these buffers too.
//
// Built with V8's API, not napi_create_external_arraybuffer: Node runs an N-API finalizer only on a later turn of
// the event loop, so buffers collected in the middle of a synchronous training step would stay allocated until
// it ends (+55 MB peak RSS on cls-lora). V8 calls this deleter as soon as the collector frees the backing store
// (possibly from its sweeper thread; free() is thread-safe): here the malloc block (deleter_data) the data lies in.
static void free_aligned(void*, size_t, void* block) { std::free(block); }

KERNEL(JsAllocAligned) {
  Args a(info, "allocAligned", 1);
  const double want = a.num(0);
  if (!(want >= 0) || want > 9.0e15 || want != (double)(size_t)want) {
    throw Napi::RangeError::New(info.Env(), "allocAligned: byte length must be a whole number >= 0; got " + std::to_string(want));
  }
  const size_t bytes = (size_t)want;
  // malloc's block, 64 bytes more, the data at its first cache line boundary: posix_memalign splits the fragments
  // before and after an aligned block back into the heap, which left it more fragmented (+72 MB of peak RSS on the
  // main job)
  void* block = std::malloc(bytes + 64);
  if (block == nullptr) throw Napi::RangeError::New(info.Env(), "allocAligned: out of memory for " + std::to_string(bytes) + " bytes");
  void* p = (void*)(((uintptr_t)block + 63) & ~(uintptr_t)63);
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> store = v8::ArrayBuffer::NewBackingStore(p, bytes, free_aligned, block);
  v8::Local<v8::Value> ab = v8::ArrayBuffer::New(isolate, std::move(store));
  // N-API's own representation of a handle (Node's v8impl::JsValueFromV8LocalValue, unchanged since N-API began);
  // the handle lives in the scope V8 opens around every native call.
  return Napi::Value(info.Env(), reinterpret_cast<napi_value>(*ab));
}

// The largest power of two up to 4096 that divides a typed array's data address: the tests' check on allocAligned.
KERNEL(JsAddressAlignment) {
  if (info.Length() != 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "addressAlignment: expected one typed array");
  Napi::TypedArray t = info[0].As<Napi::TypedArray>();
  const uintptr_t addr = (uintptr_t)t.ArrayBuffer().Data() + t.ByteOffset();
  uint32_t al = 1;
  while (al < 4096 && addr % (al * 2) == 0) al *= 2;
  return Napi::Number::New(info.Env(), al);
}

}  // namespace

// The remaining bindings (matmul, nn, optim, info) live in bindings2.cc.
namespace ag {
void register_more(Napi::Env env, Napi::Object exports);
void register_attention(Napi::Env env, Napi::Object exports);
void register_attention_bf16(Napi::Env env, Napi::Object exports);
void register_lora(Napi::Env env, Napi::Object exports);
}

// Tensor buffers come and go in the hundreds of MB per training step. glibc raises its mmap threshold after
// each large free (up to 32 MiB) and its trim threshold with it (to twice that), so freed pages stay in the heap
// and RSS holds buffers long dead. A threshold pinned with mallopt stays where it is and leaves the trim
// threshold at 128 KiB (the heap top goes back promptly). Pinned at 128 KiB, every activation buffer was a fresh
// mmap whose pages fault in zeroed on first touch: measured 25-40% slower steps (cls-lora 711-761 vs 418-536 ms,
// gpt2-lora 5.5-6.0 vs 4.3-4.8 s). Pinned at 32 MiB (glibc's own ceiling), mid-size buffers are reused from the
// heap and the largest (logits chunks, whole-weight gradients) are still mapped and unmapped, for 10-30 MB more
// peak RSS on those workloads. MALLOC_MMAP_THRESHOLD_ set by the user wins.
static void pin_mmap_threshold() {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pin_mmap_threshold();
  auto fn = [&](const char* name, Napi::Value (*f)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, f, name));
  };
  fn("fill", JsFill);
  fn("stridedCopy", JsStridedCopy);
  fn("cast", JsCast);
  fn("unary", JsUnary);
  fn("unaryBackward", JsUnaryBackward);
  fn("unaryBf16", JsUnaryBf16);
  fn("unaryBf16Grad", JsUnaryBf16Grad);
  fn("mulBf16", JsMulBf16);
  fn("sumRowsBf16", JsSumRowsBf16);
  fn("castColumnSums", JsCastColumnSums);
  fn("roundBf16", JsRoundBf16);
  fn("castRowsBf16", JsCastRowsBf16);
  fn("binary", JsBinary);
  fn("where", JsWhere);
  fn("axpby", JsAxpby);
  fn("affine", JsAffine);
  fn("reduce", JsReduce);
  fn("argmax", JsArgmax);
  fn("sumSquares", JsSumSquares);
  fn("trimHeap", JsTrimHeap);
  fn("allocAligned", JsAllocAligned);
  fn("addressAlignment", JsAddressAlignment);
  ag::register_more(env, exports);
  ag::register_attention(env, exports);
  ag::register_attention_bf16(env, exports);
  ag::register_lora(env, exports);
  return exports;
}

NODE_API_MODULE(autoglm_native, Init)
