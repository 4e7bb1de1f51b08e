// The N-API surface of sophia-rl. Every entry point takes one options object, validates all of
// it (types, dtypes, lengths, ranges, 64-bit sizes) and only then runs a kernel: on the CPU when
// the logits are a host typed array, on the GPU when they are a DeviceBuffer.
#include <napi.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "addon_state.h"
#include "args.h"
#include "device_buffer.h"
#include "model_wrap.h"
#include "sophia/grpo_agg.h"
#include "sophia/kernels.h"
#ifdef SOPHIA_WITH_CUDA
#include "sophia/cuda.h"
#endif

#ifndef SOPHIA_VERSION
#define SOPHIA_VERSION "0.0.0"
#endif

namespace sophia::addon {

State& state(Napi::Env env) { return *env.GetInstanceData<State>(); }

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  State& s = state(env);
  if (!s.errorClass.IsEmpty()) {
    Napi::Value e = s.errorClass.New({Napi::String::New(env, code), Napi::String::New(env, message)});
    return Napi::Error(env, e);
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

using Entry = Napi::Value (*)(const Napi::CallbackInfo&);

template <Entry F>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    return F(info);
  } catch (const Error& e) {
    throw make_error(env, e.code, e.what());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw make_error(env, "E_RANGE", "out of memory while preparing the call");
  } catch (const std::exception& e) {
    throw make_error(env, "E_INTERNAL", std::string("internal error: ") + e.what());
  }
}

// Runs `work` now (sync) or on the libuv pool (async, returns a Promise); `done` builds the result
// on the JS thread. The JS objects in `keep` stay alive until then.
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done, const std::vector<Napi::Object>& keep,
      std::function<void()> settle, std::vector<std::shared_ptr<void>> owned)
      : Napi::AsyncWorker(env, "sophia-rl"),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)),
        settle_(std::move(settle)),
        owned_(std::move(owned)) {
    for (const auto& o : keep) keep_.push_back(Napi::Persistent(o));
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const Error& e) {
      code_ = e.code;
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "E_INTERNAL";
      SetError(std::string("internal error: ") + e.what());
    }
  }
  void OnOK() override {
    if (settle_) settle_();
    try {
      deferred_.Resolve(done_(Env()));
    } catch (const Error& e) {
      deferred_.Reject(make_error(Env(), e.code, e.what()).Value());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(make_error(Env(), "E_INTERNAL", e.what()).Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    if (settle_) settle_();
    deferred_.Reject(make_error(Env(), code_, e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::function<void()> settle_;
  std::vector<Napi::ObjectReference> keep_;
  std::vector<std::shared_ptr<void>> owned_;
  std::string code_ = "E_INTERNAL";
};

Napi::Value run(Napi::Env env, bool async, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                const std::vector<Napi::Object>& keep, std::function<void()> settle, std::vector<std::shared_ptr<void>> owned) {
  if (!async) {
    struct Settle {
      std::function<void()>& f;
      ~Settle() {
        if (f) f();
      }
    } guard{settle};
    work();
    return done(env);
  }
  auto* job = new Job(env, std::move(work), std::move(done), keep, std::move(settle), std::move(owned));
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

static DType parse_dtype(const Args& a) {
  std::string d = a.oneOf("dtype", "f32", {"f32", "bf16", "f16"});
  return d == "bf16" ? DType::BF16 : d == "f16" ? DType::F16 : DType::F32;
}

static void expect_length(const Args& a, const char* key, const View& v, int64_t n, const char* what) {
  if (v.present && v.length != n)
    fail("E_SHAPE", a.name(key) + " must have " + std::to_string(n) + " elements (" + what + "), got " + std::to_string(v.length));
}

static void check_labels(const Args& a, const int32_t* labels, int64_t N, int64_t V, const std::vector<float>* mask) {
  for (int64_t t = 0; t < N; ++t) {
    if (mask && (*mask)[t] == 0.f) continue;  // masked tokens are never read
    if (labels[t] < 0 || labels[t] >= V)
      fail("E_RANGE", a.name("labels") + "[" + std::to_string(t) + "] must be in [0, " + std::to_string(V) + "), got " +
                          std::to_string(labels[t]));
  }
}

// logits as a [N, V] view: N comes from the labels, V from the caller.
struct LogitsInput {
  View logits;
  DType dtype;
  int64_t N, V;
};

static LogitsInput logits_input(const Args& a, int64_t N) {
  LogitsInput in;
  in.dtype = parse_dtype(a);
  in.logits = a.array("logits", in.dtype == DType::F32 ? napi_float32_array : napi_uint16_array, true, true);
  in.V = a.integer("V", -1, 1, INT32_MAX);
  if (in.V < 0) fail("E_CONFIG", a.name("V") + " (the vocabulary size) is required, got undefined");
  in.N = N;
  if (in.N > 0 && in.V > INT64_MAX / in.N) fail("E_RANGE", a.name("logits") + ": N*V overflows 64 bits");
  if (in.logits.length != in.N * in.V)
    fail("E_SHAPE", a.name("logits") + " must have N*V = " + std::to_string(in.N) + "*" + std::to_string(in.V) + " = " +
                        std::to_string(in.N * in.V) + " elements (N from labels), got " + std::to_string(in.logits.length));
  return in;
}

#ifdef SOPHIA_WITH_CUDA
// Device scratch that frees itself.
struct DeviceScratch {
  void* p = nullptr;
  explicit DeviceScratch(int64_t bytes) { p = bytes > 0 ? cuda::alloc(bytes) : nullptr; }
  ~DeviceScratch() { cuda::release(p); }
  DeviceScratch(const DeviceScratch&) = delete;
  template <class T> T* as(int64_t offset = 0) { return reinterpret_cast<T*>(static_cast<uint8_t*>(p) + offset); }
};
#endif

static void require_cuda(const char* fn) {
#ifndef SOPHIA_WITH_CUDA
  fail("E_DEVICE", std::string(fn) + ": a DeviceBuffer was passed, but this is the CPU-only build of sophia-rl");
#else
  (void)fn;
#endif
}

// ---------------------------------------------------------------- logprobs

static Napi::Value Logprobs(const Napi::CallbackInfo& info) {
  Args a(info, "logprobs");
  bool async = a.boolean("async", false);
  View labels = a.copy("labels", napi_int32_array, true);
  LogitsInput in = logits_input(a, labels.length);
  double temperature = a.number("temperature", 1.0, 0.0, 1e30, true);
  bool wantEntropy = a.boolean("entropy", false);
  check_labels(a, static_cast<const int32_t*>(labels.data), in.N, in.V, nullptr);
  if (in.logits.onDevice) require_cuda("logprobs");

  Napi::Env env = info.Env();
  Napi::Float32Array logp = Napi::Float32Array::New(env, size_t(in.N));
  Napi::Float32Array ent = Napi::Float32Array::New(env, size_t(wantEntropy ? in.N : 0));
  LogprobsArgs k;
  k.logits = in.logits.data;
  k.dtype = in.dtype;
  k.N = in.N;
  k.V = in.V;
  k.labels = static_cast<const int32_t*>(labels.data);
  k.invTemp = float(1.0 / temperature);
  k.logp = logp.Data();
  k.entropy = wantEntropy ? ent.Data() : nullptr;
  bool onDevice = in.logits.onDevice;
  auto work = [k, onDevice]() {
    if (k.N == 0) return;
    if (!onDevice) return cpu::logprobs(k);
#ifdef SOPHIA_WITH_CUDA
    DeviceScratch s(k.N * 12);
    LogprobsArgs d = k;
    d.labels = s.as<int32_t>();
    d.logp = s.as<float>(k.N * 4);
    d.entropy = k.entropy ? s.as<float>(k.N * 8) : nullptr;
    cuda::copy_h2d(s.as<int32_t>(), k.labels, k.N * 4);
    cuda::logprobs(d);
    cuda::copy_d2h(k.logp, d.logp, k.N * 4);
    if (k.entropy) cuda::copy_d2h(k.entropy, d.entropy, k.N * 4);
#endif
  };
  auto done = [logpRef = std::make_shared<Napi::ObjectReference>(Napi::Persistent(Napi::Object(logp))),
               entRef = std::make_shared<Napi::ObjectReference>(Napi::Persistent(Napi::Object(ent))), wantEntropy](Napi::Env env) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("logp", logpRef->Value());
    if (wantEntropy) r.Set("entropy", entRef->Value());
    return Napi::Value(r);
  };
  return run(env, async, work, done, {in.logits.holder, labels.holder}, nullptr, a.owned);
}

// ---------------------------------------------------------------- grpoLoss

struct GrpoHost {  // everything the kernel and the reduction need, owned for the async lifetime
  std::vector<float> weight, mask, adv;
  std::vector<double> weight64;  // the same weights unrounded, for the reduction
  std::vector<float> tokLoss, tokPg, tokKl, tokEnt, tokR;
  std::vector<uint8_t> tokClip;
  GrpoLossArgs k;
  bool onDevice = false, hasLogits = false;
};

static Napi::Value GrpoLoss(const Napi::CallbackInfo& info) {
  Args a(info, "grpoLoss");
  Napi::Env env = info.Env();
  bool async = a.boolean("async", false);
  bool hasLogits = a.has("logits"), hasLogp = a.has("logp");
  if (hasLogits == hasLogp)
    fail("E_CONFIG", std::string("grpoLoss: pass exactly one of logits (with labels) or logp, got ") +
                         (hasLogits ? "both" : "neither"));

  View labels, logpIn;
  LogitsInput in{};
  if (hasLogits) {
    labels = a.copy("labels", napi_int32_array, true);
    in = logits_input(a, labels.length);
  } else {
    logpIn = a.copy("logp", napi_float32_array, true);
    if (a.has("labels")) a.array("labels", napi_int32_array, false);  // type-checked, unused
    in.N = logpIn.length;
  }
  const int64_t N = in.N;
  View oldLogp = a.copy("oldLogp", napi_float32_array, true);
  View refLogp = a.copy("refLogp", napi_float32_array, false);
  View adv = a.copy("advantages", napi_float32_array, true);
  View seq = a.copy("seqStarts", napi_int32_array, true);
  bool maskIsFloat = false;
  View mask = a.mask("mask", &maskIsFloat, true);

  double temperature = a.number("temperature", 1.0, 0.0, 1e30, true);
  GrpoCoefs c;
  c.clipLow = float(a.number("clipLow", 0.2, 0.0, 0.999999));
  c.clipHigh = float(a.number("clipHigh", 0.2, 0.0, 1e6));
  c.dualClip = float(a.number("dualClip", 0.0, 0.0, 1e6));
  if (c.dualClip != 0.f && !(c.dualClip > 1.f))
    fail("E_RANGE", a.name("dualClip") + " must be 0 (off) or greater than 1, got " + describe(a.get("dualClip")));
  c.klCoef = float(a.number("klCoef", 0.0, 0.0, 1e6));
  std::string kl = a.oneOf("klType", "k3", {"k1", "k2", "k3"});
  c.klType = kl == "k1" ? KlType::K1 : kl == "k2" ? KlType::K2 : KlType::K3;
  c.entropyCoef = float(a.number("entropyCoef", 0.0, -1e6, 1e6));
  std::string aggS = a.oneOf("lossAgg", "token-mean", {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"});
  LossAgg agg = aggS == "token-mean" ? LossAgg::TokenMean
                : aggS == "seq-mean-token-mean" ? LossAgg::SeqMeanTokenMean
                : aggS == "seq-mean-token-sum" ? LossAgg::SeqMeanTokenSum : LossAgg::SeqMeanTokenSumNorm;
  int64_t maxLen = a.integer("maxLen", 0, 1, INT32_MAX);
  bool backward = a.boolean("backward", true);
  bool inplace = a.boolean("inplace", false);
  std::string advPer = a.oneOf("advantagesPer", "auto", {"auto", "sequence", "token"});

  // ---- lengths
  expect_length(a, "oldLogp", oldLogp, N, "one per token");
  expect_length(a, "refLogp", refLogp, N, "one per token");
  expect_length(a, "mask", mask, N, "one per token");
  if (seq.length < 1) fail("E_SHAPE", a.name("seqStarts") + " must have B+1 >= 1 elements (cu_seqlens), got 0");
  const int64_t B = seq.length - 1;
  const int32_t* starts = static_cast<const int32_t*>(seq.data);
  if (starts[0] != 0) fail("E_RANGE", a.name("seqStarts") + "[0] must be 0, got " + std::to_string(starts[0]));
  for (int64_t b = 0; b < B; ++b)
    if (starts[b + 1] < starts[b])
      fail("E_RANGE", a.name("seqStarts") + " must be non-decreasing, but [" + std::to_string(b + 1) + "] = " +
                          std::to_string(starts[b + 1]) + " < [" + std::to_string(b) + "] = " + std::to_string(starts[b]));
  if (starts[B] != N)
    fail("E_SHAPE", a.name("seqStarts") + "[B] must equal N = " + std::to_string(N) + " (the number of tokens), got " +
                        std::to_string(starts[B]));
  // Advantages are per sequence (length B) or per token (length N); when B == N the two
  // readings differ unless every sequence has one token, so the caller must say which.
  bool perToken = advPer == "token" || (advPer == "auto" && adv.length == N);
  if (advPer == "auto" && adv.length == N && N == B) {
    for (int64_t b = 0; b < B; ++b)
      if (starts[b + 1] - starts[b] != 1)
        fail("E_SHAPE", a.name("advantages") + " has " + std::to_string(N) +
                            " elements, which is both B and N; pass advantagesPer: 'sequence' or 'token'");
  }
  expect_length(a, "advantages", adv, perToken ? N : B, perToken ? "one per token" : "one per sequence");

  // ---- options that depend on each other
  if (agg == LossAgg::SeqMeanTokenSumNorm && maxLen == 0)
    fail("E_CONFIG", a.name("maxLen") + " is required with lossAgg 'seq-mean-token-sum-norm' (the fixed length L), got undefined");
  if (c.klCoef != 0.f && !refLogp.present)
    fail("E_CONFIG", a.name("refLogp") + " is required when klCoef is not 0 (the KL term needs the reference log-probs)");
  if (!hasLogits && c.entropyCoef != 0.f)
    fail("E_CONFIG", a.name("entropyCoef") + " must be 0 with logp input: the entropy term needs the logits");
  if (inplace && !(hasLogits && backward))
    fail("E_CONFIG", a.name("inplace") + " needs logits and backward: true (the gradient is written over the logits)");
  if (in.logits.onDevice) require_cuda("grpoLoss");
  c.hasRef = refLogp.present;

  // ---- mask values and aggregation weights (float64, fixed order)
  auto h = std::make_shared<GrpoHost>();
  h->mask.assign(size_t(N), 1.f);
  if (mask.present) {
    for (int64_t t = 0; t < N; ++t) {
      float m;
      if (maskIsFloat) {
        m = static_cast<const float*>(mask.data)[t];
        if (!(m >= 0.f) || !std::isfinite(m))
          fail("E_RANGE", a.name("mask") + "[" + std::to_string(t) + "] must be a finite weight >= 0, got " + std::to_string(m));
      } else {
        uint8_t u = static_cast<const uint8_t*>(mask.data)[t];
        if (u > 1) fail("E_RANGE", a.name("mask") + "[" + std::to_string(t) + "] must be 0 or 1, got " + std::to_string(u));
        m = float(u);
      }
      h->mask[t] = m;
    }
  }
  h->weight.assign(size_t(N), 0.f);
  h->weight64.assign(size_t(N), 0.0);
  grpo_weights(h->mask.data(), starts, B, agg, maxLen, h->weight.data(), h->weight64.data());
  if (hasLogits) check_labels(a, static_cast<const int32_t*>(labels.data), N, in.V, &h->mask);
  h->adv.resize(size_t(N));
  const float* advIn = static_cast<const float*>(adv.data);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = starts[b]; t < starts[b + 1]; ++t) h->adv[t] = perToken ? advIn[t] : advIn[b];

  // ---- outputs
  h->tokLoss.resize(N), h->tokPg.resize(N), h->tokKl.resize(N), h->tokEnt.resize(N), h->tokR.resize(N), h->tokClip.resize(N);
  GrpoLossArgs& k = h->k;
  k.logits = in.logits.data;
  k.dtype = in.dtype;
  k.N = N;
  k.V = in.V;
  k.labels = hasLogits ? static_cast<const int32_t*>(labels.data) : nullptr;
  k.invTemp = float(1.0 / temperature);
  k.logpIn = hasLogits ? nullptr : static_cast<const float*>(logpIn.data);
  k.oldLogp = static_cast<const float*>(oldLogp.data);
  k.refLogp = refLogp.present ? static_cast<const float*>(refLogp.data) : nullptr;
  k.adv = h->adv.data();
  k.weight = h->weight.data();
  k.mask = h->mask.data();
  k.coefs = c;
  k.tokLoss = h->tokLoss.data(), k.tokPg = h->tokPg.data(), k.tokKl = h->tokKl.data();
  k.tokEntropy = hasLogits ? h->tokEnt.data() : nullptr;
  k.tokLogRatio = h->tokR.data(), k.tokClipped = h->tokClip.data();
  h->onDevice = in.logits.onDevice;
  h->hasLogits = hasLogits;

  // gradOut: a caller-owned gradient buffer, reused across calls (no allocation, no page faults).
  View gradOut;
  if (a.has("gradOut")) {
    if (!(hasLogits && backward))
      fail("E_CONFIG", a.name("gradOut") + " needs logits and backward: true (it receives d loss / d logits)");
    if (inplace) fail("E_CONFIG", a.name("gradOut") + " and inplace: true both say where the gradient goes; pass one");
    gradOut = a.array("gradOut", in.dtype == DType::F32 ? napi_float32_array : napi_uint16_array, true, true);
    if (gradOut.length != N * in.V)
      fail("E_SHAPE", a.name("gradOut") + " must have N*V = " + std::to_string(N * in.V) + " elements like the logits, got " +
                          std::to_string(gradOut.length));
    if (gradOut.onDevice != in.logits.onDevice)
      fail("E_DEVICE", a.name("gradOut") + " must be on the same device as the logits");
    const uint8_t* g0 = static_cast<const uint8_t*>(gradOut.data);
    const uint8_t* l0 = static_cast<const uint8_t*>(in.logits.data);
    const int64_t span = N * in.V * dtype_size(in.dtype);
    if (g0 != l0 && g0 < l0 + span && l0 < g0 + span)
      fail("E_CONFIG", a.name("gradOut") + " partly overlaps the logits; pass the logits buffer itself (inplace) or a separate one");
  }

  Napi::Object gradObj;
  if (backward && hasLogits) {
    int64_t bytes = N * in.V * dtype_size(in.dtype);
    if (gradOut.present) {
      gradObj = gradOut.holder;
      k.gradLogits = gradOut.data;
    } else if (inplace) {
      gradObj = in.logits.holder;
      k.gradLogits = in.logits.data;
    } else if (h->onDevice) {
      gradObj = state(env).deviceBuffer.New({Napi::Number::New(env, double(bytes))});
      k.gradLogits = DeviceBuffer::Unwrap(gradObj)->ptr();
    } else {
      // Not zero-filled: the kernel writes every element (0 for masked rows).
      void* mem = bytes > 0 ? std::malloc(size_t(bytes)) : nullptr;
      if (bytes > 0 && !mem) fail("E_RANGE", "grpoLoss: cannot allocate " + std::to_string(bytes) + " bytes for gradLogits");
      // V8 is told about the external bytes so that large gradients drive garbage collection.
      Napi::ArrayBuffer ab = bytes > 0 ? Napi::ArrayBuffer::New(env, mem, size_t(bytes),
                                                                [bytes](Napi::Env e, void* p) {
                                                                  std::free(p);
                                                                  Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
                                                                })
                                       : Napi::ArrayBuffer::New(env, 0);
      if (bytes > 0) Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
      if (in.dtype == DType::F32) gradObj = Napi::Float32Array::New(env, size_t(N * in.V), ab, 0);
      else gradObj = Napi::Uint16Array::New(env, size_t(N * in.V), ab, 0);
      k.gradLogits = mem;
    }
  }
  Napi::Float32Array gradLogp;
  if (backward && !hasLogits) {
    gradLogp = Napi::Float32Array::New(env, size_t(N));
    k.gradLogp = gradLogp.Data();
  }

  auto work = [h]() {
    const GrpoLossArgs& k = h->k;
    if (k.N == 0) return;
    if (!h->onDevice) return cpu::grpo_loss(k);
#ifdef SOPHIA_WITH_CUDA
    // Per-token inputs go up (O(N) bytes); the logits and their gradient never leave the device.
    const int64_t n4 = k.N * 4;
    DeviceScratch s(n4 * 11 + k.N);
    GrpoLossArgs d = k;
    auto up = [&](int slot, const void* src) {
      if (!src) return (float*)nullptr;
      cuda::copy_h2d(s.as<float>(slot * n4), src, n4);
      return s.as<float>(slot * n4);
    };
    d.labels = reinterpret_cast<const int32_t*>(up(0, k.labels));
    d.oldLogp = up(1, k.oldLogp);
    d.refLogp = up(2, k.refLogp);
    d.adv = up(3, k.adv);
    d.weight = up(4, k.weight);
    d.mask = up(10, k.mask);
    d.tokLoss = s.as<float>(5 * n4), d.tokPg = s.as<float>(6 * n4), d.tokKl = s.as<float>(7 * n4);
    d.tokEntropy = s.as<float>(8 * n4), d.tokLogRatio = s.as<float>(9 * n4);
    d.tokClipped = s.as<uint8_t>(11 * n4);
    cuda::grpo_loss(d);
    cuda::copy_d2h(k.tokLoss, d.tokLoss, n4);
    cuda::copy_d2h(k.tokPg, d.tokPg, n4);
    cuda::copy_d2h(k.tokKl, d.tokKl, n4);
    cuda::copy_d2h(k.tokEntropy, d.tokEntropy, n4);
    cuda::copy_d2h(k.tokLogRatio, d.tokLogRatio, n4);
    cuda::copy_d2h(k.tokClipped, d.tokClipped, k.N);
#endif
  };
  auto gradRef = std::make_shared<Napi::ObjectReference>();
  if (!gradObj.IsEmpty()) *gradRef = Napi::Persistent(gradObj);
  auto gradLogpRef = std::make_shared<Napi::ObjectReference>();
  if (!gradLogp.IsEmpty()) *gradLogpRef = Napi::Persistent(Napi::Object(gradLogp));
  auto done = [h, gradRef, gradLogpRef](Napi::Env env) {
    const GrpoLossArgs& k = h->k;
    const GrpoTotals tot = grpo_reduce(k.N, h->mask.data(), h->weight64.data(), k.tokLoss, k.tokPg, k.tokKl,
                                       h->hasLogits ? k.tokEntropy : nullptr, k.tokLogRatio, k.tokClipped);
    const double msum = tot.maskSum;
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", tot.loss);
    Napi::Object metrics = Napi::Object::New(env);
    metrics.Set("pgLoss", tot.pgLoss);
    metrics.Set("klLoss", tot.klLoss);
    metrics.Set("entropy", h->hasLogits ? tot.entropy : NAN);
    metrics.Set("clipFrac", msum > 0 ? tot.clipped / msum : 0.0);
    metrics.Set("ppoKl", msum > 0 ? tot.negLogRatio / msum : 0.0);
    metrics.Set("nonFinite", double(tot.nonFinite));
    r.Set("metrics", metrics);
    if (!gradRef->IsEmpty()) r.Set("gradLogits", gradRef->Value());
    if (!gradLogpRef->IsEmpty()) r.Set("gradLogp", gradLogpRef->Value());
    return Napi::Value(r);
  };
  std::vector<Napi::Object> keep = {oldLogp.holder, adv.holder, seq.holder};
  for (const View* v : {&in.logits, &labels, &logpIn, &refLogp, &mask})
    if (v->present) keep.push_back(v->holder);
  return run(env, async, work, done, keep, nullptr, a.owned);
}

// ---------------------------------------------------------------- groups, trust, advantages

struct Groups {
  std::vector<int32_t> order, starts;
};

// Groups from groupSize (consecutive runs) or groupIds (equal ids, groups in order of first appearance).
static Groups make_groups(const Args& a, int64_t n, const char* what) {
  bool hasSize = a.has("groupSize"), hasIds = a.has("groupIds");
  if (hasSize == hasIds)
    fail("E_CONFIG", std::string(a.fn) + ": pass exactly one of groupSize or groupIds, got " + (hasSize ? "both" : "neither"));
  Groups g;
  if (hasSize) {
    int64_t size = a.integer("groupSize", 1, 1, INT32_MAX);
    if (n % size != 0)
      fail("E_SHAPE", a.name("groupSize") + " = " + std::to_string(size) + " does not divide the " + std::to_string(n) + " " + what);
    g.order.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) g.order[i] = int32_t(i);
    for (int64_t s = 0; s <= n; s += size) g.starts.push_back(int32_t(s));
    if (g.starts.empty()) g.starts.push_back(0);
    return g;
  }
  View ids = a.array("groupIds", napi_int32_array, true);
  expect_length(a, "groupIds", ids, n, "one per response");
  const int32_t* id = static_cast<const int32_t*>(ids.data);
  std::unordered_map<int32_t, int32_t> index;
  std::vector<int32_t> groupOf(static_cast<size_t>(n)), count;
  for (int64_t i = 0; i < n; ++i) {
    auto it = index.emplace(id[i], int32_t(count.size())).first;
    if (size_t(it->second) == count.size()) count.push_back(0);
    groupOf[i] = it->second;
    ++count[it->second];
  }
  g.starts.assign(count.size() + 1, 0);
  for (size_t k = 0; k < count.size(); ++k) g.starts[k + 1] = g.starts[k] + count[k];
  std::vector<int32_t> fill(g.starts.begin(), g.starts.end() - 1);
  g.order.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) g.order[fill[groupOf[i]]++] = int32_t(i);
  return g;
}

static void check_finite(const Args& a, const char* key, const View& v, bool allowNaN) {
  const float* p = static_cast<const float*>(v.data);
  for (int64_t i = 0; i < v.length; ++i) {
    if (std::isfinite(p[i]) || (allowNaN && std::isnan(p[i]))) continue;
    fail("E_RANGE", a.name(key) + "[" + std::to_string(i) + "] must be finite" + (allowNaN ? " or NaN (missing)" : "") +
                        ", got " + std::to_string(p[i]));
  }
}

static Napi::Float32Array f32(Napi::Env env, int64_t n) { return Napi::Float32Array::New(env, size_t(n)); }

static Napi::Value TrustRewards(const Napi::CallbackInfo& info) {
  Args a(info, "trustRewards");
  View outcome = a.array("outcome", napi_float32_array, true);
  View thinking = a.array("thinking", napi_float32_array, true);
  expect_length(a, "thinking", thinking, outcome.length, "one per response, like outcome");
  Groups g = make_groups(a, outcome.length, "responses");
  std::string mode = a.oneOf("mode", "paper", {"paper", "reference"});
  TrustArgs k;
  k.alpha = float(a.number("alpha", 0.3, 0.0, 1e6));
  double step = a.requiredNumber("step", 0.0, 1e15);
  double T = a.requiredNumber("T", 1e-30, 1e15);
  k.anneal = float(std::exp(-step / T));
  k.threshold = float(a.number("threshold", 0.5, -1e30, 1e30));
  k.gate = float(a.number("gate", 0.2, -1e30, 1e30));
  k.allSameHigh = float(a.number("allSameHigh", 0.9, -1e30, 1e30));
  k.allSameLow = float(a.number("allSameLow", 0.1, -1e30, 1e30));
  check_finite(a, "outcome", outcome, false);
  check_finite(a, "thinking", thinking, true);
  Napi::Env env = info.Env();
  int64_t G = int64_t(g.starts.size()) - 1;
  auto rewards = f32(env, outcome.length), gamma = f32(env, G), weight = f32(env, G), muC = f32(env, G), muW = f32(env, G);
  k.outcome = static_cast<const float*>(outcome.data);
  k.thinking = static_cast<const float*>(thinking.data);
  k.order = g.order.data();
  k.groupStarts = g.starts.data();
  k.n = outcome.length;
  k.G = G;
  k.referenceMode = mode == "reference";
  k.rewards = rewards.Data(), k.gamma = gamma.Data(), k.thinkingWeight = weight.Data(), k.muCorrect = muC.Data(), k.muWrong = muW.Data();
  cpu::trust_rewards(k);
  Napi::Object r = Napi::Object::New(env);
  r.Set("rewards", rewards), r.Set("gamma", gamma), r.Set("thinkingWeight", weight), r.Set("muCorrect", muC), r.Set("muWrong", muW);
  r.Set("anneal", double(k.anneal));
  return r;
}

static Napi::Value ThinkingNeeded(const Napi::CallbackInfo& info) {
  Args a(info, "thinkingNeeded");
  View outcome = a.array("outcome", napi_float32_array, true);
  Groups g = make_groups(a, outcome.length, "responses");
  std::string mode = a.oneOf("mode", "paper", {"paper", "reference"});
  NeededArgs k;
  k.gate = float(a.number("gate", 0.2, -1e30, 1e30));
  k.allSameHigh = float(a.number("allSameHigh", 0.9, -1e30, 1e30));
  k.allSameLow = float(a.number("allSameLow", 0.1, -1e30, 1e30));
  check_finite(a, "outcome", outcome, false);
  Napi::Uint8Array needed = Napi::Uint8Array::New(info.Env(), size_t(outcome.length));
  k.outcome = static_cast<const float*>(outcome.data);
  k.order = g.order.data();
  k.groupStarts = g.starts.data();
  k.n = outcome.length;
  k.G = int64_t(g.starts.size()) - 1;
  k.referenceMode = mode == "reference";
  k.needed = needed.Data();
  cpu::thinking_needed(k);
  return needed;
}

static Napi::Value GroupAdvantages(const Napi::CallbackInfo& info) {
  Args a(info, "groupAdvantages");
  View rewards = a.array("rewards", napi_float32_array, true);
  Groups g = make_groups(a, rewards.length, "rewards");
  std::string scale = a.oneOf("scale", "group", {"group", "batch", "none"});
  AdvantageArgs k;
  k.eps = float(a.number("eps", 1e-6, 0.0, 1e6));
  check_finite(a, "rewards", rewards, false);
  Napi::Float32Array out = f32(info.Env(), rewards.length);
  k.rewards = static_cast<const float*>(rewards.data);
  k.order = g.order.data();
  k.groupStarts = g.starts.data();
  k.n = rewards.length;
  k.G = int64_t(g.starts.size()) - 1;
  k.scale = scale == "group" ? AdvScale::Group : scale == "batch" ? AdvScale::Batch : AdvScale::None;
  k.advantages = out.Data();
  cpu::group_advantages(k);
  return out;
}

// ---------------------------------------------------------------- bandwidth probes, info

static Napi::Value StreamRead(const Napi::CallbackInfo& info) {
  Args a(info, "streamRead");
  int64_t bytes = a.integer("bytes", 256 << 20, 4096, int64_t(1) << 36);
  int64_t iters = a.integer("iters", 5, 1, 10000);
  int64_t n = bytes / 4;
  std::vector<float> data(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) data[i] = float(i & 1023) * 1e-3f;
  cpu::stream_read(data.data(), n, 1);  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  double checksum = cpu::stream_read(data.data(), n, int(iters));
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Napi::Object r = Napi::Object::New(info.Env());
  r.Set("gbps", double(n * 4) * double(iters) / sec / 1e9);
  r.Set("seconds", sec);
  r.Set("checksum", checksum);
  return r;
}

static Napi::Value CudaCopyBandwidth(const Napi::CallbackInfo& info) {
  Args a(info, "cudaCopyBandwidth");
  int64_t bytes = a.integer("bytes", 1 << 30, 4096, int64_t(1) << 40);
  int64_t iters = a.integer("iters", 20, 1, 10000);
#ifdef SOPHIA_WITH_CUDA
  return Napi::Number::New(info.Env(), cuda::copy_bandwidth(bytes, int(iters)));
#else
  (void)bytes, (void)iters;
  fail("E_DEVICE", "cudaCopyBandwidth: this is the CPU-only build of sophia-rl");
#endif
}

static Napi::Object cuda_status_object(Napi::Env env) {
  Napi::Object r = Napi::Object::New(env);
#ifdef SOPHIA_WITH_CUDA
  cuda::Status s = cuda::status();
  r.Set("compiled", true);
  r.Set("usable", s.usable);
  r.Set("deviceCount", s.deviceCount);
  r.Set("reason", s.reason);
  r.Set("runtimeVersion", s.runtimeVersion);
  r.Set("driverVersion", s.driverVersion);
  if (s.usable) {
    cuda::DeviceInfo d = cuda::device_info();
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("name", d.name);
    dev.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    dev.Set("totalMemory", double(d.totalMem));
    dev.Set("freeMemory", double(d.freeMem));
    dev.Set("multiprocessors", d.smCount);
    r.Set("device", dev);
  }
#else
  r.Set("compiled", false);
  r.Set("usable", false);
  r.Set("deviceCount", 0);
  r.Set("reason", "this is the CPU-only binary (built without CUDA)");
#endif
  return r;
}

static Napi::Value CudaStatus(const Napi::CallbackInfo& info) { return cuda_status_object(info.Env()); }

static Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  r.Set("version", SOPHIA_VERSION);
#ifdef SOPHIA_WITH_CUDA
  r.Set("variant", "cuda");
#else
  r.Set("variant", "cpu");
#endif
  r.Set("threads", cpu::num_threads());
  r.Set("simd", cpu::simd_level());
  r.Set("cuda", cuda_status_object(env));
  return r;
}

// setCpuIsa({ isa: 'base' | 'avx2' | 'avx512' }): for tests and benchmarks of both CPU code paths.
static Napi::Value SetCpuIsa(const Napi::CallbackInfo& info) {
  Args a(info, "setCpuIsa");
  std::string isa = a.oneOf("isa", "base", {"base", "avx2", "avx512"});
  if (!cpu::set_isa(isa.c_str())) fail("E_DEVICE", "setCpuIsa: this CPU cannot run the '" + isa + "' kernels");
  return Napi::String::New(info.Env(), cpu::simd_level());
}

static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction())
    throw make_error(info.Env(), "E_TYPE", "setErrorClass: expected a constructor, got " +
                                               (info.Length() ? describe(info[0]) : std::string("nothing")));
  state(info.Env()).errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* s = new State();
  env.SetInstanceData(s);
  Napi::Function db = DeviceBuffer::Define(env);
  s->deviceBuffer = Napi::Persistent(db);
  exports.Set("DeviceBuffer", db);
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  exports.Set("info", Napi::Function::New(env, guarded<Info>, "info"));
  exports.Set("cudaStatus", Napi::Function::New(env, guarded<CudaStatus>, "cudaStatus"));
  exports.Set("logprobs", Napi::Function::New(env, guarded<Logprobs>, "logprobs"));
  exports.Set("grpoLoss", Napi::Function::New(env, guarded<GrpoLoss>, "grpoLoss"));
  exports.Set("trustRewards", Napi::Function::New(env, guarded<TrustRewards>, "trustRewards"));
  exports.Set("thinkingNeeded", Napi::Function::New(env, guarded<ThinkingNeeded>, "thinkingNeeded"));
  exports.Set("groupAdvantages", Napi::Function::New(env, guarded<GroupAdvantages>, "groupAdvantages"));
  exports.Set("streamRead", Napi::Function::New(env, guarded<StreamRead>, "streamRead"));
  exports.Set("cudaCopyBandwidth", Napi::Function::New(env, guarded<CudaCopyBandwidth>, "cudaCopyBandwidth"));
  exports.Set("setCpuIsa", Napi::Function::New(env, guarded<SetCpuIsa>, "setCpuIsa"));
  exports.Set("Model", ModelWrap::Define(env));
  exports.Set("modelMemoryPlan", Napi::Function::New(env, guarded<ModelMemoryPlan>, "modelMemoryPlan"));
  exports.Set("nnOp", Napi::Function::New(env, guarded<NnOp>, "nnOp"));
  return exports;
}

}  // namespace sophia::addon

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return sophia::addon::Init(env, exports); }
NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitAddon)
