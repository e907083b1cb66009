// autoglm_gloo: a thin N-API addon over Debian's libgloo (tcp transport; rendezvous through gloo's own RedisStore
// or FileStore, behind a PrefixStore keyed by the run id). One `GlooContext` per communicator. Every blocking gloo
// call runs on that context's own worker thread, one at a time in submission order, and settles a Promise on the JS
// thread through a ThreadSafeFunction, so the event loop keeps running while a collective waits on its peers.
// Errors reject with "gloo <op> on rank R of W: <kind>: <what>"; after one the context is broken and every later call
// rejects at once (a gloo pair that saw an error cannot be reused). src/distributed/gloo.ts is the only caller.
#include <napi.h>
#include <stdexcept>

#include <gloo/allgather.h>
#include <gloo/allgatherv.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/config.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/redis_store.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Job;
void SettleOnJsThread(Napi::Env env, Napi::Function, void* ctx, Job* job);
using Tsfn = Napi::TypedThreadSafeFunction<void, Job, SettleOnJsThread>;

// One queued operation: `run` executes on the worker thread; `settle` builds the resolved value on the JS thread.
struct Job {
  std::string op;
  std::function<void()> run;
  std::function<Napi::Value(Napi::Env)> settle;
  Napi::Promise::Deferred deferred;
  std::vector<Napi::Reference<Napi::Value>> keepAlive;  // the caller's typed arrays, pinned until settled
  Napi::ObjectReference self;                            // the GlooContext, so it is not collected mid-op
  std::string error;
  bool closing = false;
  explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

// Store spec as parsed by gloo.ts: kind "file" (path) or "redis" (host, port).
struct Options {
  int rank = 0, size = 1;
  std::string storeKind, storePath, redisHost, prefix, hostname, iface;
  int redisPort = 6379;
  int64_t timeoutMs = 30000;
};

class GlooContext : public Napi::ObjectWrap<GlooContext> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "GlooContext", {
      InstanceMethod<&GlooContext::Connect>("connect"),
      InstanceMethod<&GlooContext::AllReduce>("allReduce"),
      InstanceMethod<&GlooContext::AllGather>("allGather"),
      InstanceMethod<&GlooContext::Broadcast>("broadcast"),
      InstanceMethod<&GlooContext::Barrier>("barrier"),
      InstanceMethod<&GlooContext::Close>("close"),
      InstanceMethod<&GlooContext::Abandon>("abandon"),
    });
  }

  explicit GlooContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GlooContext>(info) {
    Napi::Env env = info.Env();
    auto o = info[0].As<Napi::Object>();
    auto str = [&](const char* k) { return o.Has(k) ? o.Get(k).ToString().Utf8Value() : std::string(); };
    opts_.rank = o.Get("rank").ToNumber().Int32Value();
    opts_.size = o.Get("size").ToNumber().Int32Value();
    opts_.storeKind = str("storeKind");
    opts_.storePath = str("storePath");
    opts_.redisHost = str("redisHost");
    if (o.Has("redisPort")) opts_.redisPort = o.Get("redisPort").ToNumber().Int32Value();
    opts_.prefix = str("prefix");
    opts_.hostname = str("hostname");
    opts_.iface = str("iface");
    if (o.Has("timeoutMs")) opts_.timeoutMs = o.Get("timeoutMs").ToNumber().Int64Value();
    tsfn_ = Tsfn::New(env, "autoglm_gloo", 0, 1, this);
    tsfn_.Unref(env);  // only pending operations keep the process alive
    worker_ = std::thread([this] { WorkerLoop(); });
  }

  ~GlooContext() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) {
      // A worker stuck inside gloo (process exiting mid-collective) cannot be interrupted: leave it and its context.
      bool busy;
      {
        std::lock_guard<std::mutex> lock(mu_);
        busy = busy_;
      }
      if (busy) {
        worker_.detach();
        new std::shared_ptr<gloo::Context>(std::move(context_));
      } else {
        worker_.join();
      }
    }
    // No tsfn_.Release() here: at environment teardown this destructor runs from inside the TSFN's own finalization,
    // which holds the TSFN's lock (releasing it then aborted the process when a communicator was never closed). An
    // unclosed context's TSFN is unref'd and simply goes with the environment.
  }

  // Called on the JS thread for each finished job.
  void Settle(Napi::Env env, Job* job) {
    std::unique_ptr<Job> owned(job);
    if (job->error.empty()) {
      job->deferred.Resolve(job->settle ? job->settle(env) : env.Undefined());
    } else {
      job->deferred.Reject(Napi::Error::New(env, job->error).Value());
    }
    if (--pending_ == 0 && !tsfnReleased_) tsfn_.Unref(env);
    if (job->closing && !tsfnReleased_) {
      if (worker_.joinable()) worker_.join();  // the worker returns right after a close job
      tsfnReleased_ = true;
      tsfn_.Release();
    }
  }

 private:
  Options opts_;
  std::shared_ptr<gloo::rendezvous::Store> baseStore_;
  std::shared_ptr<gloo::rendezvous::Store> store_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::Context> context_;
  std::string broken_;  // set by the worker after a failed op; read only by the worker

  Tsfn tsfn_;
  bool tsfnReleased_ = false;
  int pending_ = 0;  // JS thread only
  bool closed_ = false;

  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
  bool stop_ = false;
  bool busy_ = false;

  std::string Where(const std::string& op) const {
    return "gloo " + op + " on rank " + std::to_string(opts_.rank) + " of " + std::to_string(opts_.size);
  }

  void WorkerLoop() {
    for (;;) {
      Job* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = queue_.front();
        queue_.pop_front();
        busy_ = true;
      }
      Execute(job);
      const bool closing = job->closing;
      {
        std::lock_guard<std::mutex> lock(mu_);
        busy_ = false;
      }
      tsfn_.BlockingCall(job);
      if (closing) return;
    }
  }

  void Execute(Job* job) {
    if (!broken_.empty() && !job->closing) {
      job->error = Where(job->op) + ": communicator unusable after an earlier error (" + broken_ + ")";
      return;
    }
    if (!context_ && job->op != "connect" && !job->closing) {
      job->error = Where(job->op) + ": not connected";
      return;
    }
    try {
      job->run();
      return;
    } catch (const gloo::IoException& e) {
      job->error = Where(job->op) + ": io error: " + e.what();
    } catch (const gloo::EnforceNotMet& e) {
      job->error = Where(job->op) + ": check failed: " + e.what();
    } catch (const gloo::Exception& e) {
      job->error = Where(job->op) + ": " + e.what();
    } catch (const std::exception& e) {
      job->error = Where(job->op) + ": " + e.what();
    }
    broken_ = job->error;
  }

  // Queues `job` on the worker; returns its promise.
  Napi::Value Submit(Napi::Env env, Job* job) {
    Napi::Promise promise = job->deferred.Promise();
    if (closed_) {
      job->deferred.Reject(Napi::Error::New(env, Where(job->op) + ": communicator is closed").Value());
      delete job;
      return promise;
    }
    job->self = Napi::Persistent(Value());
    if (pending_++ == 0) tsfn_.Ref(env);
    if (job->closing) closed_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(job);
    }
    cv_.notify_one();
    return promise;
  }

  static void Pin(Job* job, Napi::Value v) { job->keepAlive.push_back(Napi::Persistent(v)); }

  static void ExpectTyped(const Napi::CallbackInfo& info, napi_typedarray_type type, const char* op, const char* what) {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != type) {
      throw Napi::TypeError::New(info.Env(), std::string("Argument 'data' passed to gloo ") + op + " must be a " + what);
    }
  }

  Napi::Value Connect(const Napi::CallbackInfo& info) {
    auto* job = new Job(info.Env());
    job->op = "connect";
    job->run = [this] {
      const auto timeout = std::chrono::milliseconds(opts_.timeoutMs);
      if (opts_.storeKind == "redis") {
        baseStore_ = std::make_shared<gloo::rendezvous::RedisStore>(opts_.redisHost, opts_.redisPort);
      } else {
        baseStore_ = std::make_shared<gloo::rendezvous::FileStore>(opts_.storePath);
      }
      store_ = std::make_shared<gloo::rendezvous::PrefixStore>(opts_.prefix, *baseStore_);
      gloo::transport::tcp::attr attr;
      if (!opts_.iface.empty()) attr.iface = opts_.iface;
      else attr.hostname = opts_.hostname;
      device_ = gloo::transport::tcp::CreateDevice(attr);
      auto ctx = std::make_shared<gloo::rendezvous::Context>(opts_.rank, opts_.size);
      ctx->setTimeout(timeout);
      ctx->connectFullMesh(*store_, device_);
      context_ = ctx;
    };
    return Submit(info.Env(), job);
  }

  // allReduce(Float32Array): in-place sum over all ranks.
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    ExpectTyped(info, napi_float32_array, "allReduce", "Float32Array");
    auto data = info[0].As<Napi::Float32Array>();
    auto* job = new Job(info.Env());
    job->op = "allReduce";
    Pin(job, data);
    float* ptr = data.Data();
    const size_t n = data.ElementLength();
    job->run = [this, ptr, n] {
      gloo::AllreduceOptions o(context_);
      o.setOutput(ptr, n);
      o.setReduceFunction([](void* c, const void* a, const void* b, size_t k) {
        auto* out = static_cast<float*>(c);
        auto* x = static_cast<const float*>(a);
        auto* y = static_cast<const float*>(b);
        for (size_t i = 0; i < k; i++) out[i] = x[i] + y[i];
      });
      gloo::allreduce(o);
    };
    return Submit(info.Env(), job);
  }

  // allGather(Uint8Array, maxBytes) -> { data: Uint8Array (all payloads in rank order), lengths: number[] }.
  // A length over maxBytes (per rank) fails the op on every rank (they all see the same lengths) before any
  // allocation: a peer cannot make this process allocate whatever it announces.
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    ExpectTyped(info, napi_uint8_array, "allGather", "Uint8Array");
    auto payload = info[0].As<Napi::Uint8Array>();
    const double maxArg = info.Length() > 1 && info[1].IsNumber() ? info[1].ToNumber().DoubleValue() : 0;
    if (!(maxArg >= 0) || maxArg > 9007199254740991.0) {
      throw Napi::TypeError::New(info.Env(), "Argument 'maxBytes' passed to gloo allGather must be a non-negative number");
    }
    const uint64_t maxBytes = maxArg > 0 ? uint64_t(maxArg) : UINT64_MAX;
    // Test hook (the fault suite's fuzzer): a third argument, a BigInt, is the length this rank announces instead of
    // its payload's, as a hostile or broken peer would; it then sends that many bytes (its payload, cut or
    // zero-padded), allocated only after every rank passed the maxBytes check.
    bool hostile = false;
    uint64_t announce = 0;
    if (info.Length() > 2 && info[2].IsBigInt()) {
      bool lossless = true;
      announce = info[2].As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) throw Napi::TypeError::New(info.Env(), "Argument 'announce' passed to gloo allGather must be a BigInt in [0, 2^64)");
      hostile = true;
    }
    auto* job = new Job(info.Env());
    job->op = "allGather";
    Pin(job, payload);
    uint8_t* ptr = payload.Data();
    const size_t len = payload.ByteLength();
    auto lengths = std::make_shared<std::vector<uint64_t>>(opts_.size);
    auto out = std::make_shared<std::vector<uint8_t>>();
    job->run = [this, ptr, len, lengths, out, maxBytes, hostile, announce] {
      uint64_t mine = hostile ? announce : len;
      gloo::AllgatherOptions lo(context_);
      lo.setInput(&mine, 1);
      lo.setOutput(lengths->data(), lengths->size());
      gloo::allgather(lo);
      for (size_t r = 0; r < lengths->size(); r++) {
        if ((*lengths)[r] > maxBytes) {
          throw std::runtime_error("rank " + std::to_string(r) + " announced a payload of " +
              std::to_string((*lengths)[r]) + " bytes; the limit is " + std::to_string(maxBytes) +
              " bytes a rank (maxGatherBytes)");
        }
      }
      std::vector<size_t> counts(lengths->begin(), lengths->end());
      size_t total = 0;
      for (size_t r = 0; r < counts.size(); r++) {
        if (counts[r] > SIZE_MAX - total) throw std::runtime_error("the announced payloads add up to more than 2^64 bytes");
        total += counts[r];
      }
      if (total == 0) return;  // every rank sees the same lengths, so every rank skips
      out->resize(total);
      uint8_t dummy = 0;
      std::vector<uint8_t> lie;
      const uint8_t* in = ptr;
      size_t inLen = len;
      if (hostile && announce != len) {
        lie.assign(size_t(announce), 0);
        std::memcpy(lie.data(), ptr, std::min<size_t>(len, size_t(announce)));
        in = lie.data();
        inLen = size_t(announce);
      }
      gloo::AllgathervOptions vo(context_);
      vo.setInput(inLen ? const_cast<uint8_t*>(in) : &dummy, inLen);
      vo.setOutput(out->data(), counts);
      gloo::allgatherv(vo);
    };
    job->settle = [lengths, out](Napi::Env env) -> Napi::Value {
      auto result = Napi::Object::New(env);
      auto buf = Napi::Uint8Array::New(env, out->size());
      if (!out->empty()) std::memcpy(buf.Data(), out->data(), out->size());
      auto ls = Napi::Array::New(env, lengths->size());
      for (uint32_t i = 0; i < lengths->size(); i++) ls.Set(i, Napi::Number::New(env, double((*lengths)[i])));
      result.Set("data", buf);
      result.Set("lengths", ls);
      return result;
    };
    return Submit(info.Env(), job);
  }

  // broadcast(Uint8Array, root): root's bytes into `data` on every rank.
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    ExpectTyped(info, napi_uint8_array, "broadcast", "Uint8Array");
    auto data = info[0].As<Napi::Uint8Array>();
    const int root = info[1].ToNumber().Int32Value();
    auto* job = new Job(info.Env());
    job->op = "broadcast";
    Pin(job, data);
    uint8_t* ptr = data.Data();
    const size_t n = data.ByteLength();
    job->run = [this, ptr, n, root] {
      gloo::BroadcastOptions o(context_);
      o.setOutput(ptr, n);
      o.setRoot(root);
      gloo::broadcast(o);
    };
    return Submit(info.Env(), job);
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    auto* job = new Job(info.Env());
    job->op = "barrier";
    job->run = [this] {
      gloo::BarrierOptions o(context_);
      gloo::barrier(o);
    };
    return Submit(info.Env(), job);
  }

  // close(): runs after every queued op, drops the connections and stops the worker. A second call resolves at once.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    auto* job = new Job(env);
    job->op = "close";
    job->closing = true;
    job->run = [this] {
      context_.reset();
      device_.reset();
      store_.reset();
      baseStore_.reset();
    };
    return Submit(env, job);
  }

  // abandon(): after a peer was lost (heartbeats), an operation may be stuck inside gloo until its timeout. Later
  // calls reject as closed, and pending ones no longer keep the event loop alive, so the process can exit; the
  // worker finishes (or times out) on its own and its late settlement is ignored by the caller.
  Napi::Value Abandon(const Napi::CallbackInfo& info) {
    closed_ = true;
    if (!tsfnReleased_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }
};

void SettleOnJsThread(Napi::Env env, Napi::Function, void* ctx, Job* job) {
  if (env == nullptr) {  // environment tearing down: nothing to settle
    delete job;
    return;
  }
  static_cast<GlooContext*>(ctx)->Settle(env, job);
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("GlooContext", GlooContext::Init(env));
  exports.Set("version", Napi::String::New(env, std::to_string(GLOO_VERSION_MAJOR) + "." +
                                                   std::to_string(GLOO_VERSION_MINOR) + "." +
                                                   std::to_string(GLOO_VERSION_PATCH)));
  return exports;
}

}  // namespace

NODE_API_MODULE(autoglm_gloo, InitModule)
