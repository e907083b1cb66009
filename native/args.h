// Argument checking shared by the binding files: counts, types and sizes, with errors that name the kernel.
#pragma once
#define NAPI_VERSION 8
#include <napi.h>
#include <cmath>
#include <string>
#include <vector>
#include "common.h"

namespace ag {

struct Args {
  const Napi::CallbackInfo& info;
  const char* k;
  Args(const Napi::CallbackInfo& i, const char* kernel, size_t n) : info(i), k(kernel) {
    if (i.Length() < n)
      throw Napi::TypeError::New(i.Env(), std::string(k) + ": expected " + std::to_string(n) + " arguments, got " +
                                              std::to_string(i.Length()));
  }
  [[noreturn]] void type_err(size_t i, const char* what) const {
    throw Napi::TypeError::New(info.Env(), std::string(k) + ": argument " + std::to_string(i) + " must be " + what);
  }
  void need(bool ok, const std::string& msg) const {
    if (!ok) throw Napi::RangeError::New(info.Env(), std::string(k) + ": " + msg);
  }
  // Typed array of the wanted type (or any of f32/u16/i32/i8 when want < 0); null allowed when nullable.
  void* arr(size_t i, int want, size_t* len, bool nullable = false, int* esize = nullptr) const {
    napi_env env = info.Env();
    napi_value v = info[i];
    if (nullable && (info[i].IsNull() || info[i].IsUndefined())) { *len = 0; return nullptr; }
    bool is = false;
    napi_is_typedarray(env, v, &is);
    if (!is) type_err(i, want == napi_float32_array ? "a Float32Array" : want == napi_int32_array ? "an Int32Array"
                         : want == napi_uint16_array ? "a Uint16Array" : want == napi_uint8_array ? "a Uint8Array"
                         : want == napi_int8_array ? "an Int8Array" : "a typed array");
    napi_typedarray_type t;
    void* data = nullptr;
    napi_get_typedarray_info(env, v, &t, len, &data, nullptr, nullptr);
    if (want >= 0 && (int)t != want)
      type_err(i, want == napi_float32_array ? "a Float32Array" : want == napi_int32_array ? "an Int32Array"
                  : want == napi_uint8_array ? "a Uint8Array" : want == napi_int8_array ? "an Int8Array" : "a Uint16Array");
    if (want < 0) {
      int es = t == napi_float32_array || t == napi_int32_array || t == napi_uint32_array ? 4
             : t == napi_uint16_array || t == napi_int16_array ? 2
             : t == napi_int8_array || t == napi_uint8_array ? 1 : 0;
      if (!es) type_err(i, "a Float32Array, Uint16Array, Int32Array or Int8Array");
      if (esize) *esize = es;
    }
    static float dummy[1];
    return data ? data : (void*)dummy;
  }
  float* f32(size_t i, size_t* n, bool nullable = false) const { return (float*)arr(i, napi_float32_array, n, nullable); }
  int32_t* i32(size_t i, size_t* n) const { return (int32_t*)arr(i, napi_int32_array, n); }
  double num(size_t i) const {
    if (!info[i].IsNumber()) type_err(i, "a number");
    return info[i].As<Napi::Number>().DoubleValue();
  }
  int64_t integer(size_t i, int64_t lo = 0) const {
    double d = num(i);
    if (d != std::floor(d) || d < (double)lo || d > 9.0e15) type_err(i, lo == 0 ? "a non-negative integer" : "an integer");
    return (int64_t)d;
  }
  bool flag(size_t i) const {
    if (!info[i].IsBoolean()) type_err(i, "a boolean");
    return info[i].As<Napi::Boolean>().Value();
  }
  std::vector<int64_t> ints(size_t i, bool nonneg) const {
    if (!info[i].IsArray()) type_err(i, "an array of integers");
    Napi::Array a = info[i].As<Napi::Array>();
    std::vector<int64_t> v(a.Length());
    if (v.size() > 16) need(false, "at most 16 dimensions");
    for (uint32_t j = 0; j < a.Length(); j++) {
      Napi::Value e = a[j];
      if (!e.IsNumber()) type_err(i, "an array of integers");
      double d = e.As<Napi::Number>().DoubleValue();
      if (d != std::floor(d) || (nonneg && d < 0) || std::fabs(d) > 9.0e15) type_err(i, "an array of integers");
      v[j] = (int64_t)d;
    }
    return v;
  }
  int op(size_t i, int count) const {
    int64_t o = integer(i);
    if (o >= count) type_err(i, "a valid op code");
    return (int)o;
  }
};

inline int64_t prod(const std::vector<int64_t>& s) { int64_t p = 1; for (auto d : s) p *= d; return p; }
// checks that the strided view (shape, strides) stays within [0, len)
inline bool view_fits(const std::vector<int64_t>& shape, const std::vector<int64_t>& st, size_t len) {
  int64_t lo = 0, hi = 0;
  for (size_t d = 0; d < shape.size(); d++) {
    if (shape[d] == 0) return true;
    const int64_t e = (shape[d] - 1) * st[d];
    if (e > 0) hi += e; else lo += e;
  }
  return lo >= 0 && hi < (int64_t)len;
}

#define KERNEL(name) Napi::Value name(const Napi::CallbackInfo& info)
#define UNDEF return info.Env().Undefined()

}  // namespace ag
