// The embedded model as a JS class (Model), its memory plan, and the layer entry point used by
// the layer tests (nnOp).
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

#include "model_backend.h"

namespace sophia::addon {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value CopyState(const Napi::CallbackInfo& info);
  Napi::Value SetState(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // Throws E_STATE when disposed, E_BUSY while an async call runs; marks the model busy.
  ModelBackend& acquire(const char* fn);
  Napi::Value finish(Napi::Env env, bool async, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                     std::vector<Napi::Object> keep, std::vector<std::shared_ptr<void>> owned = {});

  std::unique_ptr<ModelBackend> model_;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
  int64_t maxBytes_ = 0;
  int64_t externalBytes_ = 0;
  int64_t outFloats_ = 0;  // the last forward's output size, what backward's dout must have
};

Napi::Value ModelMemoryPlan(const Napi::CallbackInfo& info);
Napi::Value NnOp(const Napi::CallbackInfo& info);

}  // namespace sophia::addon
