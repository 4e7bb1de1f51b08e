// The Model class of the addon: validates every batch, sampling and optimizer argument before the
// model runs, runs long work on the libuv pool, and refuses concurrent use of one model.
#include "model_wrap.h"

#include <cmath>
#include <string>
#include <vector>

#include "../cpu/nn.h"
#include "sophia/model_arena.h"
#include "addon_state.h"
#include "args.h"

namespace sophia::addon {

using model::Config;

template <class F>
static auto guard(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw make_error(env, e.code, e.what());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw make_error(env, "E_RANGE", "out of memory");
  } catch (const std::exception& e) {
    throw make_error(env, "E_INTERNAL", std::string("internal error: ") + e.what());
  }
}

static std::string num(int64_t v) { return std::to_string(v); }

static Config parse_config(const Napi::Value& v) {
  Config c;
  if (v.IsUndefined() || v.IsNull()) return c;
  Args a(v, "Model: config");
  c.vocab = a.integer("vocab", c.vocab, 2, 1 << 22);
  c.dim = a.integer("dim", c.dim, 2, 16384);
  c.layers = a.integer("layers", c.layers, 1, 256);
  c.heads = a.integer("heads", c.heads, 1, 256);
  c.kvHeads = a.integer("kvHeads", c.heads == 6 ? c.kvHeads : c.heads, 1, 256);
  c.ffn = a.integer("ffn", c.ffn, 1, 65536);
  c.context = a.integer("context", c.context, 2, 65536);
  c.imageSize = a.integer("imageSize", c.imageSize, 0, 4096);
  c.channels = a.integer("channels", c.channels, 1, 16);
  c.patch = a.integer("patch", c.patch, 1, 4096);
  c.visionLayers = a.integer("visionLayers", c.visionLayers, 0, 64);
  c.visionHeads = a.integer("visionHeads", c.visionHeads, 1, 256);
  c.visionFfn = a.integer("visionFfn", c.visionFfn, 1, 65536);
  c.tieEmbeddings = a.boolean("tieEmbeddings", c.tieEmbeddings);
  c.rewardHead = a.boolean("rewardHead", c.rewardHead);
  c.ropeTheta = float(a.number("ropeTheta", c.ropeTheta, 1, 1e9, true));
  c.normEps = float(a.number("normEps", c.normEps, 0, 0.5, true));
  c.imageToken = int32_t(a.integer("imageToken", c.imageToken, 0, (1 << 22) - 1));
  model::validate(c);
  return c;
}

static Napi::Object config_object(Napi::Env env, const Config& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("vocab", double(c.vocab));
  o.Set("dim", double(c.dim));
  o.Set("layers", double(c.layers));
  o.Set("heads", double(c.heads));
  o.Set("kvHeads", double(c.kvHeads));
  o.Set("ffn", double(c.ffn));
  o.Set("context", double(c.context));
  o.Set("imageSize", double(c.imageSize));
  o.Set("channels", double(c.channels));
  o.Set("patch", double(c.patch));
  o.Set("visionLayers", double(c.visionLayers));
  o.Set("visionHeads", double(c.visionHeads));
  o.Set("visionFfn", double(c.visionFfn));
  o.Set("tieEmbeddings", c.tieEmbeddings);
  o.Set("rewardHead", c.rewardHead);
  o.Set("ropeTheta", double(c.ropeTheta));
  o.Set("normEps", double(c.normEps));
  o.Set("imageToken", double(c.imageToken));
  return o;
}

static Napi::Object plan_object(Napi::Env env, const model::MemoryPlan& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("params", double(p.params));
  o.Set("grads", double(p.grads));
  o.Set("optimizer", double(p.optimizer));
  o.Set("activations", double(p.activations));
  o.Set("attention", double(p.attention));
  o.Set("scratch", double(p.scratch));
  o.Set("total", double(p.total()));
  return o;
}

// Packed sequences: starts [B + 1] from 0 to N, each length in [minLen, maxLen].
static int64_t check_starts(const Args& a, const char* key, const View& s, int64_t N, int64_t minLen, int64_t maxLen) {
  if (s.length < 2) fail("E_SHAPE", a.name(key) + " must hold at least 2 offsets (one sequence), got " + num(s.length));
  const int32_t* p = static_cast<const int32_t*>(s.data);
  if (p[0] != 0) fail("E_RANGE", a.name(key) + "[0] must be 0, got " + num(p[0]));
  if (p[s.length - 1] != N)
    fail("E_SHAPE", a.name(key) + " must end at the number of tokens (" + num(N) + "), got " + num(p[s.length - 1]));
  for (int64_t b = 0; b + 1 < s.length; ++b) {
    const int64_t len = int64_t(p[b + 1]) - p[b];
    if (len < minLen || len > maxLen)
      fail("E_RANGE", a.name(key) + ": sequence " + num(b) + " has " + num(len) + " tokens, expected " + num(minLen) + " to " +
                          num(maxLen) + " (the model context)");
  }
  return s.length - 1;
}

struct Images {
  View pixels, imageOf;
  int64_t count = 0;
};

// pixels [images, C, S, S] in [0, 1] and imageOf [B] in [-1, images); every sequence with an image
// holds exactly the visual-token count of <image> tokens, and the others none.
static Images check_images(const Args& a, const Config& c, const int32_t* tokens, const int32_t* seq, int64_t B,
                           const char* startsKey) {
  Images im;
  im.pixels = a.copy("pixels", napi_float32_array, false);
  im.imageOf = a.copy("imageOf", napi_int32_array, false);
  if (im.pixels.present != im.imageOf.present)
    fail("E_CONFIG", a.name(im.pixels.present ? "imageOf" : "pixels") + " is required when " +
                         (im.pixels.present ? "pixels" : "imageOf") + " is given");
  const int64_t np = c.visualTokens();
  if (im.pixels.present) {
    if (c.imageSize == 0) fail("E_CONFIG", a.name("pixels") + " given, but this model has no vision tower (imageSize 0)");
    const int64_t per = c.channels * c.imageSize * c.imageSize;
    if (im.pixels.length % per != 0)
      fail("E_SHAPE", a.name("pixels") + " must hold whole images of " + num(c.channels) + "x" + num(c.imageSize) + "x" +
                          num(c.imageSize) + " = " + num(per) + " values, got " + num(im.pixels.length));
    im.count = im.pixels.length / per;
    const float* px = static_cast<const float*>(im.pixels.data);
    for (int64_t i = 0; i < im.pixels.length; ++i)
      if (!(px[i] >= 0.f && px[i] <= 1.f))
        fail("E_RANGE", a.name("pixels") + "[" + num(i) + "] must be in [0, 1], got " + std::to_string(px[i]));
    if (im.imageOf.length != B)
      fail("E_SHAPE", a.name("imageOf") + " must have one entry per sequence (" + num(B) + "), got " + num(im.imageOf.length));
  }
  const int32_t* of = static_cast<const int32_t*>(im.imageOf.data);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t img = of ? of[b] : -1;
    if (img < -1 || img >= im.count)
      fail("E_RANGE", a.name("imageOf") + "[" + num(b) + "] must be -1 or an image index in [0, " + num(im.count) + "), got " + num(img));
    int64_t n = 0;
    for (int64_t t = seq[b]; t < seq[b + 1]; ++t) n += tokens[t] == c.imageToken;
    const int64_t want = img >= 0 ? np : 0;
    if (n != want)
      fail("E_SHAPE", a.name(startsKey) + ": sequence " + num(b) + " holds " + num(n) + " <image> tokens (id " + num(c.imageToken) + "), expected " +
                          num(want) + (img >= 0 ? " (one per visual token: expand <image> first)" : " (it has no image)"));
  }
  return im;
}

static void check_tokens(const Args& a, const char* key, const View& t, int64_t V) {
  const int32_t* p = static_cast<const int32_t*>(t.data);
  for (int64_t i = 0; i < t.length; ++i)
    if (p[i] < 0 || p[i] >= V) fail("E_RANGE", a.name(key) + "[" + num(i) + "] must be a token id in [0, " + num(V) + "), got " + num(p[i]));
}

Napi::Function ModelWrap::Define(Napi::Env env) {
  return DefineClass(env, "Model",
                     {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("forward", &ModelWrap::Forward),
                      InstanceMethod("backward", &ModelWrap::Backward), InstanceMethod("zeroGrad", &ModelWrap::ZeroGrad),
                      InstanceMethod("step", &ModelWrap::Step), InstanceMethod("generate", &ModelWrap::Generate),
                      InstanceMethod("copyState", &ModelWrap::CopyState), InstanceMethod("setState", &ModelWrap::SetState),
                      InstanceMethod("dispose", &ModelWrap::Dispose)});
}

// new Model({ config, seed, maxBytes, device: 'cpu' | 'cuda' })
ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  guard(info.Env(), [&] {
    Args a(info, "new Model");
    Config c = parse_config(a.get("config"));
    const int64_t seed = a.integer("seed", 0, 0, int64_t(1) << 53);
    maxBytes_ = a.integer("maxBytes", 0, 0, int64_t(1) << 50);
    const std::string device = a.oneOf("device", "cpu", {"cpu", "cuda"});
    const model::MemoryPlan p = model::plan_training(c, 0, 0, 0, 0);
    if (maxBytes_ > 0 && p.total() > maxBytes_)
      fail("E_RANGE", "new Model: parameters, gradients and AdamW state need " + num(p.total()) + " bytes, over maxBytes " + num(maxBytes_));
    model_ = device == "cuda" ? make_cuda_model(c, uint64_t(seed)) : make_cpu_model(c, uint64_t(seed));
    // Host memory only: V8 is told of the CPU model's buffers, not of device memory.
    externalBytes_ = device == "cpu" ? p.total() : 0;
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), externalBytes_);
    return 0;
  });
}

ModelBackend& ModelWrap::acquire(const char* fn) {
  if (!model_) fail("E_DISPOSED", std::string(fn) + ": the model was disposed");
  bool expected = false;
  if (!busy_->compare_exchange_strong(expected, true))
    fail("E_BUSY", std::string(fn) + ": the model is running another call (await it first)");
  return *model_;
}

Napi::Value ModelWrap::finish(Napi::Env env, bool async, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                              std::vector<Napi::Object> keep, std::vector<std::shared_ptr<void>> owned) {
  // Busy until the promise settles (cleared on the JS thread), so "await it first" is exact.
  auto busy = busy_;
  keep.push_back(Value());
  return run(env, async, std::move(work), std::move(done), keep, [busy] { busy->store(false); }, std::move(owned));
}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (!model_) fail("E_DISPOSED", "info: the model was disposed");
    Napi::Object o = Napi::Object::New(env);
    o.Set("device", model_->device());
    o.Set("config", config_object(env, model_->config()));
    o.Set("params", double(model_->numParams()));
    o.Set("bytes", double(model_->bytesAllocated()));
    o.Set("adamStep", double(model_->adamStep()));
    Napi::Array ts = Napi::Array::New(env, model_->tensors().size());
    uint32_t i = 0;
    for (const auto& t : model_->tensors()) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("name", t.name);
      Napi::Array shape = Napi::Array::New(env, t.shape.size());
      for (uint32_t k = 0; k < t.shape.size(); ++k) shape.Set(k, double(t.shape[k]));
      e.Set("shape", shape);
      e.Set("offset", double(t.offset));
      e.Set("size", double(t.size));
      e.Set("decay", t.decay);
      ts.Set(i++, e);
    }
    o.Set("tensors", ts);
    return o;
  });
}

// forward({ tokens, seqStarts, pixels?, imageOf?, rows?, out, scoreLogits?, async })
Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Args a(info, "forward");
    if (!model_) fail("E_DISPOSED", "forward: the model was disposed");
    const Config& c = model_->config();
    View tokens = a.copy("tokens", napi_int32_array, true);
    View starts = a.copy("seqStarts", napi_int32_array, true);
    if (tokens.length < 1) fail("E_SHAPE", a.name("tokens") + " must not be empty");
    check_tokens(a, "tokens", tokens, c.vocab);
    const int64_t B = check_starts(a, "seqStarts", starts, tokens.length, 1, c.context);
    const int32_t* tok = static_cast<const int32_t*>(tokens.data);
    const int32_t* seq = static_cast<const int32_t*>(starts.data);
    Images im = check_images(a, c, tok, seq, B, "seqStarts");
    View rows = a.copy("rows", napi_int32_array, !c.rewardHead);
    if (c.rewardHead && rows.present) fail("E_CONFIG", a.name("rows") + " is for the LM head; a reward model scores each sequence's last token");
    if (rows.present) {
      const int32_t* r = static_cast<const int32_t*>(rows.data);
      for (int64_t i = 0; i < rows.length; ++i) {
        if (r[i] < 0 || r[i] >= tokens.length)
          fail("E_RANGE", a.name("rows") + "[" + num(i) + "] must be a row in [0, " + num(tokens.length) + "), got " + num(r[i]));
        if (i > 0 && r[i] <= r[i - 1])
          fail("E_RANGE", a.name("rows") + " must be strictly increasing, got " + num(r[i - 1]) + " then " + num(r[i]) + " at " + num(i));
      }
    }
    const int64_t M = c.rewardHead ? B : rows.length;
    const int64_t outLen = c.rewardHead ? B : M * c.vocab;
    View out = a.array("out", napi_float32_array, true);
    if (out.length != outLen)
      fail("E_SHAPE", a.name("out") + " must have " + num(outLen) + " elements (" + (c.rewardHead ? "one score per sequence" : "rows x vocab") +
                          "), got " + num(out.length));
    View scoreLogits = a.array("scoreLogits", napi_float32_array, false);
    if (scoreLogits.present && (!c.rewardHead || scoreLogits.length != B))
      fail("E_SHAPE", a.name("scoreLogits") + (c.rewardHead ? " must have one element per sequence (" + num(B) + "), got " + num(scoreLogits.length)
                                                             : std::string(" is only for reward models")));
    if (maxBytes_ > 0) {
      int64_t sq = 0;
      for (int64_t b = 0; b < B; ++b) sq += int64_t(seq[b + 1] - seq[b]) * (seq[b + 1] - seq[b]);
      const model::MemoryPlan p = model::plan_training(c, tokens.length, M, im.count, sq);
      if (p.total() > maxBytes_)
        fail("E_RANGE", "forward: this batch needs " + num(p.total()) + " bytes (activations " + num(p.activations + p.attention) + "), over maxBytes " +
                            num(maxBytes_) + ": use smaller micro-batches");
    }
    const bool async = a.boolean("async", false);
    ModelBackend& m = acquire("forward");
    model::Batch bt;
    bt.N = tokens.length;
    bt.B = B;
    bt.tokens = tok;
    bt.seq = seq;
    bt.images = im.count;
    bt.pixels = static_cast<const float*>(im.pixels.data);
    bt.imageOf = static_cast<const int32_t*>(im.imageOf.data);
    bt.M = M;
    bt.rows = static_cast<const int32_t*>(rows.data);
    float* o = static_cast<float*>(out.data);
    float* sl = static_cast<float*>(scoreLogits.data);
    std::vector<Napi::Object> keep{tokens.holder, starts.holder, out.holder};
    for (const View* v : {&im.pixels, &im.imageOf, &rows, &scoreLogits})
      if (v->present) keep.push_back(v->holder);
    auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(out.holder));
    outFloats_ = outLen;
    return finish(info.Env(), async, [&m, bt, o, sl] { m.forward(bt, o, sl); },
                  [ref](Napi::Env) -> Napi::Value { return ref->Value(); }, keep, a.owned);
  });
}

// backward({ dout, async }): dout = d loss / d logits of the last forward (LM), or d loss / d score logit
// (reward model: the pre-sigmoid value, not the score); as many floats as that forward's out
Napi::Value ModelWrap::Backward(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Args a(info, "backward");
    if (!model_) fail("E_DISPOSED", "backward: the model was disposed");
    if (!model_->hasForward()) fail("E_STATE", "backward: no forward pass to differentiate (call forward first; generate() discards it)");
    View dout = a.array("dout", napi_float32_array, true);
    if (dout.length != outFloats_)
      fail("E_SHAPE", a.name("dout") + " must have as many elements as the last forward's out (" + num(outFloats_) + "), got " + num(dout.length));
    const bool async = a.boolean("async", false);
    ModelBackend& m = acquire("backward");
    const float* d = static_cast<const float*>(dout.data);
    const int64_t n = dout.length;
    return finish(info.Env(), async, [&m, d, n] { m.backward(d, n); }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); },
                  {dout.holder});
  });
}

Napi::Value ModelWrap::ZeroGrad(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    ModelBackend& m = acquire("zeroGrad");
    return finish(info.Env(), false, [&m] { m.zeroGrad(); }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, {});
  });
}

// step({ lr, beta1, beta2, eps, weightDecay, clipNorm, async }) -> { gradNorm, clipScale, skipped, step }
Napi::Value ModelWrap::Step(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Args a(info, "step");
    model::AdamW o;
    o.lr = float(a.requiredNumber("lr", 0, 10));
    o.beta1 = float(a.number("beta1", o.beta1, 0, 0.999999));
    o.beta2 = float(a.number("beta2", o.beta2, 0, 0.9999999));
    o.eps = float(a.number("eps", o.eps, 0, 1, true));
    o.weightDecay = float(a.number("weightDecay", o.weightDecay, 0, 10));
    o.clipNorm = float(a.number("clipNorm", o.clipNorm, 0, 1e9));
    const bool async = a.boolean("async", false);
    ModelBackend& m = acquire("step");
    auto res = std::make_shared<model::StepResult>();
    return finish(info.Env(), async, [&m, o, res] { *res = m.step(o); },
                  [res, &m](Napi::Env env) -> Napi::Value {
                    Napi::Object r = Napi::Object::New(env);
                    r.Set("gradNorm", res->gradNorm);
                    r.Set("clipScale", double(res->clipScale));
                    r.Set("skipped", res->skipped);
                    r.Set("step", double(m.adamStep()));
                    return r;
                  },
                  {});
  });
}

// generate({ prompt, promptStarts, pixels?, imageOf?, samples, maxNew, temperature, topK, topP, seed, eos, async })
//   -> { tokens: Int32Array [P·samples·maxNew], logp: Float32Array, lengths: Int32Array [P·samples] }
Napi::Value ModelWrap::Generate(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Args a(info, "generate");
    if (!model_) fail("E_DISPOSED", "generate: the model was disposed");
    const Config& c = model_->config();
    if (c.rewardHead) fail("E_CONFIG", "generate: this is a reward model (rewardHead); it scores sequences and cannot sample");
    View prompt = a.copy("prompt", napi_int32_array, true);
    View starts = a.copy("promptStarts", napi_int32_array, true);
    check_tokens(a, "prompt", prompt, c.vocab);
    const int32_t* tok = static_cast<const int32_t*>(prompt.data);
    const int64_t P = check_starts(a, "promptStarts", starts, prompt.length, 1, c.context - 1);
    const int32_t* seq = static_cast<const int32_t*>(starts.data);
    Images im = check_images(a, c, tok, seq, P, "promptStarts");
    model::Generate g;
    g.G = a.integer("samples", 1, 1, 4096);
    g.maxNew = a.integer("maxNew", 64, 1, c.context);
    g.temperature = float(a.number("temperature", 1.0, 0, 100));
    g.topK = a.integer("topK", 0, 0, c.vocab);
    g.topP = float(a.number("topP", 1.0, 0, 1, true));
    g.seed = uint64_t(a.integer("seed", 0, 0, int64_t(1) << 53));
    g.eos = int32_t(a.integer("eos", 1, 0, c.vocab - 1));
    const bool async = a.boolean("async", false);
    const int64_t S = P * g.G;
    if (S > 65536) fail("E_RANGE", "generate: prompts x samples must be at most 65536, got " + num(S));
    const int64_t need = model::plan_generate_bytes(c, prompt.length, P, im.count, S);
    if (maxBytes_ > 0 && need > maxBytes_)
      fail("E_RANGE", "generate: needs " + num(need) + " bytes (KV cache for " + num(S) + " streams), over maxBytes " + num(maxBytes_));
    Napi::Int32Array outTok = Napi::Int32Array::New(env, size_t(S * g.maxNew));
    Napi::Float32Array outLogp = Napi::Float32Array::New(env, size_t(S * g.maxNew));
    Napi::Int32Array outLen = Napi::Int32Array::New(env, size_t(S));
    g.P = P;
    g.prompt = tok;
    g.promptSeq = seq;
    g.images = im.count;
    g.pixels = static_cast<const float*>(im.pixels.data);
    g.imageOf = static_cast<const int32_t*>(im.imageOf.data);
    g.outTokens = outTok.Data();
    g.outLogp = outLogp.Data();
    g.outLen = outLen.Data();
    ModelBackend& m = acquire("generate");
    Napi::Object result = Napi::Object::New(env);
    result.Set("tokens", outTok);
    result.Set("logp", outLogp);
    result.Set("lengths", outLen);
    std::vector<Napi::Object> keep{prompt.holder, starts.holder, result};
    if (im.pixels.present) keep.push_back(im.pixels.holder), keep.push_back(im.imageOf.holder);
    auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(result));
    return finish(env, async, [&m, g] { m.generate(g); }, [ref](Napi::Env) -> Napi::Value { return ref->Value(); },
                  keep, a.owned);
  });
}

// copyState({ which: 'params'|'grads'|'adamM'|'adamV', out: Float32Array [numParams] }) -> adamStep
Napi::Value ModelWrap::CopyState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Args a(info, "copyState");
    std::string which = a.oneOf("which", "params", {"params", "grads", "adamM", "adamV"});
    View out = a.array("out", napi_float32_array, true);
    if (!model_) fail("E_DISPOSED", "copyState: the model was disposed");
    const int64_t n = model_->numParams();
    if (out.length != n) fail("E_SHAPE", a.name("out") + " must have " + num(n) + " elements (the parameter count), got " + num(out.length));
    ModelBackend& m = acquire("copyState");
    float* dst = static_cast<float*>(out.data);
    return finish(info.Env(), false, [&m, which, dst] { m.copyState(which, dst); },
                  [&m](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, double(m.adamStep())); }, {});
  });
}

// setState({ which, data: Float32Array [numParams], adamStep? })
Napi::Value ModelWrap::SetState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Args a(info, "setState");
    std::string which = a.oneOf("which", "params", {"params", "grads", "adamM", "adamV"});
    View data = a.array("data", napi_float32_array, true);
    const bool hasStep = a.has("adamStep");
    const int64_t step = a.integer("adamStep", 0, 0, int64_t(1) << 53);
    if (!model_) fail("E_DISPOSED", "setState: the model was disposed");
    const int64_t n = model_->numParams();
    if (data.length != n) fail("E_SHAPE", a.name("data") + " must have " + num(n) + " elements (the parameter count), got " + num(data.length));
    // A NaN weight or moment would spread through every later step; an AdamW second moment is >= 0.
    const float* p = static_cast<const float*>(data.data);
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i]) || (which == "adamV" && p[i] < 0.f))
        fail("E_RANGE", a.name("data") + "[" + num(i) + "] must be a finite number" + (which == "adamV" ? " >= 0" : "") + " (" + which + "), got " +
                            (std::isnan(p[i]) ? std::string("NaN") : std::to_string(p[i])));
    ModelBackend& m = acquire("setState");
    const float* src = static_cast<const float*>(data.data);
    return finish(info.Env(), false,
                  [&m, which, src, hasStep, step] {
                    m.setState(which, src);
                    if (hasStep) m.adamStep() = step;
                  },
                  [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, {});
  });
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    if (!model_) return info.Env().Undefined();
    if (busy_->load()) fail("E_BUSY", "dispose: the model is running another call (await it first)");
    model_.reset();
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -externalBytes_);
    externalBytes_ = 0;
    return info.Env().Undefined();
  });
}

// modelMemoryPlan({ config, tokens, rows, images, seqSquares })
Napi::Value ModelMemoryPlan(const Napi::CallbackInfo& info) {
  Args a(info, "modelMemoryPlan");
  Config c = parse_config(a.get("config"));
  const int64_t tokens = a.integer("tokens", 0, 0, int64_t(1) << 40);
  const int64_t rows = a.integer("rows", 0, 0, int64_t(1) << 40);
  const int64_t images = a.integer("images", 0, 0, int64_t(1) << 30);
  const int64_t sq = a.integer("seqSquares", tokens * std::min<int64_t>(tokens, c.context), 0, int64_t(1) << 52);
  return plan_object(info.Env(), model::plan_training(c, tokens, rows, images, sq));
}

// ---- nnOp: single layers, for the layer tests ----

static View need(const Args& a, const char* key, int64_t n, bool required = true) {
  View v = a.array(key, napi_float32_array, required);
  if (v.present && v.length != n) fail("E_SHAPE", a.name(key) + " must have " + num(n) + " elements, got " + num(v.length));
  return v;
}
static float* F(const View& v) { return static_cast<float*>(v.data); }

// nnOp({ op: 'gemm'|'matmul'|'rmsnorm'|'rope'|'attention'|'swiglu', ...arrays and sizes })
// Forward outputs are written into the given arrays; with the upstream gradient (dout / dh),
// the backward outputs too. Synchronous.
Napi::Value NnOp(const Napi::CallbackInfo& info) {
  Args a(info, "nnOp");
  if (!a.has("op")) fail("E_CONFIG", "nnOp: op is required (gemm, matmul, rmsnorm, rope, attention or swiglu), got " + describe(a.get("op")));
  const std::string op = a.oneOf("op", "", {"gemm", "matmul", "rmsnorm", "rope", "attention", "swiglu"});
  const int64_t big = int64_t(1) << 24;
  if (op == "gemm") {
    const int64_t M = a.integer("M", 0, 0, big), N = a.integer("N", 0, 0, big), K = a.integer("K", 0, 0, big);
    const bool tA = a.boolean("tA", false), tB = a.boolean("tB", false), acc = a.boolean("accumulate", false);
    View A = need(a, "A", M * K), B = need(a, "B", K * N), C = need(a, "C", M * N);
    cpu::gemm(M, N, K, F(A), tA ? M : K, tA, F(B), tB ? K : N, tB, F(C), N, acc);
  } else if (op == "matmul") {
    const int64_t N = a.integer("N", 0, 0, big), I = a.integer("I", 1, 1, big), O = a.integer("O", 1, 1, big);
    View inp = need(a, "inp", N * I), W = need(a, "W", O * I), bias = need(a, "bias", O, false), out = need(a, "out", N * O);
    View dout = need(a, "dout", N * O, false);
    cpu::nn::matmul_forward(F(out), F(inp), F(W), bias.present ? F(bias) : nullptr, N, I, O);
    if (dout.present) {
      View dinp = need(a, "dinp", N * I), dW = need(a, "dW", O * I), dbias = need(a, "dbias", O, bias.present);
      cpu::nn::matmul_backward(F(dinp), F(dW), dbias.present ? F(dbias) : nullptr, F(dout), F(inp), F(W), N, I, O);
    }
  } else if (op == "rmsnorm") {
    const int64_t N = a.integer("N", 0, 0, big), C = a.integer("C", 1, 1, big);
    const float eps = float(a.number("eps", 1e-5, 0, 1, true));
    View x = need(a, "x", N * C), w = need(a, "w", C), out = need(a, "out", N * C), rstd = need(a, "rstd", N);
    View dout = need(a, "dout", N * C, false);
    cpu::nn::rmsnorm_forward(F(out), F(rstd), F(x), F(w), N, C, eps);
    if (dout.present) {
      View dx = need(a, "dx", N * C), dw = need(a, "dw", C);
      cpu::nn::rmsnorm_backward(F(dx), F(dw), F(dout), F(x), F(w), F(rstd), N, C, false);
    }
  } else if (op == "rope") {
    const int64_t N = a.integer("N", 0, 0, big), H = a.integer("heads", 1, 1, 4096), hd = a.integer("hd", 2, 2, 4096);
    if (hd % 2) fail("E_RANGE", a.name("hd") + " must be even, got " + num(hd));
    View x = need(a, "x", N * H * hd);
    View pos = a.array("pos", napi_int32_array, true);
    if (pos.length != N) fail("E_SHAPE", a.name("pos") + " must have " + num(N) + " elements, got " + num(pos.length));
    cpu::nn::rope(F(x), static_cast<const int32_t*>(pos.data), N, H, hd, float(a.number("theta", 10000, 1, 1e9, true)),
                  a.boolean("inverse", false));
  } else if (op == "attention") {
    const int64_t H = a.integer("H", 1, 1, 4096), Hkv = a.integer("Hkv", H, 1, 4096), hd = a.integer("hd", 1, 1, 4096);
    if (H % Hkv) fail("E_RANGE", a.name("Hkv") + " must divide H (" + num(H) + "), got " + num(Hkv));
    View seqv = a.array("seq", napi_int32_array, true);
    const int32_t* sp = static_cast<const int32_t*>(seqv.data);
    const int64_t N = seqv.length > 0 ? sp[seqv.length - 1] : 0;
    const int64_t S = check_starts(a, "seq", seqv, N, 1, 4096);
    std::vector<int64_t> off;
    std::vector<int32_t> pos;
    const int64_t probFloats = model::stack_index(std::vector<int32_t>(sp, sp + S + 1), H, off, pos);
    View q = need(a, "q", N * H * hd), k = need(a, "k", N * Hkv * hd), v = need(a, "v", N * Hkv * hd), out = need(a, "out", N * H * hd);
    View dout = need(a, "dout", N * H * hd, false);
    std::vector<float> probs(static_cast<size_t>(probFloats));
    cpu::nn::AttnShape s{N, S, H, Hkv, hd, sp, off.data(), a.boolean("causal", true)};
    cpu::nn::attention_forward(F(out), probs.data(), F(q), F(k), F(v), s);
    if (dout.present) {
      View dq = need(a, "dq", N * H * hd), dk = need(a, "dk", N * Hkv * hd), dv = need(a, "dv", N * Hkv * hd);
      cpu::nn::attention_backward(F(dq), F(dk), F(dv), F(dout), probs.data(), F(q), F(k), F(v), s);
    }
  } else {
    const int64_t n = a.integer("n", 0, 0, big);
    View g = need(a, "g", n), u = need(a, "u", n), h = need(a, "h", n), dh = need(a, "dh", n, false);
    cpu::nn::swiglu_forward(F(h), F(g), F(u), n);
    if (dh.present) {
      View dg = need(a, "dg", n), du = need(a, "du", n);
      cpu::nn::swiglu_backward(F(dg), F(du), F(dh), F(g), F(u), n);
    }
  }
  return info.Env().Undefined();
}

}  // namespace sophia::addon
